"""The wheel outside the checkout: build it, install it into a fresh venv beside the locked dependencies, and run
the main commands from a directory that is not the repository, so nothing can come from the checkout's files."""

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(cmd, cwd, env, timeout=300):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", out, REPO],
               cwd=out, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("memroute-*.whl")
    return built


def test_the_wheel_ships_configs_presets_and_data_and_cohere_is_an_extra(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for name in ("cpu_sft.yaml", "cpu_rl.yaml", "recipe_sft.yaml", "serve_cpu.yaml", "tiny_rl.yaml",
                 "quickstart_sft.yaml", "runtime_env.yaml"):
        assert f"memroute/configs/{name}" in names
    assert "data/embedded/train.jsonl" in names and "memroute/router/adapter_model.safetensors" in names
    assert "data/written/train.jsonl" in names
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert any("cohere" in r and "extra == \"teacher\"" in r for r in requires), requires
    assert not any("cohere" in r and "extra" not in r for r in requires), requires


@pytest.mark.slow
def test_installed_wheel_runs_outside_the_checkout(wheel, tmp_path):
    # a fresh venv that sees the locked dependencies (this venv's site-packages, as a path entry: its .pth files,
    # the editable install of this checkout among them, are not processed) and memroute from the wheel alone
    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env=dict(os.environ))
    assert made.returncode == 0, made.stderr
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "locked-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    py = venv / "bin" / "python"
    proc = run([py, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel], cwd=tmp_path,
               env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    memroute = venv / "bin" / "memroute"

    where = run([py, "-c", "import memroute, data; print(memroute.__file__, data.__file__)"], work, env)
    assert where.returncode == 0 and str(REPO) not in where.stdout and str(site) in where.stdout, where
    assert run([memroute, "--help"], work, env).returncode == 0
    assert "--sft" in run([memroute, "quickstart", "--help"], work, env).stdout
    # the quickstart's configs resolve from the package data (configs/cpu_sft.yaml is not in this folder)
    printed = run([memroute, "quickstart", "--print-config", "--model", "tiny"], work, env)
    assert printed.returncode == 0 and "# RL" in printed.stdout, printed.stderr[-2000:]
    shipped = run([memroute, "rl", "--config", "configs/cpu_rl.yaml,configs/tiny_rl.yaml", "--print-config"], work, env)
    assert shipped.returncode == 0 and "reward: toy_low_ids" in shipped.stdout, shipped.stderr[-2000:]
    missing = run([memroute, "rl", "--config", "configs/nope.yaml", "--print-config"], work, env)
    assert missing.returncode == 2 and "config file not found: configs/nope.yaml" in missing.stderr

    from data.embedded import TEST_PATH

    rows = TEST_PATH.read_text().splitlines()[:20]
    (work / "mine.jsonl").write_text("\n".join(rows) + "\n")
    valid = run([memroute, "data", "validate", "mine.jsonl"], work, env)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    ev = run([memroute, "eval", "--backend", "tfidf", "--data", "mine.jsonl", "--out", "tfidf"], work, env, timeout=600)
    assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
    assert (work / "tfidf" / "metrics.json").exists()
