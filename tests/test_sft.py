"""LoRA SFT on Ray Train (learner.sft, learner.sft_data) with the tiny model on 8 short embedded examples.

One uninterrupted 1-worker reference run (module fixture) serves the convergence check, the kill/resume comparison,
the DDP comparison and the corrupt-checkpoint case. The tiny model is a random 2-layer Llama: with LoRA on the
projections only its logits stay near uniform (its final norm caps them), so the tests also put a LoRA on lm_head,
which lets the answer tokens' loss fall far below ln(vocab) ~ 10.8 within ~20 steps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.embedded import TRAIN_PATH
from learner.config import ALL_PROJECTIONS, SFTConfig
from learner.sft import main, read_metrics, train_sft, validate_sft_config
from learner.sft_data import (
    SFTDataError,
    batch_ids_hash,
    check_batching,
    epoch_plan,
    worker_micro_batches,
)
from memroute.core.checkpoint import CheckpointError
from memroute.core.config import ConfigError, load_config
from memroute.core.errors import run_command
from memroute.core.models import ModelNotFoundError

REPO = Path(__file__).resolve().parents[1]
STEPS = 24
EVERY = 5  # 4 examples a batch, 8 examples: 2 steps an epoch, so step 5 is mid-epoch (epoch 2, step 1)


def overrides(run_dir: Path, data: Path, **extra) -> list[str]:
    base = {
        "model.name": "tiny",
        "lora.target_modules": json.dumps(ALL_PROJECTIONS + ["lm_head"]),
        "optim.lr": 5e-3,
        "optim.warmup_steps": 2,
        "train_data": str(data),
        "run_dir": str(run_dir),
        "batch_size": 4,
        "max_steps": STEPS,
        "epochs": 100,
        "checkpoint_every": EVERY,
        "cpus_per_worker": 1,
        "max_seq_len": 512,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def tiny_cfg(run_dir: Path, data: Path, **extra) -> SFTConfig:
    return load_config(SFTConfig, None, overrides(run_dir, data, **extra))


@pytest.fixture(scope="module")
def short_data(tmp_path_factory) -> Path:
    """The 8 shortest embedded train rows (by text length), in file order."""
    rows = [json.loads(line) for line in TRAIN_PATH.read_text().splitlines()]
    size = lambda r: sum(len(t["content"]) for t in r["conversation"])  # noqa: E731
    keep = sorted(sorted(range(len(rows)), key=lambda i: size(rows[i]))[:8])
    path = tmp_path_factory.mktemp("sftdata") / "short.jsonl"
    path.write_text("".join(json.dumps(rows[i]) + "\n" for i in keep))
    return path


@pytest.fixture(scope="module")
def reference(ray_local, short_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sftref") / "run"
    out = train_sft(tiny_cfg(run_dir, short_data))
    return out, read_metrics(run_dir / "metrics.jsonl")


# --- pure data tests (no Ray, no model) -----------------------------------------------------------------------


def test_plan_is_deterministic_and_covers_each_example_once():
    lengths = [(i * 37) % 101 + 10 for i in range(203)]
    a, b = epoch_plan(lengths, 8, seed=3, epoch=1), epoch_plan(lengths, 8, seed=3, epoch=1)
    assert a == b and a != epoch_plan(lengths, 8, seed=3, epoch=2)
    flat = [i for batch in a for i in batch]
    assert len(a) == 203 // 8 and all(len(batch) == 8 for batch in a)
    assert len(flat) == len(set(flat)) == 200
    # length grouping: much less padding than random batches
    pad = sum(max(lengths[i] for i in bt) * len(bt) - sum(lengths[i] for i in bt) for bt in a)
    assert pad < 0.2 * sum(lengths[i] for i in flat)


def test_worker_shares_split_each_batch_evenly():
    lengths = list(range(100, 116))
    batch = list(range(16))
    shares = [worker_micro_batches(batch, lengths, r, 2, 2) for r in range(2)]
    assert all(len(s) == 2 and all(len(m) == 4 for m in s) for s in shares)
    assert sorted(i for s in shares for m in s for i in m) == batch
    with pytest.raises(SFTDataError, match="not divisible by num_workers \\* grad_accum"):
        check_batching(6, 2, 2)


# --- training through Ray Train ------------------------------------------------------------------------------


@pytest.mark.slow
def test_loss_falls_and_outputs_are_written(reference):
    out, rows = reference
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    losses = [r["loss"] for r in rows]
    assert losses[0] > 10.0  # ~ln(49152): the random tiny model guesses uniformly
    tail = sum(losses[-4:]) / 4
    assert tail < 5.0 and tail < losses[0] - 5.0, losses
    for key in ("epoch", "lr", "grad_norm", "tokens", "tokens_per_s", "elapsed", "batch_ids_hash"):
        assert key in rows[0]
    run_dir = Path(out["run_dir"])
    assert out["global_step"] == STEPS and out["final_loss"] == pytest.approx(losses[-1])
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert (run_dir / "config.yaml").exists() and list((run_dir / "tb").glob("events.out.tfevents.*"))
    ckpts = sorted(p.name for p in (run_dir / "train").glob("checkpoint_*") if p.is_dir())
    assert ckpts == ["checkpoint_000015", "checkpoint_000020", "checkpoint_000024"]  # keep_checkpoints=3
    # a run_dir that is complete resumes to the end at once and exports the same adapter
    again = train_sft(load_config(SFTConfig, run_dir / "config.yaml"))
    assert again["global_step"] == STEPS and again["start_step"] == STEPS
    assert len(read_metrics(run_dir / "metrics.jsonl")) == STEPS


def _snapshot_latest(run_dir: Path) -> str | None:
    try:
        latest = json.loads((run_dir / "train" / "checkpoint_manager_snapshot.json").read_text())
        return latest["latest_checkpoint_result"]["checkpoint_dir_name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(reference, short_data, ray_local, tmp_path):
    _, ref_rows = reference
    run_dir = tmp_path / "run"
    env = {**os.environ, "RAY_ADDRESS": ray_local.gcs_address, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "learner.sft", *overrides(run_dir, short_data)]
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    try:
        while True:
            assert proc.poll() is None, f"run ended before it was killed:\n{(tmp_path / 'first.log').read_text()[-3000:]}"
            assert time.time() < deadline, "no mid-epoch checkpoint in time"
            steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")]
            if _snapshot_latest(run_dir) == f"checkpoint_{EVERY:06d}" and max(steps, default=0) > EVERY:
                break
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # let the orphaned Ray worker die (Ray kills a dead driver's workers) before restarting
    metrics = run_dir / "metrics.jsonl"
    stable_since, size = time.time(), metrics.stat().st_size
    while time.time() - stable_since < 3:
        time.sleep(0.2)
        if metrics.stat().st_size != size:
            stable_since, size = time.time(), metrics.stat().st_size
    killed_steps = [r["step"] for r in read_metrics(metrics)]
    killed_at = _snapshot_latest(run_dir)
    assert killed_at != f"checkpoint_{STEPS:06d}" and max(killed_steps) > EVERY

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"adapter written to {run_dir / 'adapter'}" in done.stdout
    rows = read_metrics(metrics)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # every step exactly once
    assert [r["batch_ids_hash"] for r in rows] == [r["batch_ids_hash"] for r in ref_rows]
    assert [r["lr"] for r in rows] == pytest.approx([r["lr"] for r in ref_rows], rel=1e-9)
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in ref_rows], rel=1e-3, abs=1e-3)
    assert [r["grad_norm"] for r in rows] == pytest.approx([r["grad_norm"] for r in ref_rows], rel=1e-2, abs=1e-3)


@pytest.mark.slow
def test_ddp_two_workers_match_one_worker(reference, short_data, all_cpus, tmp_path):
    _, ref_rows = reference
    n = 3  # LRs of steps 1-3 do not depend on max_steps (warmup 2, then cosine at progress 0)
    out = train_sft(tiny_cfg(tmp_path / "run", short_data, num_workers=2, grad_accum=2, max_steps=n))
    rows = read_metrics(Path(out["run_dir"]) / "metrics.jsonl")
    assert [r["workers"] for r in rows] == [2] * n
    assert [r["batch_ids_hash"] for r in rows] == [r["batch_ids_hash"] for r in ref_rows[:n]]
    assert [r["lr"] for r in rows] == pytest.approx([r["lr"] for r in ref_rows[:n]], rel=1e-9)
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in ref_rows[:n]], rel=1e-3)
    assert [r["grad_norm"] for r in rows] == pytest.approx([r["grad_norm"] for r in ref_rows[:n]], rel=1e-2)


def test_gpu_config_loads_and_validates():
    cfg = load_config(SFTConfig, REPO / "configs" / "gpu_llama8b_sft.yaml")
    validate_sft_config(cfg)
    assert cfg.model.name == "/shared/models/Llama-3.1-8B-Instruct" and cfg.model.dtype == "bfloat16"
    assert cfg.model.gradient_checkpointing and cfg.use_gpu and cfg.num_workers == 4
    assert (cfg.lora.rank, cfg.lora.alpha) == (32, 32)
    assert cfg.train_data == "../shared/data/train.jsonl"
    cpu = load_config(SFTConfig, REPO / "configs" / "cpu_sft.yaml")
    validate_sft_config(cpu)
    assert cpu.model.name == "smollm2-135m" and not cpu.use_gpu


@pytest.mark.slow
def test_gpu_config_runs_on_cpu_with_overrides(ray_local, short_data, tmp_path):
    cfg = load_config(SFTConfig, REPO / "configs" / "gpu_llama8b_sft.yaml",
                      ["model.name=tiny", "num_workers=1", "use_gpu=false", "max_steps=1", "cpus_per_worker=1",
                       f"train_data={short_data}", "batch_size=4", f"run_dir={tmp_path / 'run'}"])
    out = train_sft(cfg)  # bfloat16 + gradient checkpointing + LoRA dropout, on CPU
    assert out["global_step"] == 1
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").exists()


# --- bad inputs: clear errors ---------------------------------------------------------------------------------


def test_missing_model_path(short_data, tmp_path):
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        train_sft(tiny_cfg(tmp_path / "run", short_data, **{"model.name": str(tmp_path / "no-such-model")}))


def test_empty_dataset(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(SFTDataError, match=f"{empty}.*empty"):
        train_sft(tiny_cfg(tmp_path / "run", empty))


def test_example_over_max_seq_len(short_data, tmp_path):
    with pytest.raises(SFTDataError, match=r"example 'embedded-train-\d+' .* is \d+ tokens long .*max_seq_len=64"):
        train_sft(tiny_cfg(tmp_path / "run", short_data, max_seq_len=64))


def test_batch_size_not_divisible(short_data, tmp_path, capsys):
    with pytest.raises(SFTDataError, match="batch_size=6 is not divisible by num_workers \\* grad_accum = 2 \\* 2"):
        train_sft(tiny_cfg(tmp_path / "run", short_data, batch_size=6, num_workers=2, grad_accum=2))
    # the CLI says the same, as one error line and the usage-error exit status
    args = overrides(tmp_path / "run", short_data, batch_size=6, num_workers=2, grad_accum=2)
    assert run_command("memroute sft", main, args) == 2
    assert "memroute sft: error: batch_size=6 is not divisible" in capsys.readouterr().err


def test_missing_resume_checkpoint(short_data, tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint to resume from not found: .*nope"):
        train_sft(tiny_cfg(tmp_path / "run", short_data, resume_from=str(tmp_path / "nope")))


@pytest.mark.slow
def test_corrupt_latest_checkpoint_is_an_error(reference, short_data, tmp_path):
    out, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(out["run_dir"], run_dir)
    state = run_dir / "train" / f"checkpoint_{STEPS:06d}" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=f"latest checkpoint of run {run_dir} is corrupt.*trainer_state.pt"):
        train_sft(tiny_cfg(run_dir, short_data))
    # resuming a given checkpoint that is corrupt names it too
    with pytest.raises(CheckpointError, match=f"checkpoint {state.parent} is corrupt"):
        train_sft(tiny_cfg(tmp_path / "other", short_data, resume_from=str(state.parent)))
    # and a checkpoint Ray lists but that is gone
    shutil.rmtree(state.parent)
    with pytest.raises(CheckpointError, match=f"{state.parent}, is missing"):
        train_sft(tiny_cfg(run_dir, short_data))


def test_batch_ids_hash_is_order_sensitive():
    assert batch_ids_hash(["a", "b"]) != batch_ids_hash(["b", "a"])


def test_top_layers_puts_lora_in_the_last_layers_only():
    import torch

    from learner.config import LoraConfig, ModelConfig
    from learner.lora import adapted_layers, build_policy

    policy = build_policy(ModelConfig(name="tiny", dtype="float32"), LoraConfig(rank=4, top_layers=1))
    n_layers = policy.config.num_hidden_layers
    trainable = [name for name, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all(f"layers.{n_layers - 1}." in name for name in trainable), trainable
    # every projection of the last layer is adapted, and nothing below it
    assert len(trainable) == 2 * len(ALL_PROJECTIONS)
    ids = torch.randint(0, 1000, (1, 16))
    policy(input_ids=ids).logits.float().logsumexp(-1).sum().backward()
    assert all(p.grad is not None for p in policy.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="lora.top_layers=5 is out of range: the model has 2 decoder layers"):
        adapted_layers(LoraConfig(top_layers=5), 2)
    with pytest.raises(ConfigError, match="lora.top_layers must be >= 1"):  # refused when the config loads
        load_config(SFTConfig, None, ["lora.top_layers=0"])


def test_widen_adapter_starts_exactly_where_the_saved_one_is_and_adapts_more_layers(tmp_path):
    """A k=1 adapter widened to k=2: the same logits as the saved adapter, the new layer's LoRA trainable and
    starting at B = 0; a mismatched rank is refused with a clear error."""
    import torch

    from learner.config import LoraConfig, ModelConfig
    from learner.lora import build_policy

    model = ModelConfig(name="tiny", dtype="float32")
    saved = build_policy(model, LoraConfig(rank=4, alpha=8, top_layers=1), seed=1)
    with torch.no_grad():  # a trained adapter: B != 0, so the saved adapter changes the logits
        for name, p in saved.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    saved.eval()
    saved.save_pretrained(tmp_path / "k1")
    ids = torch.randint(0, 1000, (1, 16))
    with torch.no_grad():
        want = saved(input_ids=ids).logits
        with saved.disable_adapter():
            base = saved(input_ids=ids).logits
    assert not torch.allclose(want, base, atol=1e-4)

    wide = build_policy(model, LoraConfig(rank=4, alpha=8, top_layers=2), adapter=tmp_path / "k1", widen=True)
    wide.eval()
    with torch.no_grad():
        got = wide(input_ids=ids).logits
    # save_pretrained keeps float32 here, so the widened policy matches up to float rounding
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    trainable = {name for name, p in wide.named_parameters() if p.requires_grad}
    assert any("layers.0." in n for n in trainable) and any("layers.1." in n for n in trainable)
    new_b = [p for name, p in wide.named_parameters() if "layers.0." in name and "lora_B" in name]
    assert new_b and all(torch.count_nonzero(p) == 0 for p in new_b)

    with pytest.raises(ValueError, match="cannot widen adapter .*: r 4 != 8"):
        build_policy(model, LoraConfig(rank=8, alpha=8, top_layers=2), adapter=tmp_path / "k1", widen=True)
    with pytest.raises(ConfigError, match="widen_adapter=true needs init_adapter"):
        load_config(SFTConfig, None, ["widen_adapter=true", "lora.top_layers=2"])


def test_top_layers_deeper_than_the_model_is_refused_before_training(short_data, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match="lora.top_layers=5 is out of range: the model has 2 decoder layers"):
        train_sft(tiny_cfg(run_dir, short_data, **{"lora.top_layers": 5}))
    assert not run_dir.exists()  # refused before anything was written
