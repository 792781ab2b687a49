"""Benchmarks: each module prints a table and writes a JSON report (bench/results/)."""


def require_positive(parser, args, names) -> None:
    """Exit through `parser.error` naming the first option in `names` (dest names) that is below 1."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
