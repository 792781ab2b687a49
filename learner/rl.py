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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from actors.rollout import RolloutConfig, Rollouts
from data.atomic import write_json_atomic, write_text_atomic
from data.embedded import TEST_PATH, TRAIN_PATH
from data.mix import step_batch
from learner.config import LearnerConfig
from memroute.core.checkpoint import RL_CHECKPOINT
from memroute.core.errors import InputError, MemrouteError, run_command
from memroute.core.exchange import summarize

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
    ckpt = run / RL_CHECKPOINT
    write_text_atomic(run / "config.yaml", dump_config(cfg))

    # one placement group for the whole run: all of its resources or none (learner bundles first, then rollouts)
    pg = None if cfg.placement_strategy == "none" else \
        reserve(rl_bundles(cfg.learner, cfg.rollout), cfg.placement_strategy, f"rl-{run.name}", cfg.placement_timeout_s)
    learner = rollouts = None
    try:
        learner = LearnerGroup(cfg.learner, pg, first_bundle=0)
        # the loop's step, not the learner's update count: a step whose groups were all dropped made no update
        start_step = learner.load_checkpoint(str(ckpt))["rl_step"] if ckpt.exists() else 0
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
    from data.prompt import example_token_ids
    from learner.losses import NonFiniteLossError
    from memroute.core.models import load_tokenizer, resolve_model
    from learner.tracking import RunTracker

    tokenizer = load_tokenizer(resolve_model(cfg.learner.model.name))
    probe = example_token_ids(tokenizer, train[0])  # scored by learner and engine after every push
    version, tensors = learner.get_weights()
    lora_config = learner.adapter_config()  # the policy's own peft config, as the engines load it
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
            more = step + 1 < cfg.steps
            if cfg.mode == "off_policy" and more:  # submit point 1: sample the next step while the learner updates
                pending = rollouts.submit(batch_of(step + 1))
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
            if cfg.mode == "sync" and more:  # submit point 2: sample the next step with the weights just pushed
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
