"""The data layer: taxonomy, example schema and I/O, prompt, answer parser, reward, metrics and datasets.

It is imported by every other package and imports neither torch nor Ray at module level.
"""
