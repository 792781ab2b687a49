"""SFT throughput: the Ray Train path (learner.sft.train_sft) vs a bare torch loop, side by side in one run.

    python -m bench.sft_ray_overhead [--model smollm2-135m] [--steps N] [--out bench/results/sft_ray_overhead.json]

Both paths use configs/cpu_sft.yaml (model overridable), the same tokenized examples, the same batches (the plan of
epoch 0 from step 0), the same AdamW + schedule and the same step function (`learner.sft.sft_step`), one worker with
`cpus_per_worker` torch threads. The bare loop runs in a fresh subprocess (its own peak RSS is the learner's alone);
the Ray path's figures come from its metrics.jsonl and its worker's peak RSS. The first `--warmup` steps of each are
not timed. The two paths run in alternating rounds (`--rounds`) and each keeps its best round, so a busy neighbour on
a shared machine does not decide the ratio. tokens/s counts prompt + answer tokens (no padding) over the timed steps' wall time, per-step overheads
(logging, metrics, progress bar) included; the final checkpoint comes after the last timed step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "cpu_sft.yaml"


def _config(args, run_dir: Path):
    from learner.config import SFTConfig
    from memroute.core.config import load_config

    return load_config(SFTConfig, args.config, [
        f"model.name={args.model}", f"max_steps={args.warmup + args.steps}", "checkpoint_every=1000000",
        f"run_dir={run_dir}", *args.override])


def bare_loop(args) -> dict:
    """The same steps without Ray: build, then time `sft_step` over the first warmup + steps batches."""
    import torch

    from learner.lora import build_policy
    from memroute.core.models import load_tokenizer
    from learner.sft import answer_loss_fn, build_optimizer, peak_rss_mb, sft_step, shared_prefix_len, total_steps
    from learner.sft_data import epoch_plan, load_sft_examples, steps_per_epoch

    cfg = _config(args, Path(tempfile.gettempdir()) / "unused")
    torch.set_num_threads(cfg.cpus_per_worker)
    tokenizer = load_tokenizer(cfg.model.name)
    examples = load_sft_examples(cfg.train_data, tokenizer, cfg.max_seq_len)
    steps = total_steps(cfg, len(examples))
    policy = build_policy(cfg.model, cfg.lora, seed=cfg.seed)
    policy.train()
    params, optimizer, scheduler = build_optimizer(cfg, policy, steps)
    torch.manual_seed(cfg.seed)
    lengths = [ex.n_tokens for ex in examples]
    per_epoch = steps_per_epoch(len(examples), cfg.batch_size)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # the loss path train_sft's worker uses for this config (shared prefix or not; no trunk cache here)
    ce_fn = answer_loss_fn(policy, examples, pad, "cpu", prefix_len=shared_prefix_len(examples) if cfg.shared_prefix else 0)
    rows, t_prev = [], time.time()
    for step in range(steps):
        epoch, in_epoch = divmod(step, per_epoch)
        batch = epoch_plan(lengths, cfg.batch_size, cfg.seed, epoch)[in_epoch]
        out = sft_step(policy, params, optimizer, scheduler, examples, batch, lengths, 0, 1, cfg.grad_accum, ce_fn,
                       "cpu", cfg.optim.max_grad_norm)
        now = time.time()
        rows.append({"step": step + 1, "loss": out["loss"], "tokens": out["tokens"], "seconds": now - t_prev})
        t_prev = now
    return {"rows": rows, "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads()}


def _summary(tokens: list[int], seconds: float) -> dict:
    return {"steps": len(tokens), "tokens": sum(tokens), "seconds": seconds,
            "tokens_per_s": sum(tokens) / seconds if seconds > 0 else float("nan"),
            "s_per_step": seconds / len(tokens) if tokens else float("nan")}


def run_ray(args) -> dict:
    from learner.sft import ensure_ray, read_metrics, train_sft

    ensure_ray()
    with tempfile.TemporaryDirectory(prefix="sft-bench-") as tmp:
        cfg = _config(args, Path(tmp) / "run")
        t0 = time.time()
        out = train_sft(cfg)
        wall = time.time() - t0
        rows = read_metrics(Path(tmp) / "run" / "metrics.jsonl")
    timed = rows[args.warmup:]
    seconds = timed[-1]["elapsed"] - rows[args.warmup - 1]["elapsed"] if args.warmup else timed[-1]["elapsed"]
    return {**_summary([r["tokens"] for r in timed], seconds), "losses": [r["loss"] for r in rows],
            "peak_rss_mb": out.get("peak_rss_mb"), "wall_s_incl_startup": wall,
            "batch_ids_hash": [r["batch_ids_hash"] for r in rows]}


def run_bare(args) -> dict:
    cmd = [sys.executable, "-m", "bench.sft_ray_overhead", "--bare-child", "--model", args.model, "--steps",
           str(args.steps), "--warmup", str(args.warmup), "--config", str(args.config)]
    for o in args.override:
        cmd += ["--override", o]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bare loop failed:\n{proc.stderr[-4000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    timed = res["rows"][args.warmup:]
    return {**_summary([r["tokens"] for r in timed], sum(r["seconds"] for r in timed)),
            "losses": [r["loss"] for r in res["rows"]], "peak_rss_mb": res["peak_rss_mb"],
            "wall_s_incl_startup": time.time() - t0, "threads": res["threads"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sft_ray_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps per path")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=2, help="alternating bare/Ray rounds; the best of each is kept")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--override", action="append", default=[], help="extra key=value config overrides")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "sft_ray_overhead.json"))
    parser.add_argument("--bare-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be >= 1 (the first step includes one-time costs)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.bare_child:
        print(json.dumps(bare_loop(args)))
        return 0

    from data.atomic import write_json_atomic
    from learner.sft import peak_rss_mb

    rounds = {"bare": [], "ray_train": []}
    for i in range(args.rounds):  # alternate (bare first, then Ray first, ...); keep each path's best round
        for key in (("bare", "ray_train") if i % 2 == 0 else ("ray_train", "bare")):
            rounds[key].append(run_bare(args) if key == "bare" else run_ray(args))
    bare = max(rounds["bare"], key=lambda r: r["tokens_per_s"])
    ray_ = max(rounds["ray_train"], key=lambda r: r["tokens_per_s"])
    ratio = ray_["tokens_per_s"] / bare["tokens_per_s"]
    same = all([round(a, 4) for a in b["losses"]] == [round(x, 4) for x in r["losses"]]
               for b in rounds["bare"] for r in rounds["ray_train"])
    cfg = _config(args, Path("unused"))
    result = {
        "model": args.model, "config": str(args.config), "batch_size": cfg.batch_size,
        "cpus_per_worker": cfg.cpus_per_worker, "warmup_steps": args.warmup, "timed_steps": args.steps,
        "rounds": args.rounds, "cpu_count": os.cpu_count(), "loadavg_at_end": os.getloadavg(),
        "bare": bare, "ray_train": ray_, "ray_over_bare": ratio, "target": 0.8, "same_losses": same,
        "all_rounds": {k: [{x: r[x] for x in ("tokens_per_s", "s_per_step")} for r in v] for k, v in rounds.items()},
        "driver_peak_rss_mb": peak_rss_mb(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(args.out, result)
    print(f"\nSFT throughput, {args.model}, batch {cfg.batch_size}, {cfg.cpus_per_worker} threads, "
          f"{args.steps} timed steps after {args.warmup} warmup, best of {args.rounds} alternating rounds")
    print(f"{'path':<12} {'tokens/s':>10} {'s/step':>8} {'peak RSS MB':>12} {'wall s':>8}")
    for name, r in (("bare torch", bare), ("Ray Train", ray_)):
        print(f"{name:<12} {r['tokens_per_s']:>10.1f} {r['s_per_step']:>8.2f} {r['peak_rss_mb']:>12.0f} "
              f"{r['wall_s_incl_startup']:>8.1f}")
    for name, key in (("bare torch", "bare"), ("Ray Train", "ray_train")):
        print(f"  {name} rounds, tokens/s: " + ", ".join(f"{r['tokens_per_s']:.1f}" for r in rounds[key]))
    print(f"Ray Train / bare = {ratio:.3f} (target >= 0.8); identical losses: {same}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
