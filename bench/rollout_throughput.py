"""Benchmark: rollout sampling on the vLLM engine vs Hugging Face `generate`, same prompts and sampling settings.

    python -m bench.rollout_throughput [--model smollm2-135m] [--adapter DIR] [--prompts 8] [--n 8]
                                       [--max-tokens 48] [--out bench/results/rollout_throughput.json]

A rollout step's work: `--prompts` embedded training conversations rendered with the one prompt function, `--n`
samples each at temperature 1, top-p 1, at most `--max-tokens` tokens, stopping at the end-of-turn token.
vLLM (`actors.engine.Engine.sample`: one request with n children per prompt, prefix caching) against HF
(`actors.hf_engine.HFEngine.generate` on the prompts repeated n times, batches of n, float32 like the engine).
One system at a time (a 2-core machine cannot host both), each warmed up once, then timed over `--repeats`
steps. Reports conversations x samples per second, generated tokens per second, and the ratio.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time

DEFAULT_OUT = "bench/results/rollout_throughput.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.rollout_throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--adapter", default=None, help="a LoRA adapter folder (e.g. an SFT result)")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--kv-cache-gib", type=float, default=1.0)
    p.add_argument("--out", default=DEFAULT_OUT)
    return p.parse_args(argv)


def prompts_for(tokenizer, count: int) -> list[str]:
    from data.embedded import TRAIN_PATH
    from data.prompt import render_prompt
    from data.schema import read_examples

    return [render_prompt(tokenizer, ex.conversation) for ex in read_examples(TRAIN_PATH)[:count]]


def time_steps(step, repeats: int) -> tuple[list[float], int]:
    step()  # warm-up (first-call allocations, caches)
    times, tokens = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = step()
        times.append(time.perf_counter() - start)
    return times, tokens


def bench_vllm(args) -> dict:
    from actors.engine import Engine, EngineConfig

    engine = Engine(EngineConfig(model=args.model, kv_cache_gib=args.kv_cache_gib, enable_lora=False))
    try:
        if args.adapter:
            engine.load_adapter(args.adapter)
        prompts = prompts_for(engine.tokenizer, args.prompts)

        def step() -> int:
            groups = engine.sample(prompts, args.n, temperature=1.0, top_p=1.0, max_tokens=args.max_tokens)
            return sum(len(s.token_ids) for g in groups for s in g)

        times, tokens = time_steps(step, args.repeats)
    finally:
        engine.shutdown()
    return {"seconds": times, "tokens": tokens}


def bench_hf(args) -> dict:
    import torch

    from actors.hf_engine import HFEngine

    engine = HFEngine(args.model, adapter=args.adapter, dtype="float32", batch_size=args.n)
    prompts = prompts_for(engine.tokenizer, args.prompts)
    repeated = [p for p in prompts for _ in range(args.n)]

    def step() -> int:
        return sum(g.n_completion_tokens for g in engine.generate(repeated, max_new_tokens=args.max_tokens,
                                                                   temperature=1.0))

    torch.manual_seed(0)
    times, tokens = time_steps(step, args.repeats)
    return {"seconds": times, "tokens": tokens}


def main(argv=None) -> int:
    from data.atomic import write_json_atomic

    args = parse_args(argv)
    samples = args.prompts * args.n
    results = {}
    for name, fn in (("vllm", bench_vllm), ("hf_generate", bench_hf)):
        r = fn(args)
        gc.collect()
        mean = statistics.mean(r["seconds"])
        results[name] = {**r, "mean_seconds": mean, "samples_per_s": samples / mean, "tokens_per_s": r["tokens"] / mean}
        print(f"{name}: {mean:.2f} s/step, {samples / mean:.2f} samples/s", flush=True)  # before the slow one
    ratio = results["vllm"]["samples_per_s"] / results["hf_generate"]["samples_per_s"]
    report = {"bench": "rollout_throughput", "args": vars(args), "machine": platform.platform(),
              "results": results, "vllm_over_hf_samples_per_s": ratio, "target": ">= 5x", "meets_target": ratio >= 5}
    print(f"rollout step: {args.prompts} prompts x {args.n} samples, <= {args.max_tokens} tokens, {args.model}"
          + (f" + {args.adapter}" if args.adapter else ""))
    print(f"{'system':<12} {'s/step':>8} {'samples/s':>10} {'gen tok/s':>10}")
    for name, r in results.items():
        print(f"{name:<12} {r['mean_seconds']:>8.2f} {r['samples_per_s']:>10.2f} {r['tokens_per_s']:>10.1f}")
    print(f"vLLM / HF generate: {ratio:.2f}x (target >= 5x)")
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
