"""`memroute quickstart` end to end on the tiny model: SFT, RL, evaluation of four systems, plots; then, resumed,
the Serve endpoint it ends with, stopped by SIGTERM."""

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_runs_every_stage_on_the_tiny_model(tmp_path):
    out = tmp_path / "qs"
    cmd = [sys.executable, "-m", "memroute.cli", "quickstart", "--model", "tiny", "--out", str(out), "--limit", "4",
           "--no-serve", "--sft", "max_steps=2", "cpus_per_worker=1", "--rl", "steps=2", "rollout.n=4",
           "rollout.max_tokens=8", "prompts_per_step=2", "rollout.reward=toy_low_ids", "rollout.engine.kv_cache_gib=1",
           "learner.lora.rank=32"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    router = summary.pop("router")
    assert list(summary) == ["majority baseline", "TF-IDF + LR", "tiny zero-shot", "SFT", "SFT + RL"]
    assert all(0.0 <= s["mean_f1"] <= 1.0 for s in summary.values())
    assert router["system"] in ("SFT", "SFT + RL") and Path(router["adapter"]).parent.name == \
        {"SFT": "sft", "SFT + RL": "rl"}[router["system"]]
    assert f"This run's router: {router['system']}," in (out / "summary.md").read_text()
    assert (out / "sft" / "adapter" / "adapter_config.json").exists()
    assert (out / "rl" / "adapter" / "adapter_config.json").exists()
    assert [json.loads(line)["step"] for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert "SFT + RL" in proc.stdout and "[5/5]" in proc.stdout
    # the dashboard comes first, on loopback; vLLM's INFO lines went to the run's log file, not the console
    assert proc.stdout.lstrip().startswith("Ray dashboard: http://127.0.0.1:")
    assert (out / "logs" / "vllm.log").stat().st_size > 0 and "vllm.log" in proc.stdout

    # resumed with the endpoint: training is skipped, the tiny model is served, SIGTERM drains and exits 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve_cmd = [a for a in cmd if a != "--no-serve"] + ["--port", str(port)]
    server = subprocess.Popen(serve_cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, up = [], threading.Event()

    def read():
        for line in server.stdout:
            lines.append(line)
            if line.startswith("Serve endpoint:"):
                up.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert up.wait(900), "".join(lines)[-3000:]
        import httpx

        resp = httpx.post(f"http://127.0.0.1:{port}/route", timeout=120,
                          json={"conversation": [{"role": "user", "content": "Our brand voice is warm."}]})
        assert resp.status_code == 200 and resp.json()["results"][0]["version"] == 0, resp.text
        server.send_signal(signal.SIGTERM)
        assert server.wait(300) == 0, "".join(lines)[-3000:]
    finally:
        if server.poll() is None:
            server.kill()
    reader.join(10)
    # the stop, from the banner on (before it, Ray Train's PlacementGroupCleanerMonitor thread can print its own
    # traceback when another Ray instance runs on the machine, as the suite's session cluster does)
    stop = "".join(lines).split("Serve endpoint:", 1)[1]
    assert "drained:" in stop and "Traceback" not in stop and "SIGTERM received" not in stop, stop[-3000:]


@pytest.mark.parametrize("rl, kept", [
    ({"mean_f1": 0.70, "exact_match": 0.50}, "SFT + RL"),  # better F1, same exact
    ({"mean_f1": 0.70, "exact_match": 0.45}, "SFT"),  # better F1, worse exact
    ({"mean_f1": 0.65, "exact_match": 0.50}, "SFT"),  # same F1
    ({"mean_f1": 0.60, "exact_match": 0.60}, "SFT"),  # worse F1, better exact
])
def test_the_rl_adapter_is_the_runs_router_only_when_it_beats_its_sft_start(rl, kept):
    from memroute.quickstart import choose_router

    chosen, why = choose_router({"SFT": {"mean_f1": 0.65, "exact_match": 0.50}, "SFT + RL": rl})
    assert chosen == kept
    assert f"{rl['mean_f1']:.3f} vs 0.650" in why and ("did not" in why) == (kept == "SFT")


@pytest.mark.parametrize("flag, override, key", [
    ("--rl", "typo=1", "unknown config key typo"),
    ("--rl", "learner.loss.kind=grpo", "learner.loss.kind must be one of is, ppo, tis"),
    ("--rl", "rollout.engine.model=tiny", "must name the same model"),
    ("--sft", "optim.schedule=cosin", "optim.schedule must be one of cosine, linear, constant"),
])
def test_a_bad_override_fails_before_anything_starts(tmp_path, flag, override, key):
    out = tmp_path / "qs"
    proc = subprocess.run([sys.executable, "-m", "memroute.cli", "quickstart", "--out", str(out), "--no-serve",
                           flag, override], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and key in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr  # one line, naming the key
    assert not (out / "sft").exists()  # nothing ran: no SFT run dir, no Ray
