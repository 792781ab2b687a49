"""Every command the README shows, checked as written: a `memroute` command runs with `--print-config` (its flags
parse and its config files and overrides validate, in seconds, with nothing started), the curl body is a valid
`/route` request, and the set-up commands exist. What these commands then do at length is the rest of the suite's
(tests/test_quickstart.py, test_sft.py, test_serve.py, test_cluster.py, test_evaluate.py)."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The shell commands of the README's bash blocks: comments dropped, continuation lines joined, `a && b`
    split in two."""
    text = (REPO / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            out.extend(part.strip() for part in line.split("&&") if part.strip())
    return out


COMMANDS = readme_commands()


def test_the_readme_shows_the_two_set_up_commands_and_the_main_job():
    assert "./install.sh" in COMMANDS and "./install.sh dev" in COMMANDS
    assert ".venv/bin/memroute quickstart" in COMMANDS and ".venv/bin/python -m pytest" in COMMANDS
    assert os.access(REPO / "install.sh", os.X_OK) and (REPO / ".ci" / "run").exists()
    assert ".venv/bin/python -m pytest" in (REPO / ".ci" / "run").read_text()  # CI runs the README's test command


@pytest.mark.parametrize("command", [c for c in COMMANDS if re.match(r"(\.venv/bin/)?memroute ", c)])
def test_every_memroute_command_in_the_readme_parses_and_validates(command, tmp_path):
    argv = shlex.split(command)
    argv[0] = str(Path(sys.executable).with_name("memroute"))
    if argv[1:3] == ["cluster", "up"]:
        argv.insert(3, "--print-config")  # `up`'s own flag, before its key=value overrides
    else:
        argv.append("--print-config")
    env = {**os.environ, "MEMROUTE_API_KEY": "readme-test"}  # serve refuses to run without a key
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{command}\n{proc.stderr[-2000:]}"
    assert proc.stdout.strip() and "Traceback" not in proc.stderr, command


def test_the_readme_curl_is_a_valid_route_request():
    from serve.schema import RouteRequest

    curls = [c for c in COMMANDS if c.startswith("curl ")]
    assert curls, "the README shows how to call the endpoint"
    for command in curls:
        argv = shlex.split(command)
        body = json.loads(argv[argv.index("-d") + 1])
        assert argv[2].endswith("/route") and RouteRequest.model_validate(body).conversation
