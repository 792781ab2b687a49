"""memroute: train and serve a memory-routing model with Ray, vLLM and LoRA.

This package holds only the command-line entry point; the system lives in `data`, `learner`, `actors` and
`serve`.
"""

__version__ = "0.1.0"
