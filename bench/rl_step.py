"""Benchmark: the RL step on the default model, synchronous vs one-step-off-policy, and the weight push's share.

    python -m bench.rl_step --adapter runs/sft-shared/adapter [--steps 6] [--prompts 8] [--n 8]
                            [--out bench/results/rl_step.json] [key=value ... RLConfig overrides]

Runs `learner.rl.train_rl` three times from the same start (configs/cpu_rl.yaml, the given SFT adapter, the same
conversations): `mode=sync`, `mode=off_policy`, and `mode=sync` with `learner.threads=2` (the learner uses the
rollout worker's core too while that waits). Step 1 of each is left out of the means (engine and allocator
warm-up). Reports per run: seconds per step, rollout / update / push seconds, the push's share of the step, the
probe's sampler-vs-learner logprob gap after each push, and the speed-ups over plain sync.
Start from an SFT adapter: the base model rarely writes a parseable answer, so its groups are mostly all -1,
dropped, and there is little to update.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
from pathlib import Path

DEFAULT_OUT = "bench/results/rl_step.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.rl_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter", default=None, help="SFT adapter folder to start from")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("overrides", nargs="*", help="RLConfig key=value overrides")
    return p.parse_args(argv)


# (row, mode, extra overrides): a 1-thread learner beside the 1-CPU rollout worker, then the third row lets the
# learner use both cores while the worker waits (configs/cpu_rl.yaml's default)
VARIANTS = [("sync", "sync", ["learner.threads=1"]), ("off_policy", "off_policy", ["learner.threads=1"]),
            ("sync_threads2", "sync", ["learner.threads=2"])]


def run_mode(args, mode: str, run_dir: Path, extra=()) -> dict:
    from learner.rl import RLConfig, train_rl
    from learner.tracking import read_metrics
    from memroute.core.config import load_config

    over = [f"mode={mode}", f"steps={args.steps}", f"prompts_per_step={args.prompts}", f"rollout.n={args.n}",
            f"run_dir={run_dir}", f"checkpoint_every={args.steps}", "eval_limit=8", "eval_every=0",
            *([f"learner.adapter={args.adapter}"] if args.adapter else []), *extra, *args.overrides]
    train_rl(load_config(RLConfig, "configs/cpu_rl.yaml", over))
    rows = read_metrics(run_dir / "metrics.jsonl")[1:]  # step 1: warm-up
    updated = [r for r in rows if "push_seconds" in r]
    mean = lambda key, rs=rows: statistics.mean(r.get(key, 0.0) for r in rs) if rs else float("nan")  # noqa: E731
    return {
        "steps_timed": len(rows), "updates": len(updated),
        "step_seconds": mean("step_seconds"), "rollout_seconds": mean("rollout_seconds"),
        "update_seconds": mean("update_seconds", updated), "push_seconds": mean("push_seconds", updated),
        "push_share": statistics.mean(r["push_seconds"] / r["step_seconds"] for r in updated) if updated else None,
        "max_probe_gap": max((r["logprob_gap"] for r in updated), default=None),
        "mean_ratio": mean("mean_ratio", updated), "reward": mean("reward"), "staleness": mean("staleness"),
        "rows": rows,
    }


def main(argv=None) -> int:
    import ray

    from data.atomic import write_json_atomic

    args = parse_args(argv)
    ray.init(num_cpus=2, include_dashboard=False)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-rl-") as tmp:
        for name, mode, extra in VARIANTS:
            results[name] = run_mode(args, mode, Path(tmp) / name, extra)
    speedup = results["sync"]["step_seconds"] / results["off_policy"]["step_seconds"]
    threads_speedup = results["sync"]["step_seconds"] / results["sync_threads2"]["step_seconds"]
    share = max(r["push_share"] or 0.0 for r in results.values())
    report = {"bench": "rl_step", "args": vars(args), "machine": platform.platform(), "results": results,
              "off_policy_speedup": speedup, "sync_threads2_speedup": threads_speedup, "max_push_share": share,
              "targets": {"off_policy_speedup": ">= 1.5", "push_share": "<= 0.05"}}
    print(f"RL step, default model, {args.prompts} prompts x {args.n} samples, adapter {args.adapter}")
    print(f"{'mode':<13} {'s/step':>7} {'rollout':>8} {'update':>7} {'push':>6} {'push %':>7} {'probe gap':>10} "
          f"{'ratio':>6} {'reward':>7}")
    for mode, r in results.items():
        print(f"{mode:<13} {r['step_seconds']:>7.2f} {r['rollout_seconds']:>8.2f} {r['update_seconds']:>7.2f} "
              f"{r['push_seconds']:>6.2f} {100 * (r['push_share'] or 0):>6.1f}% {r['max_probe_gap'] or 0:>10.2e} "
              f"{r['mean_ratio']:>6.3f} {r['reward']:>7.3f}")
    print(f"off-policy speed-up {speedup:.2f}x (target >= 1.5x); sync with a 2-thread learner {threads_speedup:.2f}x; "
          f"push share {100 * share:.1f}% (target <= 5%)")
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
