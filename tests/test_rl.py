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

from data.mix import step_batch
from learner.rl import RLConfig, train_rl
from learner.tracking import read_metrics
from memroute.core.config import ConfigError, load_config, preset_overrides

REPO = Path(__file__).resolve().parents[1]
TINY = preset_overrides("tiny_rl")  # configs/tiny_rl.yaml: the tiny random model with the toy reward


def test_step_batches_cover_each_epoch_once_and_are_reproducible():
    n, per = 10, 4
    seen = [i for s in range(5) for i in step_batch(n, s, per, seed=3)]  # 20 = two epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert step_batch(n, 3, per, seed=3) == step_batch(n, 3, per, seed=3)
    assert step_batch(n, 0, per, seed=3) != step_batch(n, 0, per, seed=4)


def test_bad_mode_is_refused():  # when the config is loaded, before train_rl could start anything
    with pytest.raises(ConfigError, match="mode must be one of sync, off_policy"):
        load_config(RLConfig, None, TINY + ["mode=async"])
    with pytest.raises(ConfigError, match="learner.threads must be >= 1"):
        load_config(RLConfig, None, TINY + ["learner.threads=0"])


def tiny_cfg(run_dir, **over) -> RLConfig:
    return load_config(RLConfig, None, TINY + [f"run_dir={run_dir}"] + [f"{k}={v}" for k, v in over.items()])


def expected_ids(cfg: RLConfig, steps: range) -> list[list[str]]:
    from data.schema import read_examples

    train = read_examples(cfg.train_data)
    return [[train[i].id for i in step_batch(len(train), s, cfg.prompts_per_step, cfg.seed)] for s in steps]


def wait_for_step(metrics: Path, step: int, timeout: float = 600, process=None, poll_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r["step"] >= step for r in read_metrics(metrics)):
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the driver exited ({process.returncode}) before step {step}:\n"
                                 + process.stderr.read()[-3000:])
        time.sleep(poll_s)
    raise TimeoutError(f"no step {step} in {metrics} after {timeout}s")


@pytest.mark.slow
def test_a_killed_driver_and_a_killed_rollout_worker_lose_and_repeat_nothing(all_cpus, tmp_path):
    ray_local = all_cpus
    import ray

    run = tmp_path / "rl"
    metrics = run / "metrics.jsonl"
    # 1. a driver (`python -m learner.rl`, joined to this Ray cluster) SIGKILLed after step 3; checkpoint at step 2
    args = TINY + [f"run_dir={run}", "steps=8", "checkpoint_every=2"]
    env = {**os.environ, "RAY_ADDRESS": ray_local.gcs_address, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen([sys.executable, "-m", "learner.rl", *args], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(metrics, 3, process=driver, poll_s=0.05)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    # a loaded machine can let the driver run a step or two past step 3 before the kill lands: what matters is
    # that the newest checkpoint is a saved one (every 2 steps) at or behind the last step logged, and steps remain
    killed_at = max(r["step"] for r in read_metrics(metrics))
    saved = json.loads((run / "checkpoint" / "memroute_checkpoint.json").read_text())["state"]["rl_step"]
    assert saved % 2 == 0 and 2 <= saved <= killed_at < 7, (saved, killed_at)

    # 2. the same command again resumes from the checkpoint; meanwhile its rollout worker's process is SIGKILLed
    killed = {}

    def kill_worker_after_a_resumed_step():
        wait_for_step(metrics, max(5, killed_at + 1))  # a step the resumed run made, not one the killed run left
        worker = ray.get_actor(f"rl-{run.name}-rollout-0")
        # the run reserved one placement group (learner bundle 0, rollout bundle 1) and the worker runs inside it
        groups = [g for g in ray.util.placement_group_table().values()
                  if g["name"] == f"rl-{run.name}" and g["state"] == "CREATED"]
        killed["pg"] = [g["bundles"] for g in groups]
        killed["worker_pg"] = ray.get(worker.__ray_call__.remote(
            lambda self: ray.get_runtime_context().get_placement_group_id()))
        killed["pg_id"] = [g["placement_group_id"] for g in groups]
        killed["pid"] = ray.get(worker.pid.remote())
        os.kill(killed["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_worker_after_a_resumed_step, daemon=True)
    killer.start()
    cfg = tiny_cfg(run, steps=8, checkpoint_every=2)
    out = train_rl(cfg)
    killer.join(timeout=5)
    rows = read_metrics(metrics)
    assert [r["step"] for r in rows] == list(range(1, 9))  # the killed run's unsaved step is redone, not repeated
    assert [r["sample_ids"] for r in rows] == expected_ids(cfg, range(8))  # every conversation once per step
    assert all(r["samples"] == cfg.prompts_per_step * cfg.rollout.n for r in rows)
    assert "pid" in killed and rows[-1]["worker_restarts"] >= 1, "the rollout worker was never killed"
    assert killed["pg"] == [{0: {"CPU": 1.0}, 1: {"CPU": 1.0}}] and killed["worker_pg"] == killed["pg_id"][0]
    assert not [g for g in ray.util.placement_group_table().values()  # released at the end of the run
                if g["name"] == f"rl-{run.name}" and g["state"] == "CREATED"]
    assert all(r["staleness"] == 0 for r in rows)  # sync: always sampled by the current version
    updated = [r for r in rows if r["kept_groups"]]
    assert updated and all(r["logprob_gap"] < 0.05 and r["push_seconds"] > 0 for r in updated)
    versions = [r["version"] for r in rows]
    assert versions == sorted(versions) and versions[-1] == len(updated)  # one verified push per update
    for key in ("reward", "f1", "parse_failure_rate", "loss", "kl", "mean_ratio", "grad_norm", "rollout_seconds",
                "update_seconds", "tokens_per_s"):
        assert all(isinstance(r.get(key), (int, float)) for r in updated), key
    state = json.loads((run / "checkpoint" / "memroute_checkpoint.json").read_text())["state"]
    assert state["rl_step"] == 8 and state["step"] == len(updated)  # loop steps vs learner updates
    assert (run / "adapter" / "adapter_config.json").exists() and out["eval"]["n"] == 4
    assert (run / "eval_metrics.json").exists() and list((run / "tb").iterdir())


@pytest.mark.slow
def test_off_policy_samples_the_next_step_during_the_update(all_cpus, tmp_path):
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


def test_placement_bundles_and_a_refused_placement(ray_local):
    from memroute.core.placement import PlacementError, reserve, rl_bundles

    gpu = load_config(RLConfig, REPO / "configs" / "gpu_llama8b_rl.yaml")
    assert rl_bundles(gpu.learner, gpu.rollout) == [{"CPU": 4.0, "GPU": 1.0}] * 2 + [{"CPU": 4.0, "GPU": 1.0}] * 4
    cpu = load_config(RLConfig, REPO / "configs" / "cpu_rl.yaml")
    assert rl_bundles(cpu.learner, cpu.rollout) == [{"CPU": 1.0}, {"CPU": 1.0}]
    # more than this 2-CPU cluster has: a clear error naming the request and the cluster, nothing left reserved
    with pytest.raises(PlacementError, match=r"GPU.*not placed within 1s; the cluster has"):
        reserve(rl_bundles(gpu.learner, gpu.rollout), "PACK", "too-big", timeout_s=1)
    with pytest.raises(ValueError, match="placement strategy must be one of"):
        reserve([{"CPU": 1.0}], "EVERYWHERE")
    with pytest.raises(ValueError, match="placement_strategy must be one of"):
        train_rl(load_config(RLConfig, None, TINY + ["placement_strategy=EVERYWHERE"]))


def test_rl_configs_load():
    cpu = load_config(RLConfig, REPO / "configs" / "cpu_rl.yaml")
    assert cpu.learner.model.name == "smollm2-135m" and not cpu.rollout.use_gpu and cpu.rollout.reward == "routing"
    gpu = load_config(RLConfig, REPO / "configs" / "gpu_llama8b_rl.yaml")
    assert gpu.learner.model.name == gpu.rollout.engine.model == "/shared/models/Llama-3.1-8B-Instruct"
    assert (gpu.learner.lora.rank, gpu.mode, gpu.learner.use_gpu, gpu.rollout.use_gpu) == (32, "off_policy", True, True)


def test_recipe_configs_chain_sft_into_rl():
    from learner.config import SFTConfig

    sft = load_config(SFTConfig, REPO / "configs" / "recipe_sft.yaml")
    rl = load_config(RLConfig, REPO / "configs" / "recipe_rl.yaml")
    assert rl.learner.adapter == f"{sft.run_dir}/adapter"  # stage 2 starts from what stage 1 exports
    # SFT trains on the reference split mixed with the embedded sets; RL samples prompts from the reference split
    assert sft.train_data.split(",")[0] == rl.train_data == "../shared/data/train.jsonl"
    assert set(sft.train_data.split(",")[1:]) == {"data/embedded/train.jsonl", "data/embedded/short_train.jsonl"}
    assert sft.eval_data == rl.eval_data == "../shared/data/test.jsonl" and rl.eval_limit is None
    assert (sft.lora.rank, sft.lora.alpha) == (rl.learner.lora.rank, rl.learner.lora.alpha) == (32, 32)
    assert rl.rollout.reward == "routing" and sft.model.name == rl.learner.model.name == rl.rollout.engine.model
