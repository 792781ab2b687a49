"""The one base of user-facing errors, and the one place that turns them into an exit code.

A `MemrouteError` is a problem the user can act on (a bad config, a missing file, a refused push); its message
says what is wrong and what to do. Every command's `main` lets it propagate; `run_command` (called by `memroute
<cmd>` and by each module's `python -m` entry) prints it as `memroute <cmd>: error: <message>` on stderr and
exits 2 for usage errors (arguments, config, inputs the user named: `UsageError`) or 1 for runtime failures.
Anything else is a bug and keeps its traceback.

This module imports nothing of memroute, so every layer (`data` included) may derive its errors from it. The
subclasses here carry the builtin they replace as a mixin (`InputError` is a `ValueError`, `InputNotFoundError` a
`FileNotFoundError`), so callers that catch the builtin keep working.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence


class MemrouteError(Exception):
    """A user-facing error: the message is the whole story (no traceback). Exit code 1: a runtime failure."""

    exit_code = 1


class UsageError(MemrouteError):
    """The command was asked for something it cannot do: bad arguments, config or input. Exit code 2."""

    exit_code = 2


class InputError(UsageError, ValueError):
    """An input the user named (a dataset, a predictions file, a value) is not what the command needs."""


class InputNotFoundError(UsageError, FileNotFoundError):
    """A file or folder the user named does not exist (or is not the kind of folder it must be)."""


def run_command(prog: str, main: Callable[[list[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a command's `main(argv)` and return its exit code: the error boundary of every command.

    `prog` is the command as the user typed it (`memroute sft`). A `MemrouteError` becomes one line
    `<prog>: error: <message>` on stderr and its `exit_code` (2 for a `UsageError`, else 1); argparse's own usage
    errors exit 2 as they always do; a closed stdout (`... | head`) exits 141 quietly, as other CLIs do."""
    try:
        return main(None if argv is None else list(argv)) or 0
    except MemrouteError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe
