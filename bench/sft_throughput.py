"""SFT throughput by loss path: today's path vs the frozen-trunk cache, for LoRA in the last k layers, side by side.

    python -m bench.sft_throughput [--model smollm2-135m] [--ks 2,4,8] [--examples 16] [--steps 3]
                                   [--data ../shared/data/train.jsonl] [--out bench/results/sft_throughput.json]

Rows, for each k (`lora.top_layers=k`, rank 32, all projections, float32, batch 8, 2 threads):

- `plain`: the whole model forward on right-padded examples, logits only from the first answer position
  (`learner.sft.masked_ce_sum`, the path every run took before the cache);
- `plain+prefix`: the whole model, the shared prompt prefix run once per micro-batch (`learner.segment`);
- `cached`: the top k layers from stored layer-(N-k) states, each example's whole prompt in its row (a cache built
  with a one-token prefix);
- `cached+prefix`: the same with the shared prefix stored once and run once per micro-batch (what
  `trunk.cache=true` trains with).

The prefix and cached rows run the examples' rests after the shared prefix in groups of similar length (what
training does: `learner.sft.PAD_TOKENS`, or `--pad-tokens`); a `/padded` row runs them right-padded into one batch
(how they ran until 2026-12-07) and a `/rows` row each on its own, for the ratio.

Every row runs in a fresh subprocess (its peak RSS is its own) on the same examples and batches (`--examples`,
the longest-first prefix of a seeded shuffle of `--data`), one untimed warm-up step, then `--steps` timed
optimizer steps (forward, backward, AdamW). tokens/s counts every token of the examples (prompt + answer, the
prefix included), so rows compare as time per epoch. The cached rows also time their cache build (no grad, the
layers below the cut), reported as tokens/s and as minutes for the corpus. Minutes per epoch use the token count
of `--corpus` (the reference train split when present). Achieved GFLOP/s counts the dense matmul FLOPs of the
layers each path runs per token (2 x params forward; adapted layers again for the backward to their inputs,
LoRA's own FLOPs and attention's score matmuls left out), against a float32 matmul of the model's MLP shape timed
in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from bench import require_positive

REPO = Path(__file__).resolve().parents[1]
SHARED_TRAIN = REPO.parent / "shared" / "data" / "train.jsonl"
PATHS = ("plain", "plain+prefix/padded", "plain+prefix", "cached", "cached+prefix/padded", "cached+prefix/rows",
         "cached+prefix")


def _data_default() -> str:
    from data.embedded import TRAIN_PATH

    return str(SHARED_TRAIN if SHARED_TRAIN.exists() else TRAIN_PATH)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.sft_throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="model name/path (smollm2-135m, tiny, ...)")
    p.add_argument("--ks", default="2,4,8", help="comma-separated lora.top_layers values")
    p.add_argument("--examples", type=int, default=16, help="examples the timed steps draw from (batch 8)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed optimizer steps per row (after one warm-up)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=None, help="examples to time (default: the reference train split, else the "
                                                "embedded one)")
    p.add_argument("--corpus", default=None, help="dataset whose tokens define one epoch (default: --data)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "sft_throughput.json"))
    p.add_argument("--pad-tokens", type=int, default=None,
                   help="padding a row may add to a group rather than run alone (default: learner.sft.PAD_TOKENS)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    require_positive(p, args, ("examples", "batch", "steps", "threads"))
    args.data = args.data or _data_default()
    args.corpus = args.corpus or args.data
    if args.pad_tokens is None:
        from learner.sft import PAD_TOKENS

        args.pad_tokens = PAD_TOKENS
    return args


def _examples(args, tokenizer):
    from learner.sft_data import load_sft_examples

    examples = load_sft_examples(args.data, tokenizer, 4096)
    order = list(range(len(examples)))
    random.Random(0).shuffle(order)
    return [examples[i] for i in order[: args.examples]]


def _layer_params(model) -> int:
    from learner.segment import decoder_parts

    layer = decoder_parts(model)[0].layers[0]
    return sum(p.numel() for n, p in layer.named_parameters() if "lora_" not in n)


def child(args, k: int, path: str) -> dict:
    """One row, in this (fresh) process."""
    import tempfile

    import torch

    from learner.config import LoraConfig, ModelConfig, SFTConfig
    from learner.lora import build_policy
    from memroute.core.models import load_tokenizer
    from learner.segment import num_layers
    from learner.sft import answer_loss_fn, build_optimizer, peak_rss_mb, shared_prefix_len, sft_step
    from learner.trunk_cache import open_cache

    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.model)
    examples = _examples(args, tokenizer)
    cfg = SFTConfig(model=ModelConfig(name=args.model, dtype="float32"), lora=LoraConfig(top_layers=k),
                    batch_size=args.batch)
    policy = build_policy(cfg.model, cfg.lora)
    policy.train()
    n_layers = num_layers(policy)
    params, optimizer, scheduler = build_optimizer(cfg, policy, args.steps + 1)
    P = shared_prefix_len(examples)
    build = None
    loss_path, _, shape = path.partition("/")
    pad_tokens = {"padded": None, "rows": 0, "": args.pad_tokens}[shape]
    with tempfile.TemporaryDirectory(prefix="bench-trunk-") as tmp:
        if loss_path.startswith("cached"):
            prefix = P if loss_path.endswith("prefix") else 1
            t0 = time.perf_counter()
            cache = open_cache(policy, [ex.input_ids for ex in examples], n_layers - k, tmp, prefix, "float16")
            seconds = time.perf_counter() - t0
            built = sum(ex.n_tokens - prefix for ex in examples)
            build = {"tokens": built, "seconds": seconds, "tokens_per_s": built / seconds, "prefix_len": prefix}
            ce_fn = answer_loss_fn(policy, examples, 0, "cpu", cache=cache, pad_tokens=pad_tokens)
        else:
            ce_fn = answer_loss_fn(policy, examples, 0, "cpu", prefix_len=P if loss_path.endswith("prefix") else 0,
                                   pad_tokens=pad_tokens)
        lengths = [ex.n_tokens for ex in examples]
        batches = [list(range(i, i + args.batch)) for i in range(0, len(examples) - args.batch + 1, args.batch)]
        times, tokens, losses = [], [], []
        for step in range(args.steps + 1):
            batch = batches[step % len(batches)]
            t0 = time.perf_counter()
            out = sft_step(policy, params, optimizer, scheduler, examples, batch, lengths, 0, 1, 1, ce_fn, "cpu",
                           1.0)
            if step:  # the first step is the warm-up
                times.append(time.perf_counter() - t0)
                tokens.append(out["tokens"])
            losses.append(out["loss"])
    return {"k": k, "path": path, "layers": n_layers, "layer_params": _layer_params(policy), "prefix_len": P,
            "tokens": sum(tokens), "seconds": sum(times), "tokens_per_s": sum(tokens) / sum(times),
            "losses": losses, "build": build, "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads()}


def matmul_gflops(threads: int, m: int = 2048, k: int = 576, n: int = 1536, repeats: int = 20) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * m * k * n * repeats / (time.perf_counter() - t0) / 1e9


def corpus_tokens(args) -> tuple[int, int]:
    """(tokens, tokens after the shared prefix) of one epoch of `--corpus`."""
    from memroute.core.models import load_tokenizer
    from learner.sft import shared_prefix_len
    from learner.sft_data import load_sft_examples

    examples = load_sft_examples(args.corpus, load_tokenizer(args.model), 4096)
    total = sum(ex.n_tokens for ex in examples)
    return total, total - len(examples) * shared_prefix_len(examples)


def gflop_per_token(row: dict) -> float:
    """Dense matmul GFLOP per token of the layers this path runs (see the module doc)."""
    per_layer = 2 * row["layer_params"] / 1e9
    k, n = row["k"], row["layers"]
    trunk = 0 if row["path"].startswith("cached") else n - k
    return per_layer * (trunk + 2 * k)


def run_row(args, k: int, path: str) -> dict:
    cmd = [sys.executable, "-m", "bench.sft_throughput", "--child", f"{k}:{path}", "--model", args.model,
           "--examples", str(args.examples), "--batch", str(args.batch), "--steps", str(args.steps),
           "--threads", str(args.threads), "--data", args.data, "--pad-tokens", str(args.pad_tokens)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"row k={k} {path} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        k, path = args.child.split(":", 1)
        print(json.dumps(child(args, int(k), path)))
        return 0
    from data.atomic import write_json_atomic

    ks = [int(x) for x in args.ks.split(",")]
    gemm = matmul_gflops(args.threads)
    epoch_tokens, epoch_rest = corpus_tokens(args)
    rows = [run_row(args, k, path) for k in ks for path in PATHS]
    gemm_end = matmul_gflops(args.threads)
    base = {r["k"]: r["tokens_per_s"] for r in rows if r["path"] == "plain"}
    for r in rows:
        r["ratio_to_plain"] = r["tokens_per_s"] / base[r["k"]]
        r["minutes_per_epoch"] = epoch_tokens / r["tokens_per_s"] / 60
        r["gflops"] = gflop_per_token(r) * r["tokens_per_s"]
        if r["build"]:
            rest = epoch_rest if r["build"]["prefix_len"] > 1 else epoch_tokens
            r["build"]["minutes_for_corpus"] = rest / r["build"]["tokens_per_s"] / 60
    result = {"model": args.model, "data": args.data, "corpus": args.corpus, "corpus_tokens": epoch_tokens,
              "corpus_tokens_after_prefix": epoch_rest, "examples": args.examples, "batch": args.batch,
              "timed_steps": args.steps, "threads": args.threads, "cpu_count": os.cpu_count(),
              "matmul_gflops": {"start": gemm, "end": gemm_end}, "loadavg_at_end": os.getloadavg(), "rows": rows,
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json_atomic(args.out, result)
    print(f"\nSFT throughput, {args.model}, batch {args.batch}, {args.threads} threads, {args.steps} timed steps, "
          f"epoch = {epoch_tokens} tokens of {args.corpus}; float32 matmul {gemm:.0f}-{gemm_end:.0f} GFLOP/s")
    print(f"{'k':>2} {'path':<20} {'tokens/s':>9} {'x plain':>8} {'min/epoch':>10} {'GFLOP/s':>8} "
          f"{'cache min':>10} {'peak RSS MB':>12}")
    for r in rows:
        cache = f"{r['build']['minutes_for_corpus']:.1f}" if r["build"] else "-"
        print(f"{r['k']:>2} {r['path']:<20} {r['tokens_per_s']:>9.0f} {r['ratio_to_plain']:>8.2f} "
              f"{r['minutes_per_epoch']:>10.1f} {r['gflops']:>8.1f} {cache:>10} {r['peak_rss_mb']:>12.0f}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
