"""memroute: train and serve a memory-routing model with Ray, vLLM and LoRA.

This package holds the commands (the `memroute` entry point, quickstart, cluster, plots, curves), the ground
floor every layer shares (`memroute.core`) and the shipped router (`memroute.router`); the system lives in
`data`, `learner`, `actors` and `serve`. The layers: docs/architecture.md. Keep this file free of imports: every
layer, `data` included, imports through it.
"""

__version__ = "0.1.0"
