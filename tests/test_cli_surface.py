"""The `memroute` command's surface: no command is a usage error, a closed pipe is not a traceback."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

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


# --- one CLI surface (issue 18, item 3): --print-config, `memroute <cmd>` usage lines, a default for every flag ---

HEAVY = ("ray", "vllm", "torch", "transformers", "peft")
# `python -m memroute.cli ARGS`, then the heavy modules it imported (the last stderr line): --print-config loads none
AS_MODULE = ("import runpy, sys\nsys.argv[0] = 'memroute'\ntry:\n    runpy.run_module('memroute.cli', "
             "run_name='__main__', alter_sys=True)\nfinally:\n    print('loaded:', sorted(set(sys.modules) & "
             f"set({HEAVY!r})), file=sys.stderr)")


def memroute(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memroute.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


# command (with its sub-command) -> (override, the key path it sets, the value it sets)
PRINT_CONFIG = {
    "sft": (["max_steps=7"], ("max_steps",), 7),
    "rl": (["learner.loss.kind=ppo"], ("learner", "loss", "kind"), "ppo"),
    "serve": (["num_replicas=3"], ("num_replicas",), 3),
    "eval": (["limit=3"], ("limit",), 3),
    "teacher generate": (["concurrency=3"], ("concurrency",), 3),
    "teacher label": (["concurrency=3"], ("concurrency",), 3),
    "teacher eval": (["concurrency=3"], ("concurrency",), 3),
    "teacher coverage --data data/embedded/test.jsonl": (["concurrency=3"], ("concurrency",), 3),
    "cluster up": (["num_cpus=3"], ("num_cpus",), 3),
}


def get(tree: dict, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


@pytest.mark.parametrize("command", PRINT_CONFIG)
def test_print_config_shows_the_override_and_runs_nothing(command):
    overrides, path, value = PRINT_CONFIG[command]
    start = time.perf_counter()
    proc = memroute(*command.split(), "--print-config", *overrides)
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - start < 30 and proc.stderr == ""  # nothing started: no Ray, no model
    config = yaml.safe_load(proc.stdout)
    assert isinstance(config, dict) and get(config, path) == value
    proc = subprocess.run([sys.executable, "-c", AS_MODULE, *command.split(), "--print-config", *overrides],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "loaded: []\n", proc.stderr


@pytest.mark.parametrize("command", PRINT_CONFIG)
def test_print_config_with_a_bad_key_is_one_line_and_exit_2(command):
    proc = memroute(*command.split(), "--print-config", "no_such_key=1")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"memroute {command.split()[0]}: error: ")
    assert "no_such_key" in proc.stderr


def test_print_config_applies_yaml_then_overrides_then_flags(tmp_path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("model: tiny\nlimit: 5\nout: from-yaml\nbatch_size: 2\n")
    proc = memroute("eval", "--config", str(cfg), "--print-config", "limit=4", "--out", "from-flag")
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    # defaults < YAML < key=value < a flag given; a flag not given does not mask the YAML
    assert config["model"] == "tiny" and config["batch_size"] == 2 and config["limit"] == 4
    assert config["out"] == "from-flag" and config["dtype"] == "auto"
    proc = memroute("eval", "--print-config", "model=tiny", "limit=3")
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    assert config["model"] == "tiny" and config["limit"] == 3


def test_eval_flags_still_work_and_are_checked():
    from actors.evaluate import EvalConfig, parse_args

    cfg = parse_args(["--model", "tiny", "--adapter", "none", "--backend", "tfidf", "--batch-size", "4",
                      "--limit", "2", "--kv-cache-gib", "1.5", "--use-gpu", "--dtype", "float32"])
    assert cfg == EvalConfig(model="tiny", adapter="none", backend="tfidf", batch_size=4, limit=2, kv_cache_gib=1.5,
                             use_gpu=True, dtype="float32")
    assert parse_args([]) == EvalConfig()
    for bad, key in (("backend=nope", "backend"), ("batch_size=0", "batch_size"), ("dtype=fp8", "dtype")):
        proc = memroute("eval", "--print-config", bad)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and key in proc.stderr, proc.stderr


def test_quickstart_print_config_is_the_sft_and_the_rl_config():
    proc = memroute("quickstart", "--print-config", "--model", "tiny", "--out", "runs/qs-print",
                    "--sft", "epochs=2", "--rl", "steps=3")
    assert proc.returncode == 0, proc.stderr
    sft, rl = yaml.safe_load_all(proc.stdout)
    assert sft["epochs"] == 2 and sft["model"]["name"] == "tiny" and sft["run_dir"] == "runs/qs-print/sft"
    assert rl["steps"] == 3 and rl["learner"]["model"]["name"] == rl["rollout"]["engine"]["model"] == "tiny"
    assert rl["learner"]["adapter"] == "runs/qs-print/sft/adapter"
    assert not (REPO / "runs" / "qs-print").exists()  # nothing ran, nothing was written
    proc = memroute("quickstart", "--print-config", "--rl", "typo=1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "typo" in proc.stderr


# every command and sub-command: its --help usage says `memroute <cmd>`
USAGES = ["quickstart", "model", "model fetch", "data", "data validate", "eval", "sft", "serve", "serve reload",
          "teacher", "teacher generate", "teacher label", "teacher eval", "teacher coverage", "rl", "plot", "cluster",
          "cluster up", "cluster down", "cluster status"]
# those whose every option shows its default or says it is required (a flag without a value is off by default)
WITH_DEFAULTS = ["quickstart", "eval", "sft", "serve", "serve reload", "teacher generate", "teacher label",
                 "teacher eval", "teacher coverage", "rl", "cluster up", "cluster down", "cluster status"]


def option_blocks(help_text: str) -> dict[str, str]:
    """`--flag METAVAR` (or a positional's name) -> its help text, for every argument of an argparse --help."""
    blocks, current, in_section = {}, None, False
    for line in help_text.splitlines():
        if line in ("options:", "optional arguments:", "positional arguments:"):
            in_section, current = True, None
        elif not line.strip() or not in_section:
            in_section = in_section and bool(line.strip())
        elif line.startswith("  ") and not line.startswith("   "):
            spec, _, text = re.split(r"(\s{2,}|$)", line.strip(), maxsplit=1)
            current = spec
            blocks[current] = text
        elif current:
            blocks[current] = f"{blocks[current]} {line.strip()}".strip()
    return blocks


@pytest.mark.parametrize("command", USAGES)
def test_help_usage_names_memroute_command(command):
    proc = memroute(*command.split(), "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: memroute {command} "), proc.stdout.splitlines()[0]
    assert proc.stdout.count("python -m") <= 1  # the module path at most once (for `ray job submit`)


@pytest.mark.parametrize("command", WITH_DEFAULTS)
def test_help_shows_a_default_for_every_flag(command):
    blocks = option_blocks(memroute(*command.split(), "--help").stdout)
    assert blocks
    for option, text in blocks.items():
        takes_value = " " in option or not option.startswith("-")  # a positional takes values too
        if option.startswith("-h") or not takes_value:
            continue
        assert "default" in text.lower() or "required" in text, f"memroute {command} {option}: no default: {text!r}"


def test_eval_help_shows_the_defaults_the_issue_names():
    out = memroute("eval", "--help").stdout
    blocks = option_blocks(out)
    assert "(default: smollm2-135m)" in blocks["--model MODEL"] and "(default: runs/eval)" in blocks["--out OUT"]
    assert "(default: auto)" in blocks["--dtype {auto,bfloat16,float16,float32}"]
    assert "--config CONFIG" in blocks and "--print-config" in blocks and "key=value" in out
    assert "(default: 8000)" in option_blocks(memroute("quickstart", "--help").stdout)["--port PORT"]
    assert "8000" in option_blocks(memroute("serve", "--help").stdout)["--port PORT"]
