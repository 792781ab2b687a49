"""The `memroute` command's surface: no command is a usage error, a closed pipe is not a traceback."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_no_command_prints_usage_and_exits_2():
    proc = subprocess.run([sys.executable, "-m", "memroute"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage: memroute <command>" in proc.stderr and proc.stdout == ""


def test_closed_pipe_is_not_a_traceback():
    # the reader closes the pipe before memroute writes its help: no BrokenPipeError traceback
    proc = subprocess.run(f"{sys.executable} -m memroute --help | head -c 0", shell=True, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr
