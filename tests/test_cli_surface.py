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


def test_one_error_boundary_for_every_command(capsys):
    import pytest

    from memroute.core.config import ConfigError
    from memroute.core.errors import InputNotFoundError, MemrouteError, UsageError, run_command

    def failing(error):
        def main(argv):
            raise error
        return main

    assert run_command("memroute x", failing(MemrouteError("the push did not verify")), []) == 1
    assert capsys.readouterr().err == "memroute x: error: the push did not verify\n"
    for usage in (UsageError("bad"), ConfigError("unknown config key x"), InputNotFoundError("dataset not found")):
        assert run_command("memroute x", failing(usage), []) == 2
    assert isinstance(ConfigError("x"), ValueError) and isinstance(InputNotFoundError("x"), FileNotFoundError)
    with pytest.raises(KeyError):  # anything else is a bug: its traceback is kept
        run_command("memroute x", failing(KeyError("bug")), [])
    assert run_command("memroute x", lambda argv: None, []) == 0


def test_python_m_and_memroute_say_the_same(tmp_path):
    missing = tmp_path / "missing.jsonl"
    for cmd in (["-m", "memroute", "data"], ["-m", "data.cli"]):
        proc = subprocess.run([sys.executable, *cmd, "score", str(missing), "--data", str(missing)], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == f"memroute data: error: predictions file not found: {missing}\n"
