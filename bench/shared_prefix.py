"""Benchmark: one RL step (forward + backward of the IS loss) on N completions of one prompt, naive vs shared prefix.

    python -m bench.shared_prefix [--model smollm2-135m|tiny] [--prompt-tokens 500] [--n 8] [--completion-tokens 10]
                                  [--repeats 3] [--out bench/results/shared_prefix.json] [--threads K] [--device cpu]

- naive: ``learner.logprobs.sequence_logprobs`` (every row recomputes the prompt);
- shared: ``learner.logprobs.group_logprobs`` (the prompt once, its KV cache broadcast to the N rows).

Both run on the same LoRA policy (the B matrices perturbed so the adapter is not a no-op) and the same random data,
alternating (naive, shared, naive, shared, ...) after one untimed warm-up each; the table reports medians. The
warm-up step of each method also checks that the two give the same log-probs and the same LoRA gradients. Writes a
JSON report atomically; exits 1 if the gradients do not match.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from bench import require_positive

DEFAULT_OUT = "bench/results/shared_prefix.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.shared_prefix", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="model name/path (smollm2-135m, tiny, ...)")
    p.add_argument("--prompt-tokens", type=int, default=500)
    p.add_argument("--n", type=int, default=8, help="completions per prompt (the group size)")
    p.add_argument("--completion-tokens", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="timed steps per method (after one warm-up each)")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--lora-rank", type=int, default=None, help="default: LoraConfig's")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    require_positive(p, args, ("prompt_tokens", "n", "completion_tokens", "repeats"))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from data.atomic import write_json_atomic
    from learner.config import LoraConfig, ModelConfig
    from learner.logprobs import group_logprobs, sequence_logprobs
    from learner.lora import build_policy
    from learner.losses import policy_loss
    from memroute.core.exchange import group_advantages

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    lora_cfg = LoraConfig() if args.lora_rank is None else LoraConfig(rank=args.lora_rank, alpha=args.lora_rank)
    torch.manual_seed(args.seed)
    policy = build_policy(ModelConfig(name=args.model, dtype=args.dtype), lora_cfg, seed=args.seed).to(device)
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    params = [p for p in policy.parameters() if p.requires_grad]
    vocab = policy.config.vocab_size

    P, N, C = args.prompt_tokens, args.n, args.completion_tokens
    prompt = torch.randint(0, vocab, (P,), generator=gen).tolist()
    completions = [torch.randint(0, vocab, (C,), generator=gen).tolist() for _ in range(N)]
    advantages = group_advantages(torch.rand(N, generator=gen), N).to(device)
    mask = torch.ones(N, C, device=device)
    sampler_noise = 0.01 * torch.randn(N, C, generator=gen).to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(method):
        """One RL step; returns (seconds, stacked logprobs, flat gradient)."""
        for p in params:
            p.grad = None
        sync()
        t0 = time.perf_counter()
        if method == "naive":
            rows = sequence_logprobs(policy, [prompt] * N, completions)
        else:
            rows = group_logprobs(policy, prompt, completions)
        logp = torch.stack(rows)  # all completions have C tokens
        loss, _ = policy_loss(logp, logp.detach() + sampler_noise, advantages, mask, kind="is")
        loss.backward()
        sync()
        dt = time.perf_counter() - t0
        grad = torch.cat([p.grad.detach().flatten() for p in params])
        return dt, logp.detach(), grad

    methods = ("naive", "shared")
    print(f"model {args.model} ({sum(p.numel() for p in policy.parameters()) / 1e6:.1f}M params, "
          f"{sum(p.numel() for p in params) / 1e6:.2f}M LoRA rank {lora_cfg.rank}), {args.dtype} on {device}, "
          f"{torch.get_num_threads()} threads; prompt {P} tokens, N={N}, completions {C} tokens", flush=True)
    warm = {}
    for m in methods:
        dt, logp, grad = step(m)
        warm[m] = (logp, grad)
        print(f"  warm-up {m}: {dt:.3f} s", flush=True)
    logp_diff = float((warm["shared"][0] - warm["naive"][0]).abs().max())
    g_n, g_s = warm["naive"][1], warm["shared"][1]
    grad_rel = float((g_s - g_n).norm() / g_n.norm().clamp_min(1e-30))
    grad_max = float((g_s - g_n).abs().max())
    grad_ok = bool(grad_rel < 1e-3 and logp_diff < 1e-3) if args.dtype == "float32" else bool(grad_rel < 5e-2)
    del warm

    times = {m: [] for m in methods}
    for r in range(args.repeats):
        for m in methods:  # alternate, so drift (thermal, other load) hits both alike
            times[m].append(step(m)[0])
        print(f"  repeat {r + 1}: naive {times['naive'][-1]:.3f} s, shared {times['shared'][-1]:.3f} s", flush=True)

    # token-positions the model runs (the last completion token is never fed: nothing is scored from it)
    tokens = {"naive": N * (P + C - 1), "shared": P + N * (C - 1)}
    med = {m: statistics.median(times[m]) for m in methods}
    rows = []
    for m in methods:
        rows.append({"method": m, "median_s": med[m], "times_s": times[m], "tokens_computed": tokens[m],
                     "speedup": med["naive"] / med[m]})
    print()
    print(f"{'method':<8} {'median s':>10} {'tokens computed':>16} {'speedup':>8}")
    for row in rows:
        print(f"{row['method']:<8} {row['median_s']:>10.3f} {row['tokens_computed']:>16d} {row['speedup']:>7.2f}x")
    print(f"gradients match: {grad_ok} (relative L2 diff {grad_rel:.2e}, max abs diff {grad_max:.2e}; "
          f"max logprob diff {logp_diff:.2e})")

    report = {
        "benchmark": "shared_prefix",
        "config": {"model": args.model, "dtype": args.dtype, "device": str(device), "prompt_tokens": P, "n": N,
                   "completion_tokens": C, "repeats": args.repeats, "lora_rank": lora_cfg.rank,
                   "loss": "is", "seed": args.seed, "threads": torch.get_num_threads()},
        "results": rows,
        "speedup": med["naive"] / med["shared"],
        "grad_check": {"ok": grad_ok, "relative_l2_diff": grad_rel, "max_abs_diff": grad_max,
                       "max_logprob_diff": logp_diff},
        "env": {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
                "cpu_count": os.cpu_count(),
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")
    return 0 if grad_ok else 1


if __name__ == "__main__":
    sys.exit(main())
