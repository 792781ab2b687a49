"""The RL loop end to end on real Ray actors and a real vLLM engine (tiny model, a few steps).

The tiny model is random: its output is a near-uniform distribution over 49k tokens that a LoRA on its projections
cannot move much (the final RMSNorm bounds the hidden state and the tied output rows are ~0.02 in scale), so these
tests check the loop's mechanics: every sample accounted for once, one verified push per update, staleness,
resume after a killed driver, a killed rollout worker. That the loop *learns* is measured on the real model by
bench/rl_learns.py.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from learner.rl import RLConfig, step_batch, train_rl
from learner.tracking import read_metrics
from memroute.config import load_config

REPO = Path(__file__).resolve().parents[1]
TINY = ["learner.model.name=tiny", "learner.model.dtype=float32", "learner.lora.rank=8", "learner.lora.alpha=16",
        "learner.optim.lr=0.05", "rollout.engine.model=tiny", "rollout.engine.max_model_len=1024",
        "rollout.n=4", "rollout.max_tokens=6", "rollout.reward=toy_low_ids", "prompts_per_step=2",
        "eval_limit=4"]  # toy reward: the random model never parses, so the routing reward would be -1 everywhere


def test_step_batches_cover_each_epoch_once_and_are_reproducible():
    n, per = 10, 4
    seen = [i for s in range(5) for i in step_batch(n, s, per, seed=3)]  # 20 = two epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert step_batch(n, 3, per, seed=3) == step_batch(n, 3, per, seed=3)
    assert step_batch(n, 0, per, seed=3) != step_batch(n, 0, per, seed=4)


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be sync or off_policy"):
        train_rl(load_config(RLConfig, None, TINY + ["mode=async"]))


def tiny_cfg(run_dir, **over) -> RLConfig:
    return load_config(RLConfig, None, TINY + [f"run_dir={run_dir}"] + [f"{k}={v}" for k, v in over.items()])


def expected_ids(cfg: RLConfig, steps: range) -> list[list[str]]:
    from data.schema import read_examples

    train = read_examples(cfg.train_data)
    return [[train[i].id for i in step_batch(len(train), s, cfg.prompts_per_step, cfg.seed)] for s in steps]


def wait_for_step(metrics: Path, step: int, timeout: float = 600, process=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r["step"] >= step for r in read_metrics(metrics)):
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the driver exited ({process.returncode}) before step {step}:\n"
                                 + process.stderr.read()[-3000:])
        time.sleep(0.5)
    raise TimeoutError(f"no step {step} in {metrics} after {timeout}s")


@pytest.mark.slow
def test_a_killed_driver_and_a_killed_rollout_worker_lose_and_repeat_nothing(ray_local, tmp_path):
    import ray

    run = tmp_path / "rl"
    metrics = run / "metrics.jsonl"
    # 1. a driver (`python -m learner.rl`, joined to this Ray cluster) SIGKILLed after step 3; checkpoint at step 2
    args = TINY + [f"run_dir={run}", "steps=8", "checkpoint_every=2"]
    env = {**os.environ, "RAY_ADDRESS": ray_local.gcs_address, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen([sys.executable, "-m", "learner.rl", *args], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(metrics, 3, process=driver)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert json.loads((run / "checkpoint" / "state.json").read_text())["rl_step"] in (2, 3)

    # 2. the same command again resumes from the checkpoint; meanwhile its rollout worker's process is SIGKILLed
    killed = {}

    def kill_worker_after_step_5():
        wait_for_step(metrics, 5)
        worker = ray.get_actor(f"rl-{run.name}-rollout-0")
        killed["pid"] = ray.get(worker.pid.remote())
        os.kill(killed["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_worker_after_step_5, daemon=True)
    killer.start()
    cfg = tiny_cfg(run, steps=8, checkpoint_every=2)
    out = train_rl(cfg)
    killer.join(timeout=5)
    rows = read_metrics(metrics)
    assert [r["step"] for r in rows] == list(range(1, 9))  # the killed run's unsaved step is redone, not repeated
    assert [r["sample_ids"] for r in rows] == expected_ids(cfg, range(8))  # every conversation once per step
    assert all(r["samples"] == cfg.prompts_per_step * cfg.rollout.n for r in rows)
    assert "pid" in killed and rows[-1]["worker_restarts"] >= 1, "the rollout worker was never killed"
    assert all(r["staleness"] == 0 for r in rows)  # sync: always sampled by the current version
    updated = [r for r in rows if r["kept_groups"]]
    assert updated and all(r["logprob_gap"] < 0.05 and r["push_seconds"] > 0 for r in updated)
    versions = [r["version"] for r in rows]
    assert versions == sorted(versions) and versions[-1] == len(updated)  # one verified push per update
    for key in ("reward", "f1", "parse_failure_rate", "loss", "kl", "mean_ratio", "grad_norm", "rollout_seconds",
                "update_seconds", "tokens_per_s"):
        assert all(isinstance(r.get(key), (int, float)) for r in updated), key
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["rl_step"] == 8 and state["step"] == len(updated)  # loop steps vs learner updates
    assert (run / "adapter" / "adapter_config.json").exists() and out["eval"]["n"] == 4
    assert (run / "eval_metrics.json").exists() and list((run / "tb").iterdir())


@pytest.mark.slow
def test_off_policy_samples_the_next_step_during_the_update(ray_local, tmp_path):
    run = tmp_path / "rl-off"
    cfg = tiny_cfg(run, steps=5, mode="off_policy", max_staleness=1, checkpoint_every=5)
    train_rl(cfg)
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["sample_ids"] for r in rows] == expected_ids(cfg, range(5))
    # step 1 is sampled by version 0 before any update; from then on each batch was sampled while the learner
    # made the previous update, so it is exactly one version behind (when that update happened)
    assert rows[0]["staleness"] == 0
    for prev, row in zip(rows, rows[1:]):
        assert row["staleness"] == (1 if prev["kept_groups"] else 0)
        assert row["dropped_stale"] == 0
    # with max_staleness 0 the same stale groups are dropped and counted, never trained on
    run0 = tmp_path / "rl-off0"
    train_rl(tiny_cfg(run0, steps=3, mode="off_policy", max_staleness=0, checkpoint_every=5))
    rows0 = read_metrics(run0 / "metrics.jsonl")
    for prev, row in zip(rows0, rows0[1:]):
        if prev["kept_groups"]:
            assert row["dropped_stale"] == row["groups"] and row["kept_groups"] == 0


def test_rl_configs_load():
    cpu = load_config(RLConfig, REPO / "configs" / "cpu_rl.yaml")
    assert cpu.learner.model.name == "smollm2-135m" and not cpu.rollout.use_gpu and cpu.rollout.reward == "routing"
    gpu = load_config(RLConfig, REPO / "configs" / "gpu_llama8b_rl.yaml")
    assert gpu.learner.model.name == gpu.rollout.engine.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert (gpu.learner.lora.rank, gpu.mode, gpu.learner.use_gpu, gpu.rollout.use_gpu) == (32, "off_policy", True, True)
