"""The `memroute` command: one subcommand per module, each also runnable as `python -m <module>`.

Modules are imported only when their subcommand runs, so `memroute data ...` never loads torch. Every subcommand
runs through the one error boundary, `memroute.core.errors.run_command` (as does each module's `python -m` entry):
a user-facing error is one line `memroute <command>: error: <message>`, exit 2 for usage and config errors, 1 for
runtime failures.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "quickstart": ("memroute.quickstart", "the main job on the embedded default: SFT, RL, evaluation, plots, serving"),
    "model": ("memroute.core.models", "provision the default model (fetch) or the tiny test model (tiny)"),
    "data": ("data.cli", "validate, describe, convert and score datasets and predictions"),
    "eval": ("actors.evaluate", "route a dataset with a model and score it"),
    "sft": ("learner.sft", "LoRA supervised fine-tuning on Ray Train"),
    "serve": ("serve.app", "the Ray Serve routing endpoint"),
    "teacher": ("data.teacher.cli", "generate and label conversations with the Cohere teacher; score it as a baseline"),
    "rl": ("learner.rl", "RL: vLLM rollout workers, importance-sampled LoRA updates, verified weight pushes"),
    "plot": ("memroute.plot", "PNG plots of a run's metrics (reward, F1, KL, throughput; SFT loss)"),
    "cluster": ("memroute.cluster", "a local Ray cluster: start the head, train as Ray jobs, serve, print URLs"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}  (python -m {mod})" for name, (mod, help_) in COMMANDS.items())
    return f"usage: memroute <command> [args]\n\ncommands:\n{rows}\n\n`memroute <command> --help` for details."


def main(argv=None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `memroute ... | head`: the reader left; say nothing more, as other CLIs do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe


def _main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # a command is required: usage on stderr, the usage-error exit code
        print(usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from memroute import __version__

        print(__version__)
        return 0
    if argv[0] not in COMMANDS:
        print(f"memroute: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    from memroute.core.errors import run_command
    from memroute.core.ray_auth import loopback_ray

    loopback_ray()  # a Ray instance this command starts for itself listens on 127.0.0.1 only (before ray imports)
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return run_command(f"memroute {argv[0]}", module.main, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
