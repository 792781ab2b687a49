"""`memroute rl`: the RL loop. Sample groups on vLLM rollout workers, score them with the routing reward,
update the LoRA learner with an importance-sampled policy gradient, push the new weights back, repeat.

    memroute rl --config configs/cpu_rl.yaml [key=value ...]   # in a Ray job: python -m learner.rl ...

One step, in order:
1. take the next `prompts_per_step` training conversations (a seeded order; the position is checkpointed);
2. the rollout workers sample `rollout.n` answers each (vLLM, with the sampler's per-token logprobs), reward
   them and compute group-normalised advantages; a worker that dies is restarted by Ray, gets the current
   weights again, and its share is retried, so no sample is lost or counted twice;
3. groups whose rewards are all equal (no learning signal) and groups older than `max_staleness` are dropped;
4. the learner takes one optimizer step (the importance ratio corrects for sampler/learner mismatch and, in
   `off_policy` mode, for the one-step-stale samples);
5. the new LoRA tensors go to every worker through the object store, and the push is verified: worker 0 scores
   a fixed probe sequence under the new version and its logprobs must match the learner's.
In `off_policy` mode the next step's rollouts are submitted before the update, so sampling and learning overlap.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from actors.rollout import RolloutConfig
from data.atomic import write_json_atomic, write_text_atomic
from data.embedded import TEST_PATH, TRAIN_PATH
from learner.config import LearnerConfig
from memroute.core.errors import InputError, MemrouteError, run_command

log = logging.getLogger(__name__)

TRACKED = ["reward", "f1", "parse_failure_rate", "loss", "kl", "mean_ratio", "clip_fraction", "grad_norm",
           "entropy", "temporal", "parity", "efficiency", "logprob_gap", "staleness", "rollout_seconds",
           "update_seconds", "push_seconds", "tokens_per_s", "kept_groups", "eval_mean_f1"]


@dataclass
class RLConfig:
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    train_data: str = str(TRAIN_PATH)
    eval_data: str = str(TEST_PATH)
    run_dir: str = "runs/rl"
    steps: int = 20
    prompts_per_step: int = 8
    mode: str = "sync"  # sync | off_policy
    max_staleness: int = 1  # off_policy: drop groups sampled more than this many versions ago
    checkpoint_every: int = 5
    eval_every: int = 0  # 0: evaluate only at the end
    eval_limit: int | None = None
    probe_tolerance: float = 0.05  # max |engine - learner| logprob on the probe sequence after a push
    max_retries: int = 3  # per rollout share, after a worker death
    placement_strategy: str = "PACK"  # PACK | SPREAD | STRICT_PACK | STRICT_SPREAD | none (memroute/core/placement.py)
    placement_timeout_s: float = 600  # wait this long for the cluster (or its autoscaler) to fit the run
    seed: int = 0

    def __post_init__(self):
        from memroute.core.config import check_choice, check_min
        from memroute.core.placement import STRATEGIES

        check_choice("mode", self.mode, ("sync", "off_policy"))
        check_choice("placement_strategy", self.placement_strategy, (*STRATEGIES, "none"))
        for name in ("steps", "prompts_per_step", "checkpoint_every"):
            check_min(name, getattr(self, name), 1)
        check_min("max_staleness", self.max_staleness, 0)  # 0: off_policy drops every group sampled a version ago
        check_min("eval_every", self.eval_every, 0)
        check_min("eval_limit", self.eval_limit, 1, optional=True)
        check_min("max_retries", self.max_retries, 0)
        check_min("probe_tolerance", self.probe_tolerance, 0, inclusive=False)
        if self.learner.model.name != self.rollout.engine.model:  # the learner trains what the engines sample
            raise ValueError(f"learner.model.name ({self.learner.model.name}) and rollout.engine.model "
                             f"({self.rollout.engine.model}) must name the same model")


class WeightSyncError(MemrouteError, RuntimeError):
    """The rollout engine does not sample with the weights the learner pushed."""


class UpdateRefused(MemrouteError, RuntimeError):
    """The learner refused a step (NaN/inf loss or gradient); its weights are unchanged and nothing was pushed."""


def step_batch(n_examples: int, step: int, per_step: int, seed: int) -> list[int]:
    """Indices of the conversations for `step`: consecutive slices of seeded per-epoch permutations, so a resumed
    run continues exactly where the checkpoint left off."""
    out, pos = [], step * per_step
    while len(out) < per_step:
        epoch, offset = divmod(pos, n_examples)
        order = list(range(n_examples))
        random.Random(seed * 7919 + epoch).shuffle(order)
        take = min(per_step - len(out), n_examples - offset)
        out.extend(order[offset:offset + take])
        pos += take
    return out


class Rollouts:
    """The rollout workers, with weight pushes and restart handling.

    Any call to a worker whose process died (a rollout, a push, a probe) waits for Ray to restart it, gives it
    the current weights again (a restarted worker is back on the base weights at version 0) and repeats the call,
    up to `max_retries` times. Results come only from calls that returned, so nothing is lost or duplicated."""

    def __init__(self, cfg: RolloutConfig, max_retries: int = 3, name: str | None = None, placement_group=None,
                 first_bundle: int = 0):
        import ray

        from actors.rollout import make_rollout_workers

        self.cfg, self.max_retries = cfg, max_retries
        self.workers = make_rollout_workers(cfg, name, placement_group, first_bundle)
        ray.get([w.ready.remote() for w in self.workers])
        self.weights: tuple | None = None  # (version, ObjectRef of the tensors, lora_config)
        self.version = 0
        self.restarts = 0  # worker restarts seen by this driver

    def _get(self, i: int, future, method: str, *args):
        """ray.get(future) of worker i's `method(*args)`; after a worker death, revive it and call again."""
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        for attempt in range(self.max_retries + 1):
            try:
                return ray.get(future)
            except (RayActorError, ActorDiedError, ActorUnavailableError) as e:
                if attempt == self.max_retries:
                    raise RuntimeError(f"rollout worker {i} failed {attempt + 1} times in {method}; last error: {e}") from e
                log.warning("rollout worker %d died during %s (%s); waiting for its restart and retrying", i, method, e)
                self._revive(i)
                future = getattr(self.workers[i], method).remote(*args)

    def _revive(self, i: int, timeout_s: float = 600) -> None:
        """Wait until Ray has restarted worker i, then give it the current weights."""
        import ray
        from ray.exceptions import RayActorError

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ray.get(self.workers[i].ready.remote(), timeout=60)
                break
            except (RayActorError, ray.exceptions.GetTimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rollout worker {i} did not come back within {timeout_s:.0f}s") from None
                time.sleep(2)
        self.restarts += 1
        if self.weights is not None:
            ray.get(self.workers[i].update_weights.remote(*self.weights))

    def push(self, version: int, tensors: dict, lora_config: dict) -> float:
        """Send the weights to every worker: one object-store copy that every worker reads (Ray resolves the
        ObjectRef argument on the worker's node); returns seconds."""
        import ray

        start = time.perf_counter()
        self.version = version
        self.weights = (version, ray.put(tensors), lora_config)
        futures = [w.update_weights.remote(*self.weights) for w in self.workers]
        for i, future in enumerate(futures):
            self._get(i, future, "update_weights", *self.weights)
        return time.perf_counter() - start

    def _shares(self, examples: list[dict]) -> list[tuple[int, list[dict]]]:
        """(worker index, its examples): round-robin over the workers, empty shares left out."""
        shares = [(i, examples[i::len(self.workers)]) for i in range(len(self.workers))]
        return [(i, share) for i, share in shares if share]

    def submit(self, examples: list[dict]) -> list:
        """Split examples over the workers; returns [(worker index, examples, future)]."""
        return [(i, share, self.workers[i].rollout.remote(share, self.cfg.n)) for i, share in self._shares(examples)]

    def collect(self, submitted: list) -> list:
        """Wait for the shares (retrying a dead worker's share) and check each came back whole."""
        groups = []
        for i, share, future in submitted:
            result = self._get(i, future, "rollout", share, self.cfg.n)
            got = [g.meta["id"] for g in result or []]
            if got != [ex["id"] for ex in share]:
                raise RuntimeError(f"rollout worker {i} returned {len(got)} groups for {len(share)} conversations"
                                   + (" (no samples)" if not got else f": ids {got[:5]}"))
            empty = [g.meta["id"] for g in result if not g.completion_ids]
            if empty:
                raise RuntimeError(f"rollout worker {i} returned no samples for conversations {empty[:5]}")
            groups.extend(result)
        return groups

    def probe(self, prompt_ids: list[int], completion_ids: list[int]) -> list[float]:
        return self._get(0, self.workers[0].probe.remote(prompt_ids, completion_ids), "probe", prompt_ids,
                         completion_ids)

    def greedy_texts(self, examples: list[dict]) -> list[str]:
        futures = [(i, share, self.workers[i].greedy.remote(share)) for i, share in self._shares(examples)]
        texts: dict[str, str] = {}
        for i, share, future in futures:
            texts.update({ex["id"]: t for ex, t in zip(share, self._get(i, future, "greedy", share))})
        return [texts[ex["id"]] for ex in examples]

    def shutdown(self) -> None:
        import ray

        for w in self.workers:
            ray.kill(w, no_restart=True)


def probe_sequence(tokenizer, example) -> tuple[list[int], list[int]]:
    """A fixed prompt and its gold answer, scored by learner and engine after every push."""
    from data.prompt import completion_text, render_prompt

    prompt = tokenizer(render_prompt(tokenizer, example.conversation), add_special_tokens=False).input_ids
    completion = tokenizer(completion_text(tokenizer, example.categories), add_special_tokens=False).input_ids
    return prompt, completion


def verify_push(rollouts: Rollouts, learner, probe, tolerance: float, version: int) -> float:
    """Max |engine - learner| logprob on the probe; raises WeightSyncError past `tolerance`."""
    engine_lp = rollouts.probe(*probe)
    learner_lp = learner.logprobs(probe[0], [probe[1]])[0]
    gap = max(abs(a - b) for a, b in zip(engine_lp, learner_lp))
    if gap > tolerance:
        raise WeightSyncError(f"after pushing version {version}, the rollout engine's logprobs on the probe differ "
                              f"from the learner's by {gap:.4f} (tolerance {tolerance}): the engine is not sampling "
                              "with the pushed weights")
    return gap


def evaluate(rollouts: Rollouts, examples, limit: int | None) -> dict:
    from data.metrics import Prediction, align, compute_metrics
    from data.parser import parse_answer

    examples = examples[:limit] if limit else examples
    texts = rollouts.greedy_texts([ex.to_dict() for ex in examples])
    preds = [Prediction(ex.id, parse_answer(t).labels, t, f"rl-v{rollouts.version}") for ex, t in zip(examples, texts)]
    return compute_metrics(align(preds, examples), n_boot=200)


def summarize(groups: list) -> dict:
    comps = [c for g in groups for c in g.meta["reward_components"]]
    n = max(len(comps), 1)
    return {
        "reward": sum(c["total"] for c in comps) / n,
        "f1": sum(c["f1"] for c in comps) / n,
        "temporal": sum(c["temporal"] for c in comps) / n,
        "parity": sum(c["parity"] for c in comps) / n,
        "efficiency": sum(c["efficiency"] for c in comps) / n,
        "parse_failure_rate": sum(not c["parsed"] for c in comps) / n,
        "samples": len(comps),
    }


def train_rl(cfg: RLConfig) -> dict:
    import ray

    from data.schema import read_examples
    from learner.actor import LearnerGroup
    from memroute.core.config import dump_config
    from memroute.core.placement import release, reserve, rl_bundles

    train, held_out = read_examples(cfg.train_data), read_examples(cfg.eval_data)
    if not train:
        raise InputError(f"no training conversations in {cfg.train_data}")
    if not ray.is_initialized():
        ray.init()
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ckpt = run / "checkpoint"
    write_text_atomic(run / "config.yaml", dump_config(cfg))

    # one placement group for the whole run: all of its resources or none (learner bundles first, then rollouts)
    pg = None if cfg.placement_strategy == "none" else \
        reserve(rl_bundles(cfg.learner, cfg.rollout), cfg.placement_strategy, f"rl-{run.name}", cfg.placement_timeout_s)
    learner = rollouts = None
    try:
        learner = LearnerGroup(cfg.learner, pg, first_bundle=0)
        # the loop's step, not the learner's update count: a step whose groups were all dropped made no update
        start_step = learner.load_checkpoint(str(ckpt))["rl_step"] if (ckpt / "state.json").exists() else 0
        rollouts = Rollouts(cfg.rollout, cfg.max_retries, name=f"rl-{run.name}-rollout", placement_group=pg,
                            first_bundle=cfg.learner.num_learners)
        result = _loop(cfg, run, ckpt, start_step, train, held_out, learner, rollouts)
    finally:  # the actors die with this driver anyway; freeing them now lets the next run in this process start
        if learner is not None:
            learner.shutdown()
        if rollouts is not None:
            rollouts.shutdown()
        release(pg)
    return result


def _loop(cfg: RLConfig, run: Path, ckpt: Path, start_step: int, train, held_out, learner, rollouts) -> dict:
    from learner.losses import NonFiniteLossError
    from memroute.core.models import load_tokenizer, resolve_model
    from learner.tracking import RunTracker

    tokenizer = load_tokenizer(resolve_model(cfg.learner.model.name))
    probe = probe_sequence(tokenizer, train[0])
    version, tensors = learner.get_weights()
    lora_config = {"r": cfg.learner.lora.rank, "lora_alpha": cfg.learner.lora.alpha,
                   "target_modules": list(cfg.learner.lora.target_modules)}
    rollouts.push(version, tensors, lora_config)
    verify_push(rollouts, learner, probe, cfg.probe_tolerance, version)

    tracker = RunTracker(run, "rl", TRACKED, start_step=start_step, total_steps=cfg.steps)
    batch_of = lambda s: [train[i].to_dict() for i in step_batch(len(train), s, cfg.prompts_per_step, cfg.seed)]  # noqa: E731
    pending = rollouts.submit(batch_of(start_step)) if start_step < cfg.steps else None
    row: dict = {}
    last_saved = start_step
    try:
        for step in range(start_step, cfg.steps):
            t0 = time.perf_counter()
            groups = rollouts.collect(pending)
            rollout_s = time.perf_counter() - t0
            # off_policy: the next step samples with the current weights while the learner updates
            pending = rollouts.submit(batch_of(step + 1)) if cfg.mode == "off_policy" and step + 1 < cfg.steps else None
            stats = summarize(groups)
            fresh = [g for g in groups if rollouts.version - g.policy_version <= cfg.max_staleness]
            kept = [g for g in fresh if len(set(g.meta["rewards"])) > 1]
            row = {"step": step + 1, **stats, "groups": len(groups), "kept_groups": len(kept),
                   "dropped_equal": len(fresh) - len(kept), "dropped_stale": len(groups) - len(fresh),
                   "staleness": max(rollouts.version - g.policy_version for g in groups),
                   "sample_ids": [g.meta["id"] for g in groups], "rollout_seconds": rollout_s}
            if kept:
                try:
                    update = learner.update(kept)
                except (NonFiniteLossError, FloatingPointError) as e:
                    raise UpdateRefused(f"step {step + 1}: the learner refused the update ({e}); its weights are "
                                        f"unchanged and nothing was pushed; re-running resumes from step "
                                        f"{last_saved}") from e
                version, tensors = learner.get_weights()
                row.update({k: update[k] for k in ("loss", "kl", "mean_ratio", "max_ratio", "clip_fraction",
                                                   "grad_norm", "entropy", "lr", "tokens_per_s", "update_seconds")})
                row["push_seconds"] = rollouts.push(version, tensors, lora_config)
                row["logprob_gap"] = verify_push(rollouts, learner, probe, cfg.probe_tolerance, version)
            row["version"] = rollouts.version
            row["worker_restarts"] = rollouts.restarts
            if pending is None and step + 1 < cfg.steps:
                pending = rollouts.submit(batch_of(step + 1))
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
                row["eval_mean_f1"] = evaluate(rollouts, held_out, cfg.eval_limit)["mean_f1"]
            row["step_seconds"] = time.perf_counter() - t0
            tracker.step(row)
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                tracker.sync()
                learner.save_checkpoint(str(ckpt), extra={"rl_step": step + 1})
                last_saved = step + 1
        final = evaluate(rollouts, held_out, cfg.eval_limit)
        write_json_atomic(run / "eval_metrics.json", final)
    finally:
        tracker.close()
    learner.export_adapter(str(run / "adapter"))
    plots: list[str] = []
    try:  # PNG curves next to the metrics; a plotting problem never fails a finished run
        from memroute.plot import plot_run

        plots = [str(p) for p in plot_run(run)]
    except Exception as e:  # noqa: BLE001
        log.warning("no plots for %s: %s", run, e)
    return {"run_dir": str(run), "adapter": str(run / "adapter"), "last": row, "eval": final, "plots": plots}


def main(argv=None) -> int:
    from memroute.core.config import dump_config, load_config

    p = argparse.ArgumentParser(prog="memroute rl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML config, e.g. configs/cpu_rl.yaml (default: none, the "
                   "built-in defaults)")
    p.add_argument("--print-config", action="store_true",
                   help="print the merged config (defaults < --config < key=value) as YAML and exit; runs nothing")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="key.sub=value overrides, applied last, e.g. steps=50 learner.loss.kind=ppo (default: none)")
    args = p.parse_args(argv)
    cfg = load_config(RLConfig, args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(dump_config(cfg))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = train_rl(cfg)
    ev = result["eval"]
    print(f"eval: mean F1 {ev['mean_f1']:.3f}, exact {ev['exact_match']:.3f}, parse failures "
          f"{ev['parse_failure_rate']:.3f}; adapter at {result['adapter']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("memroute rl", main))
