"""Benchmark: SFT step throughput with LoRA in every decoder layer vs only in the last K (`lora.top_layers`).

    python -m bench.lora_depth [--model smollm2-135m|tiny] [--top-layers 8] [--batch 4] [--repeats 3]
                               [--data data/embedded/train.jsonl] [--out bench/results/lora_depth.json]

With LoRA in the last K layers only, autograd keeps no graph below them, so backward stops at the lowest adapted
layer. Both policies run the same SFT micro-batch (the `batch` longest examples of `--data`, masked cross-entropy on
the answer tokens, backward), alternating (all, top, all, top, ...) after one untimed warm-up each; the table reports
median tokens/s and the ratio. What the shallower adapter costs in quality is not measured here: that takes a
training run (README, Status).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from bench import require_positive
from data.embedded import TRAIN_PATH

DEFAULT_OUT = "bench/results/lora_depth.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.lora_depth", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="model name/path (smollm2-135m, tiny, ...)")
    p.add_argument("--top-layers", type=int, default=8)
    p.add_argument("--batch", type=int, default=4, help="examples in the micro-batch")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per policy (after one warm-up each)")
    p.add_argument("--data", default=str(TRAIN_PATH))
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = p.parse_args(argv)
    require_positive(p, args, ("top_layers", "batch", "repeats"))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from data.atomic import write_json_atomic
    from learner.config import LoraConfig, ModelConfig
    from learner.lora import build_policy
    from memroute.core.models import load_tokenizer, resolve_model
    from learner.sft import masked_ce_sum
    from learner.sft_data import collate, load_sft_examples

    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(resolve_model(args.model))
    examples = load_sft_examples(args.data, tokenizer, max_seq_len=1 << 20)
    longest = sorted(range(len(examples)), key=lambda i: -examples[i].n_tokens)[:args.batch]
    batch = collate(examples, longest, tokenizer.pad_token_id or 0)
    model_cfg = ModelConfig(name=args.model, dtype="float32")
    policies = {"all layers": build_policy(model_cfg, LoraConfig()),
                f"last {args.top_layers} layers": build_policy(model_cfg, LoraConfig(top_layers=args.top_layers))}

    def step(policy) -> float:
        start = time.perf_counter()
        masked_ce_sum(policy, batch, "cpu").backward()
        policy.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    for policy in policies.values():
        step(policy)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in policies}
    for _ in range(args.repeats):
        for name, policy in policies.items():
            times[name].append(step(policy))
    rows = {}
    for name, ts in times.items():
        trainable = sum(p.numel() for p in policies[name].parameters() if p.requires_grad)
        rows[name] = {"median_s": statistics.median(ts), "tokens_per_s": batch["tokens"] / statistics.median(ts),
                      "trainable_params": trainable, "times_s": ts}
    full, top = rows.values()
    report = {"model": args.model, "tokens": batch["tokens"], "batch": args.batch, "repeats": args.repeats,
              "top_layers": args.top_layers, "speedup": top["tokens_per_s"] / full["tokens_per_s"],
              "machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "platform": platform.platform(),
                          "loadavg_start": os.getloadavg()},
              "policies": rows}
    print(f"SFT step, {args.batch} examples / {batch['tokens']} tokens, {args.model}, "
          f"{torch.get_num_threads()} threads")
    print("| LoRA in | trainable params | median step s | tokens/s |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['trainable_params']:,} | {r['median_s']:.2f} | {r['tokens_per_s']:.0f} |")
    print(f"speedup of the last {args.top_layers} layers: {report['speedup']:.2f}x")
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
