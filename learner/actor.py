"""The learner: holds the LoRA policy and its optimizer, scores completions, applies policy-gradient updates and
exports adapter weights for the rollout workers.

`Learner` is a plain class (unit-testable without Ray); `LearnerActor` is the same class as a Ray actor.
`LearnerGroup` drives N of them data-parallel: each takes a share of the groups and the LoRA gradients are
all-reduced over a torch.distributed group (gloo on CPU, NCCL on GPU) before every optimizer step.
The all-reduce is written by hand rather than through DDP's wrapper because the shared-prefix forward runs the
model twice per group (prompt, then completions), which DDP's one-forward-one-backward hooks do not expect;
LoRA gradients are small, so one flat all-reduce per step is cheap.
"""

from __future__ import annotations

import time
from pathlib import Path

from learner.config import LearnerConfig
from memroute.core.checkpoint import (ADAPTER, CheckpointError, commit, staging_dir, verify_checkpoint,
                                      write_manifest)
from memroute.core.exchange import Group

OPTIMIZER_STATE = "optim.pt"  # optimizer and scheduler state, beside the adapter in a learner checkpoint


def _stack(rows, width: int):
    """Right-pad 1-D logprob tensors (one per completion) with zeros into a [N, width] tensor."""
    import torch

    return torch.stack([torch.nn.functional.pad(r.float(), (0, width - len(r))) for r in rows])


def _pad(rows, value=0.0):
    import torch

    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.float32)
    mask = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.as_tensor(r, dtype=torch.float32)
        mask[i, :len(r)] = 1.0
    return out, mask


class Learner:
    def __init__(self, cfg: LearnerConfig, rank: int = 0, world_size: int = 1):
        import torch
        from transformers import get_scheduler

        from learner.lora import build_policy

        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)  # Ray set OMP_NUM_THREADS to the actor's num_cpus
        self.device = torch.device("cuda" if cfg.use_gpu and torch.cuda.is_available() else "cpu")
        self.policy = build_policy(cfg.model, cfg.lora, adapter=cfg.adapter, seed=cfg.seed)
        if cfg.loss.kl_reference == "start":
            if not cfg.adapter:
                raise ValueError("loss.kl_reference=start needs learner.adapter (the adapter RL starts from)")
            from learner.lora import add_reference_adapter

            add_reference_adapter(self.policy, cfg.adapter)
        self.policy = self.policy.to(self.device)
        self.params = [p for p in self.policy.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the policy has no trainable (LoRA) parameters")
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                           weight_decay=cfg.optim.weight_decay)
        self.scheduler = get_scheduler(cfg.optim.schedule if cfg.optim.schedule != "constant" else "constant_with_warmup",
                                       self.optimizer, num_warmup_steps=cfg.optim.warmup_steps,
                                       num_training_steps=cfg.total_steps)
        self.version = 0  # bumped by every update; rollouts record the version they sampled with
        self.step = 0

    # --- distributed -------------------------------------------------------------------------------------------
    def address(self) -> tuple[str, int]:
        """An address and a free port on this node, for rank 0 to host the process group."""
        import socket

        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def init_process_group(self, host: str, port: int) -> None:
        import torch.distributed as dist

        backend = "nccl" if self.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://{host}:{port}", rank=self.rank,
                                world_size=self.world_size)

    def _all_reduce_grads(self) -> None:
        import torch
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)  # a sum: each rank's loss is already scaled by 1 / global tokens
        offset = 0
        for p, g in zip(self.params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
            offset += g.numel()

    # --- scoring -----------------------------------------------------------------------------------------------
    def logprobs(self, prompt_ids: list[int], completion_ids: list[list[int]], reference: bool = False) -> list[list[float]]:
        """Per-token logprobs of each completion under the current policy (or the reference, adapter off)."""
        import torch

        from learner.logprobs import group_logprobs
        from learner.lora import reference_mode

        self.policy.eval()  # no dropout: these logprobs must be the sampled policy's (see update)
        with torch.no_grad():
            if reference:
                with reference_mode(self.policy):
                    rows = group_logprobs(self.policy, prompt_ids, completion_ids)
            else:
                rows = group_logprobs(self.policy, prompt_ids, completion_ids)
        return [r.float().cpu().tolist() for r in rows]

    # --- the update --------------------------------------------------------------------------------------------
    def update(self, groups: list[Group], global_tokens: int | None = None) -> dict:
        """One optimizer step on this rank's groups. `global_tokens` is the completion-token count over all ranks
        (the loss is a token mean over the whole batch, so every rank must divide by the same number)."""
        import torch

        from learner.logprobs import group_logprobs
        from learner.losses import policy_loss
        from learner.lora import reference_mode

        if not groups and self.world_size == 1:
            raise ValueError("update() got no groups: refusing to step on an empty batch")
        for g in groups:
            g.validate()
        start = time.perf_counter()
        local_tokens = sum(g.n_tokens() for g in groups)
        total = global_tokens or local_tokens  # a rank with no groups still joins the all-reduce (zero grads)
        lc = self.cfg.loss
        # eval mode, gradients still on: the importance ratio compares this policy with the one the rollout engine
        # sampled from, which has no dropout; an adapter trained with LoRA dropout (SFT) would otherwise be scored
        # with random units dropped, its ratios and the weight-push probe off by that noise
        self.policy.eval()
        self.optimizer.zero_grad(set_to_none=True)
        sums = {"loss": 0.0, "mean_ratio": 0.0, "clip_fraction": 0.0, "kl": 0.0, "entropy": 0.0}
        max_ratio = 0.0
        for g in groups:
            width = max(len(c) for c in g.completion_ids)
            ref = None
            if lc.kl_coef > 0 or lc.track_kl:
                with torch.no_grad(), reference_mode(self.policy):
                    ref = _stack(group_logprobs(self.policy, g.prompt_ids, g.completion_ids), width)
            rows, entropies = group_logprobs(self.policy, g.prompt_ids, g.completion_ids, return_entropy=True)
            logp = _stack(rows, width)
            sampler, mask = _pad(g.sampler_logprobs)
            adv = torch.as_tensor(g.advantages, dtype=torch.float32)
            loss, stats = policy_loss(logp, sampler.to(logp.device), adv.to(logp.device), mask.to(logp.device),
                                      kind=lc.kind, clip_eps=lc.clip_eps, tis_cap=lc.tis_cap,
                                      ref_logprobs=None if ref is None else ref.to(logp.device),
                                      kl_coef=lc.kl_coef, kl_estimator=lc.kl_estimator, aggregate=lc.aggregate)
            weight = g.n_tokens() / total  # token-mean over the global batch
            (loss * weight).backward()
            for key in ("loss", "mean_ratio", "clip_fraction", "kl"):
                sums[key] += stats.get(key, 0.0) * g.n_tokens()
            sums["entropy"] += float(sum(e.sum() for e in entropies))
            max_ratio = max(max_ratio, stats["max_ratio"])
        if self.world_size > 1:
            self._all_reduce_grads()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.max_grad_norm))
        if not all(torch.isfinite(p.grad).all() for p in self.params if p.grad is not None):
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError("non-finite gradient: the update was skipped and the weights are unchanged")
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.version += 1
        elapsed = time.perf_counter() - start
        out = {k: v / max(local_tokens, 1) for k, v in sums.items()}
        out.update(max_ratio=max_ratio, grad_norm=grad_norm, lr=self.scheduler.get_last_lr()[0], tokens=local_tokens,
                   tokens_per_s=local_tokens / elapsed, update_seconds=elapsed, version=self.version, groups=len(groups),
                   stale_groups=sum(g.policy_version != self.version - 1 for g in groups))
        return out

    # --- weights and checkpoints -------------------------------------------------------------------------------
    def get_weights(self) -> tuple[int, dict]:
        """(version, LoRA tensors on CPU): what the rollout workers load."""
        from learner.lora import lora_state

        return self.version, lora_state(self.policy)

    def adapter_config(self) -> dict:
        """The policy's peft adapter config (`adapter_config.json`), which the engines load with the tensors."""
        from memroute.core.adapter import peft_adapter_config

        return peft_adapter_config(self.policy.peft_config["default"])

    def save_checkpoint(self, path: str, extra: dict | None = None) -> str:
        """Adapter + optimizer + scheduler, and the counters (+ the caller's `extra` fields, e.g. the RL loop's own
        step, which differs from the update count when a step had nothing to learn from) in the manifest's
        `state`: memroute.core.checkpoint's format, written to a temp dir and renamed into place."""
        import torch

        target = Path(path)
        tmp = staging_dir(target)
        self.policy.save_pretrained(tmp / ADAPTER, selected_adapters=["default"])
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                   tmp / OPTIMIZER_STATE)
        write_manifest(tmp, {"format": 1, "state": {**(extra or {}), "version": self.version, "step": self.step}})
        commit(tmp, target)
        return str(target)

    def export_adapter(self, path: str) -> str:
        """The current adapter as a peft folder (what `memroute eval --adapter` and serving load), atomically."""
        target = Path(path)
        tmp = staging_dir(target)
        self.policy.save_pretrained(tmp, selected_adapters=["default"])
        commit(tmp, target)
        return str(target)

    def load_checkpoint(self, path: str) -> dict:
        """Restore a `save_checkpoint` folder (verified against its manifest first); returns its `state`."""
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        root = Path(path)
        weights = f"{ADAPTER}/adapter_model.safetensors"
        state = verify_checkpoint(root, required=(weights, OPTIMIZER_STATE))["state"]
        try:
            set_peft_model_state_dict(self.policy, load_file(str(root / weights)))
            opt = torch.load(root / OPTIMIZER_STATE, weights_only=True)
            self.optimizer.load_state_dict(opt["optimizer"])
            self.scheduler.load_state_dict(opt["scheduler"])
        except Exception as e:  # a foreign file with a matching hash: name it instead of a bare unpickling error
            raise CheckpointError(f"learner checkpoint {root} does not fit this learner: "
                                  f"{type(e).__name__}: {e}") from None
        self.version, self.step = state["version"], state["step"]
        return state


class LearnerGroup:
    """N data-parallel `Learner` actors behind one interface (N = cfg.num_learners)."""

    def __init__(self, cfg: LearnerConfig, placement_group=None, first_bundle: int = 0):
        """With a placement group, learner `rank` runs in bundle `first_bundle + rank` (memroute/core/placement.py)."""
        import ray

        from memroute.core.placement import in_bundle

        n = cfg.num_learners
        if n < 1:
            raise ValueError(f"num_learners must be >= 1, got {n}")
        actor_cls = ray.remote(Learner)  # .options() once per actor: its result has no .options() of its own
        resources = dict(num_cpus=cfg.cpus_per_learner, num_gpus=1 if cfg.use_gpu else 0)
        self.actors = [actor_cls.options(**resources, **in_bundle(placement_group, first_bundle + rank))
                       .remote(cfg, rank, n) for rank in range(n)]
        if n > 1:
            host, port = ray.get(self.actors[0].address.remote())
            ray.get([a.init_process_group.remote(host, port) for a in self.actors])

    def _shares(self, groups: list[Group]) -> list[list[Group]]:
        """Balance completion tokens over the learners (largest groups first, each to the lightest rank)."""
        shares: list[list[Group]] = [[] for _ in self.actors]
        load = [0] * len(self.actors)
        for g in sorted(groups, key=Group.n_tokens, reverse=True):
            i = load.index(min(load))
            shares[i].append(g)
            load[i] += g.n_tokens()
        return shares

    def update(self, groups: list[Group]) -> dict:
        import ray

        if not groups:
            raise ValueError("update() got no groups: refusing to step on an empty batch")
        total = sum(g.n_tokens() for g in groups)
        results = ray.get([a.update.remote(share, total) for a, share in zip(self.actors, self._shares(groups))])
        merged = dict(results[0])
        tokens = sum(r["tokens"] for r in results)
        for key in ("loss", "mean_ratio", "clip_fraction", "kl", "entropy"):
            merged[key] = sum(r[key] * r["tokens"] for r in results) / tokens
        merged.update(tokens=tokens, groups=len(groups), max_ratio=max(r["max_ratio"] for r in results),
                      tokens_per_s=tokens / max(r["update_seconds"] for r in results),
                      stale_groups=sum(r["stale_groups"] for r in results))
        return merged

    def logprobs(self, prompt_ids, completion_ids, reference: bool = False):
        import ray

        return ray.get(self.actors[0].logprobs.remote(prompt_ids, completion_ids, reference))

    def get_weights(self):
        import ray

        return ray.get(self.actors[0].get_weights.remote())

    def adapter_config(self) -> dict:
        import ray

        return ray.get(self.actors[0].adapter_config.remote())

    def save_checkpoint(self, path: str, extra: dict | None = None) -> str:
        import ray

        return ray.get(self.actors[0].save_checkpoint.remote(path, extra))  # ranks hold identical weights

    def load_checkpoint(self, path: str) -> dict:
        import ray

        return ray.get([a.load_checkpoint.remote(path) for a in self.actors])[0]

    def export_adapter(self, path: str) -> str:
        import ray

        return ray.get(self.actors[0].export_adapter.remote(path))

    def shutdown(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
