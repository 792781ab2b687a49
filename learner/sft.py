"""LoRA supervised fine-tuning on Ray Train (TorchTrainer, DDP), resumable exactly after any kill.

    python -m learner.sft --config configs/cpu_sft.yaml [key=value ...]

Layout of a run directory::

    <run_dir>/config.yaml          the config of the latest session (atomic)
    <run_dir>/metrics.jsonl        one row per optimizer step (rank 0)
    <run_dir>/tb/                  TensorBoard scalars (rank 0)
    <run_dir>/train/               Ray Train's run folder (RunConfig(storage_path=<run_dir>, name="train")):
        checkpoint_manager_snapshot.json      Ray's list of committed checkpoints
        checkpoint_000025/ ...                one folder per checkpoint (see below)
    <run_dir>/adapter/             the final LoRA adapter, a peft folder (atomic)

A checkpoint folder holds ``adapter/`` (peft ``save_pretrained``), ``trainer_state.pt`` (optimizer, scheduler, the
RNG state of every rank, the data position ``(epoch, step_in_epoch, global_step)``, the data-plan fingerprint,
elapsed time) and ``config.yaml``, and, written last, ``memroute_checkpoint.json`` with the sha256 of every file.

Checkpoint and resume, and who does what:

- Rank 0 writes the checkpoint into a local temp dir and hands it to ``ray.train.report(metrics, checkpoint=...)``
  (the other ranks report ``None``; every rank reports, it is a barrier). On a local ``storage_path`` our
  ``checkpoint_upload_fn`` copies it to a hidden temp folder beside its final name and renames it into place;
  elsewhere Ray's own upload copies it. Ray's controller then registers it in ``checkpoint_manager_snapshot.json``
  and deletes the oldest beyond ``keep_checkpoints``. A checkpoint Ray has not registered is never resumed from.
- Starting a run whose ``<run_dir>/train/`` has a snapshot, Ray restores it and ``ray.train.get_checkpoint()``
  returns the latest committed checkpoint in every worker (the same after a worker-group restart). Before that, the
  driver reads the snapshot and verifies that checkpoint against its manifest, so a corrupt or missing one is an
  error naming it, not a silent fresh start. ``resume_from=<folder>`` starts from a given checkpoint (Train V2 has
  no ``resume_from_checkpoint`` any more: we pass the path in ``train_loop_config``).
- What we restore by hand (Ray knows nothing of it): adapter weights, optimizer moments, LR scheduler, RNG state
  and the data position, so the next batch, LR and optimizer state are exactly those of an uninterrupted run.
- metrics.jsonl rows after the checkpoint's step are dropped before training resumes, TensorBoard events after it
  are purged (``SummaryWriter(purge_step=...)``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from data.atomic import write_text_atomic
from learner.config import SFTConfig
from learner.sft_data import (
    SFTDataError,
    TokenizedExample,
    batch_ids_hash,
    check_batching,
    collate,
    epoch_plan,
    load_sft_examples,
    plan_fingerprint,
    steps_per_epoch,
    worker_micro_batches,
)
from learner.tracking import RunTracker, read_metrics  # noqa: F401 - read_metrics: re-exported for callers
from memroute.core.checkpoint import (ADAPTER, RAY_RUN_NAME, CheckpointError, commit_copy, ray_latest_checkpoint,
                                      write_manifest)
from memroute.core.checkpoint import verify_checkpoint as verify_sealed
from memroute.core.config import ConfigError, dump_config
from memroute.core.errors import run_command

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
TRAINER_STATE = "trainer_state.pt"
HF_SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}  # config name -> HF name
GAUGES = ("loss", "lr", "grad_norm", "tokens", "tokens_per_s", "elapsed", "step", "epoch")  # memroute_sft_<name>


# --- config checks --------------------------------------------------------------------------------------------


def validate_sft_config(cfg: SFTConfig) -> None:
    """What the config cannot check by itself when it is built (SFTConfig.__post_init__ checks the values): the
    batch split over workers, and that `init_adapter` is an adapter folder."""
    check_batching(cfg.batch_size, cfg.num_workers, cfg.grad_accum)
    if cfg.init_adapter and not (Path(cfg.init_adapter).expanduser() / "adapter_config.json").is_file():
        raise ConfigError(f"init_adapter={cfg.init_adapter}: no LoRA adapter there (expected adapter_config.json)")


def _check_top_layers(cfg: SFTConfig, model_path) -> None:
    """lora.top_layers against the model's depth, on the driver: in a Ray Train worker the same error would come
    back wrapped in a WorkerGroupError after the cluster has started."""
    if cfg.lora.top_layers is None or not Path(model_path).is_dir():  # a hub id: left to the workers
        return
    from transformers import AutoConfig

    from learner.lora import adapted_layers

    try:
        adapted_layers(cfg.lora, AutoConfig.from_pretrained(model_path, local_files_only=True).num_hidden_layers)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def shared_prefix_len(examples: Sequence[TokenizedExample]) -> int:
    """Tokens every example's prompt starts with (0 when fewer than two examples share any)."""
    from learner.segment import common_prefix_len

    if len(examples) < 2:
        return 0
    return common_prefix_len([ex.input_ids for ex in examples], cap=min(ex.n_prompt for ex in examples) - 1)


def total_steps(cfg: SFTConfig, n_examples: int) -> int:
    per_epoch = steps_per_epoch(n_examples, cfg.batch_size)
    if per_epoch == 0:
        raise SFTDataError(f"training dataset {cfg.train_data} has {n_examples} examples, fewer than "
                           f"batch_size={cfg.batch_size}: not one full batch")
    steps = per_epoch * cfg.epochs
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


# --- checkpoints ----------------------------------------------------------------------------------------------


def write_checkpoint(folder: Path, policy, optimizer, scheduler, state: dict, cfg: SFTConfig) -> None:
    """Write a complete checkpoint into `folder` (a fresh temp dir); the manifest comes last."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(str(folder / ADAPTER))
    torch.save({**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
               folder / TRAINER_STATE)
    (folder / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
    write_manifest(folder, {"format": CHECKPOINT_FORMAT, **{k: state[k] for k in (
        "global_step", "epoch", "step_in_epoch", "plan_fingerprint", "total_steps")}})


def verify_checkpoint(folder: str | os.PathLike) -> dict:
    """An SFT checkpoint's manifest, after checking every file against it; `CheckpointError` naming the problem."""
    manifest = verify_sealed(folder, required=(TRAINER_STATE, f"{ADAPTER}/adapter_config.json"))
    if "global_step" not in manifest:
        raise CheckpointError(f"checkpoint {folder} is not a memroute SFT checkpoint: its manifest has no global_step")
    return manifest


def resolve_resume(cfg: SFTConfig, run_dir: Path) -> Path | None:
    """The checkpoint this session starts from (verified), or None for a fresh start."""
    latest = ray_latest_checkpoint(run_dir)
    if cfg.resume_from:
        wanted = Path(cfg.resume_from).expanduser().resolve()
        if not wanted.exists():
            raise CheckpointError(f"checkpoint to resume from not found: {wanted} (resume_from)")
        verify_checkpoint(wanted)
        if latest is not None and latest.resolve() != wanted:
            raise CheckpointError(
                f"resume_from={wanted} but run_dir {run_dir} already has checkpoints (latest {latest}); Ray Train "
                f"resumes a run from its latest checkpoint. To branch from another checkpoint use a new run_dir")
        return wanted
    if latest is None:
        return None
    if not latest.exists():
        raise CheckpointError(f"the latest checkpoint of run {run_dir}, {latest}, is missing (Ray Train's list "
                              f"names it). Not starting over silently: restore it, or delete {latest.parent} to "
                              f"start over")
    try:
        verify_checkpoint(latest)
    except CheckpointError as e:
        raise CheckpointError(f"the latest checkpoint of run {run_dir} is corrupt: {e}. Not starting over "
                              f"silently: resume from an earlier checkpoint with resume_from=<folder> and a new "
                              f"run_dir, or delete {latest.parent} to start over") from None
    return latest


def load_trainer_state(folder: Path) -> dict:
    import torch

    try:
        return torch.load(folder / TRAINER_STATE, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"checkpoint {folder}: cannot read {TRAINER_STATE}: {e}") from None


def _rng_state() -> dict:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _atomic_local_upload(checkpoint, checkpoint_dir_name: str):
    """`checkpoint_upload_fn` for a local storage path: copied to a temp folder, then renamed into place (one
    left by a killed session before Ray registered it is never resumed from, so it is replaced)."""
    import ray.train

    exp = Path(ray.train.get_context().get_storage().experiment_fs_path)
    final = commit_copy(checkpoint.path, exp / checkpoint_dir_name)
    return ray.train.Checkpoint(path=str(final))


# --- the training step (shared by the Ray Train loop and the bare benchmark loop) ----------------------------


def build_optimizer(cfg: SFTConfig, policy, steps: int):
    """AdamW over the LoRA parameters only, and the warmup + decay schedule."""
    import torch
    from transformers import get_scheduler

    params = [p for p in policy.parameters() if p.requires_grad]
    if cfg.optim.loraplus_ratio is not None:
        from peft.optimizers import create_loraplus_optimizer

        optimizer = create_loraplus_optimizer(policy, torch.optim.AdamW, lr=cfg.optim.lr,
                                              loraplus_lr_ratio=cfg.optim.loraplus_ratio,
                                              betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                      weight_decay=cfg.optim.weight_decay)
    scheduler = get_scheduler(HF_SCHEDULES[cfg.optim.schedule], optimizer,
                              num_warmup_steps=cfg.optim.warmup_steps, num_training_steps=steps)
    return params, optimizer, scheduler


def masked_ce_sum(model, mb: dict, device):
    """Weighted sum of the cross-entropy over the answer tokens of a micro-batch (logits only from the first
    answer on)."""
    import torch.nn.functional as F

    input_ids = mb["input_ids"].to(device, non_blocking=True)
    labels = mb["labels"].to(device, non_blocking=True)
    start = mb["answer_start"]
    keep = input_ids.shape[1] - start + 1  # positions start-1 .. L-1; position t predicts token t+1
    out = model(input_ids=input_ids, attention_mask=mb["attention_mask"].to(device, non_blocking=True),
                logits_to_keep=keep, use_cache=False)
    logits = out.logits[:, :-1].float()
    targets = labels[:, start:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                         reduction="none")
    return (ce * mb["weights"][:, start:].reshape(-1).to(device)).sum()


# How much padding (in tokens) a row may add to a group of shorter rows rather than run on its own: a separate run
# of the layers has a fixed cost, padding a cost per token (learner.segment.length_groups; bench/sft_throughput.py).
PAD_TOKENS = 128


def answer_loss_fn(model, examples: Sequence[TokenizedExample], pad_id: int, device, prefix_len: int = 0,
                   cache=None, pad_tokens: int | None = PAD_TOKENS):
    """`fn(indices) -> summed answer cross-entropy` of those examples, by the path the run uses:

    - `cache` (a `learner.trunk_cache.TrunkCache`): the top layers only, from the stored trunk states;
    - ``prefix_len > 0``: the whole model, the shared prefix run once per micro-batch (`learner.segment`);
    - otherwise one right-padded forward per micro-batch (`masked_ce_sum`).

    The first two run the examples' rests after the shared prefix in groups of similar length (`pad_tokens`,
    see `learner.segment.length_groups`; None: all right-padded together).
    """
    from learner.segment import embed, prefix_answer_ce

    dtype = next(p for p in model.parameters()).dtype
    if cache is not None:
        P = cache.prefix_len

        def cached(indices):
            ids = [examples[i].input_ids for i in indices]
            prefix, rows = cache.tensors(ids, dtype, device)
            return prefix_answer_ce(model, prefix, rows, [x[P:] for x in ids], [examples[i].n_answer for i in indices],
                                    start=cache.layer, weights=[examples[i].weights for i in indices],
                                    pad_tokens=pad_tokens)
        return cached
    if prefix_len > 0:
        import torch

        P = prefix_len

        def shared(indices):
            ids = [examples[i].input_ids for i in indices]
            prefix = embed(model, torch.tensor(ids[0][:P], device=device))
            rows = [embed(model, torch.tensor(x[P:], device=device)) for x in ids]
            return prefix_answer_ce(model, prefix, rows, [x[P:] for x in ids], [examples[i].n_answer for i in indices],
                                    weights=[examples[i].weights for i in indices], pad_tokens=pad_tokens)
        return shared
    return lambda indices: masked_ce_sum(model, collate(examples, indices, pad_id), device)


def sft_step(model, params, optimizer, scheduler, examples: Sequence[TokenizedExample], batch: Sequence[int],
             lengths: Sequence[int], rank: int, world: int, grad_accum: int, ce_fn, device,
             max_grad_norm: float, manual_allreduce: bool = False) -> dict:
    """One optimizer step over a global batch; this worker does its share.

    The loss is the (weighted) token mean over all answer tokens of the global batch: each micro-batch's summed
    cross-entropy is divided by that global count, or the sum of the tokens' weights when rationale tokens weigh
    less (`TokenizedExample.weight_total`; known to every worker from the plan), and multiplied by the
    world size (DDP averages gradients over workers), so DDP + accumulation equals one big batch. `ce_fn(indices)`
    is the summed answer cross-entropy of a micro-batch (`answer_loss_fn`). A loss that does not go through the
    DDP module's forward (the shared-prefix and cached paths call its layers) averages the gradients itself
    (`manual_allreduce`), after the last micro-batch.
    """
    import torch
    import torch.distributed as dist

    n_answer = sum(examples[i].n_answer for i in batch)
    norm = sum(examples[i].weight_total for i in batch)  # n_answer unless rationale tokens weigh less
    tokens = sum(examples[i].n_tokens for i in batch)
    micro = worker_micro_batches(batch, lengths, rank, world, grad_accum)
    ddp = hasattr(model, "no_sync")
    ce_total = torch.zeros((), dtype=torch.float64, device=device)
    for m, idx in enumerate(micro):
        sync = not ddp or m == len(micro) - 1
        with contextlib.nullcontext() if sync else model.no_sync():
            ce = ce_fn(idx)
            (ce * (world / norm)).backward()
        ce_total += ce.detach().double()
    if world > 1:
        dist.all_reduce(ce_total)
        if manual_allreduce:
            for p in params:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= world
    lr = scheduler.get_last_lr()[0]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else math.inf)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": ce_total.item() / norm, "lr": lr, "grad_norm": float(grad_norm), "tokens": tokens,
            "answer_tokens": n_answer}


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --- the Ray Train worker loop --------------------------------------------------------------------------------


def _train_loop(config: dict) -> dict:
    import torch
    import torch.distributed as dist

    import ray.train
    import ray.train.torch
    from learner.lora import build_policy

    cfg: SFTConfig = config["cfg"]
    examples: list[TokenizedExample] = config["examples"]
    run_dir = Path(config["run_dir"])
    steps = config["total_steps"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if not cfg.use_gpu:
        torch.set_num_threads(cfg.cpus_per_worker)
    device = ray.train.torch.get_device()

    # Where to start: Ray's latest committed checkpoint of this run, else the one the driver resolved.
    ckpt = ray.train.get_checkpoint()
    if ckpt is None and config["resume_path"]:
        ckpt = ray.train.Checkpoint(path=config["resume_path"])
    with contextlib.ExitStack() as stack:
        state, adapter = None, None
        if ckpt is not None:
            folder = Path(stack.enter_context(ckpt.as_directory()))
            verify_checkpoint(folder)
            state = load_trainer_state(folder)
            if state["plan_fingerprint"] != config["plan_fingerprint"]:
                raise CheckpointError(f"checkpoint {ckpt.path} was made with different training data, batch_size or "
                                      f"seed (data plan {state['plan_fingerprint']} != {config['plan_fingerprint']})")
            adapter = folder / "adapter"
        widen = False
        if adapter is None and cfg.init_adapter:
            adapter, widen = Path(cfg.init_adapter), cfg.widen_adapter
        policy = build_policy(cfg.model, cfg.lora, adapter=adapter, trainable=True, seed=cfg.seed, widen=widen)
    policy.train()
    # The shared-prefix and cached losses call the model's layers, not its forward, so DDP's hooks would not
    # run: those paths average gradients themselves (sft_step's manual_allreduce).
    segment_path = cfg.trunk.cache or config["prefix_len"] > 0
    model = ray.train.torch.prepare_model(policy, parallel_strategy=None if segment_path else "ddp")
    params, optimizer, scheduler = build_optimizer(cfg, policy, steps)
    pad_id = config["pad_id"]
    cache = None
    if cfg.trunk.cache:
        cache = _open_trunk_cache(cfg, policy, examples, run_dir, rank, world)
    ce_fn = answer_loss_fn(policy, examples, pad_id, device, prefix_len=config["prefix_len"], cache=cache)
    start, elapsed0 = 0, 0.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, elapsed0 = state["global_step"], state["elapsed"]
        if len(state["rng"]) == world:
            _set_rng_state(state["rng"][rank])
        else:  # resumed on a different number of workers: the data position is global, the RNG streams are not
            random.seed(cfg.seed * 7919 + start + rank)
            torch.manual_seed(cfg.seed * 7919 + start + rank)
    else:
        random.seed(cfg.seed + rank)
        torch.manual_seed(cfg.seed + rank)

    lengths = [ex.n_tokens for ex in examples]
    per_epoch = steps_per_epoch(len(examples), cfg.batch_size)
    # rank 0 writes the run's figures; the Ray progress bar because this runs inside a Ray Train worker
    observer = RunTracker(run_dir, "sft", GAUGES, start_step=start, total_steps=steps, bar="ray",
                          log_every=cfg.log_every) if rank == 0 else None
    upload_fn = _atomic_local_upload if config["local_storage"] else None

    def checkpoint(step: int, last_row: dict | None) -> None:
        rng = _rng_state()
        rngs = [None] * world
        if world > 1:
            dist.all_gather_object(rngs, rng)
        else:
            rngs = [rng]
        metrics = {"step": step, **({k: last_row[k] for k in ("loss", "lr", "epoch")} if last_row else {})}
        if rank != 0:
            ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=f"checkpoint_{step:06d}")
            return
        observer.sync()
        epoch, in_epoch = divmod(step, per_epoch)
        trainer_state = {"global_step": step, "epoch": epoch, "step_in_epoch": in_epoch, "total_steps": steps,
                         "plan_fingerprint": config["plan_fingerprint"], "elapsed": elapsed0 + time.time() - t0,
                         "rng": rngs, "world_size": world}
        with tempfile.TemporaryDirectory(prefix="memroute-ckpt-", ignore_cleanup_errors=True) as tmp:
            write_checkpoint(Path(tmp), policy, optimizer, scheduler, trainer_state, cfg)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                             checkpoint_dir_name=f"checkpoint_{step:06d}", checkpoint_upload_fn=upload_fn)

    t0 = time.time()
    step, row, plans = start, None, {}
    while step < steps:
        epoch, in_epoch = divmod(step, per_epoch)
        if epoch not in plans:
            plans = {epoch: epoch_plan(lengths, cfg.batch_size, cfg.seed, epoch)}
        batch = plans[epoch][in_epoch]
        t_step = time.time()
        out = sft_step(model, params, optimizer, scheduler, examples, batch, lengths, rank, world, cfg.grad_accum,
                       ce_fn, device, cfg.optim.max_grad_norm, manual_allreduce=segment_path)
        step += 1
        now = time.time()
        row = {"step": step, "epoch": epoch, "step_in_epoch": in_epoch, "loss": out["loss"], "lr": out["lr"],
               "grad_norm": out["grad_norm"], "tokens": out["tokens"], "answer_tokens": out["answer_tokens"],
               "tokens_per_s": out["tokens"] / max(now - t_step, 1e-9), "elapsed": elapsed0 + now - t0,
               "batch_ids_hash": batch_ids_hash([examples[i].id for i in batch]), "workers": world}
        if observer is not None:
            observer.step(row)
        if step % cfg.checkpoint_every == 0 or step == steps:
            checkpoint(step, row)
    result = {"global_step": step, "total_steps": steps, "start_step": start, "peak_rss_mb": peak_rss_mb(),
              "final_loss": row["loss"] if row else None}
    if observer is not None:
        observer.close()
    return result


def lowest_adapted_layer(policy) -> int:
    """The index of the lowest decoder layer that holds LoRA weights (the trunk is everything below it)."""
    import re

    found = [int(m.group(1)) for name, _ in policy.named_parameters() if "lora_" in name
             for m in [re.search(r"\.layers\.(\d+)\.", name)] if m]
    if not found:
        raise ConfigError("the adapter has no LoRA weights in decoder layers; the trunk cache needs lora.top_layers")
    return min(found)


def _open_trunk_cache(cfg: SFTConfig, policy, examples, run_dir: Path, rank: int, world: int):
    """Rank 0 builds what is missing (the others wait at a barrier), then every rank opens the folder."""
    import torch.distributed as dist
    from tqdm import tqdm

    from learner.trunk_cache import open_cache

    layer = lowest_adapted_layer(policy)
    cache_dir = Path(cfg.trunk.cache_dir).expanduser() if cfg.trunk.cache_dir else run_dir / "trunk_cache"
    ids = [ex.input_ids for ex in examples]
    prefix_len = shared_prefix_len(examples)
    if prefix_len < 1:
        raise ConfigError("trunk.cache needs examples that share a prompt prefix (the chat template's), and "
                          "at least two examples")
    if rank == 0:
        bar = tqdm(total=None, unit="tok", desc=f"trunk cache (layers 0-{layer - 1})", mininterval=5)

        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh() if done == total else bar.update(0)
        cache = open_cache(policy, ids, layer, cache_dir, prefix_len, cfg.trunk.dtype, progress)
        bar.close()
    if world > 1:
        dist.barrier()
    if rank != 0:
        cache = open_cache(policy, ids, layer, cache_dir, prefix_len, cfg.trunk.dtype)
    return cache


# --- the driver -----------------------------------------------------------------------------------------------


def ensure_ray(num_cpus: int | None = None) -> bool:
    """Connect to ``$RAY_ADDRESS`` if set, else start a local Ray with the machine's CPUs. True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count())
    return True


def _check_resources(cfg: SFTConfig) -> None:
    import ray

    have = ray.cluster_resources()
    need_cpu = cfg.num_workers * cfg.cpus_per_worker
    problems = []
    if have.get("CPU", 0) < need_cpu:
        problems.append(f"{need_cpu} CPUs (num_workers={cfg.num_workers} x cpus_per_worker={cfg.cpus_per_worker}) "
                        f"but the Ray cluster has {have.get('CPU', 0):g}")
    if cfg.use_gpu and have.get("GPU", 0) < cfg.num_workers:
        problems.append(f"{cfg.num_workers} GPUs but the Ray cluster has {have.get('GPU', 0):g}")
    if problems:
        msg = "SFT needs " + "; ".join(problems)
        if os.environ.get("MEMROUTE_SFT_WAIT_FOR_RESOURCES") == "1":  # an autoscaling cluster may grow
            log.warning("%s; waiting for the cluster to grow", msg)
        else:
            raise ConfigError(msg + " (lower num_workers / cpus_per_worker, or set "
                                    "MEMROUTE_SFT_WAIT_FOR_RESOURCES=1 on an autoscaling cluster)")


def train_sft(cfg: SFTConfig) -> dict:
    """Fine-tune a LoRA adapter with Ray Train; resumes `cfg.run_dir` from its latest checkpoint if it has one.

    Returns the final metrics and paths: adapter, run_dir, config, checkpoint, metrics, tb.
    """
    import pyarrow.fs
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from memroute.core.models import load_tokenizer, resolve_model

    validate_sft_config(cfg)
    run_dir = Path(cfg.run_dir).expanduser().resolve()
    if cfg.trunk.cache_dir:  # resolved here: Ray Train workers run in a folder of their own
        cfg.trunk.cache_dir = str(Path(cfg.trunk.cache_dir).expanduser().resolve())
    if cfg.init_adapter:
        cfg.init_adapter = str(Path(cfg.init_adapter).expanduser().resolve())
    model_path = resolve_model(cfg.model.name)  # the models module's clear error for a missing model, up front
    _check_top_layers(cfg, model_path)
    tokenizer = load_tokenizer(cfg.model.name)
    examples = load_sft_examples(cfg.train_data, tokenizer, cfg.max_seq_len, cfg.rationale_weight, cfg.label_order)
    steps = total_steps(cfg, len(examples))
    fingerprint = plan_fingerprint(examples, cfg.batch_size, cfg.seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prefix_len = shared_prefix_len(examples) if cfg.shared_prefix else 0

    resume = resolve_resume(cfg, run_dir)
    start = 0
    if resume is not None:
        manifest = verify_checkpoint(resume)
        if manifest.get("plan_fingerprint") != fingerprint:
            raise CheckpointError(f"checkpoint {resume} was made with different training data, batch_size or seed "
                                  f"than this config (data plan {manifest.get('plan_fingerprint')} != {fingerprint}); "
                                  f"use a new run_dir")
        start = manifest["global_step"]
        if start > steps:
            raise CheckpointError(f"checkpoint {resume} is at step {start}, beyond this config's last step {steps} "
                                  f"(max_steps / epochs)")
        log.info("resuming %s from %s (step %d of %d)", run_dir, resume, start, steps)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", dump_config(cfg))

    ensure_ray()
    _check_resources(cfg)
    local = isinstance(pyarrow.fs.FileSystem.from_uri(str(run_dir))[0], pyarrow.fs.LocalFileSystem)
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"cfg": cfg, "examples": examples, "run_dir": str(run_dir), "total_steps": steps,
                           "resume_path": str(resume) if resume else None, "plan_fingerprint": fingerprint,
                           "local_storage": local, "pad_id": pad_id, "prefix_len": prefix_len},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=ray.train.RunConfig(name=RAY_RUN_NAME, storage_path=str(run_dir),
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints)),
    )
    result = trainer.fit()
    final = Path(result.checkpoint.path) if result.checkpoint is not None else resume
    if final is None:
        raise CheckpointError(f"run {run_dir} finished without a checkpoint")
    verify_checkpoint(final)
    adapter = run_dir / "adapter"
    commit_copy(final / "adapter", adapter)
    out = dict(result.return_value or {})
    out.update({"adapter": str(adapter), "run_dir": str(run_dir), "config": str(run_dir / "config.yaml"),
                "checkpoint": str(final), "metrics": str(run_dir / "metrics.jsonl"), "tb": str(run_dir / "tb"),
                "examples": len(examples), "steps_per_epoch": steps_per_epoch(len(examples), cfg.batch_size)})
    return out


def main(argv: list[str] | None = None) -> int:
    from memroute.core.config import load_config

    parser = argparse.ArgumentParser(
        prog="memroute sft", description=__doc__.split("\n\n")[0],
        epilog="In a Ray job: ray job submit -- python -m learner.sft [the same arguments].")
    parser.add_argument("--config", help="YAML config, e.g. configs/cpu_sft.yaml (default: none, the built-in "
                        "defaults)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the merged config (defaults < --config < key=value) as YAML and exit; runs nothing")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, applied last, e.g. optim.lr=1e-4 max_steps=10 (default: none)")
    args = parser.parse_args(argv)
    cfg = load_config(SFTConfig, args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(dump_config(cfg))
        return 0
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    out = train_sft(cfg)
    loss = out.get("final_loss")
    print(f"adapter written to {out['adapter']} (step {out.get('global_step')}/{out.get('total_steps')}"
          + (f", final loss {loss:.4f})" if loss is not None else ")"))
    return 0


if __name__ == "__main__":
    sys.exit(run_command("memroute sft", main))
