"""Benchmark: pushing learner LoRA weights into the vLLM engine, "lora" adapter swap vs "merged" base weights.

    python -m bench.weight_push [--model smollm2-135m] [--out bench/results/weight_push.json] [--rank 32]
                                [--pushes 3] [--prompts 8] [--n 8] [--max-tokens 48] [--strategies lora,merged]

One learner (`learner.actor.Learner`, float32, a rank-`--rank` LoRA on all 7 projections) makes `--pushes` weight
sets (its LoRA B matrices perturbed with a different seed each time, so every adapter is non-zero and different).
For each strategy in turn (one engine at a time: a 2-core machine cannot host two), the benchmark starts an
`Engine`, runs one rollout step (`--prompts` embedded training examples x `--n` samples, `--max-tokens` tokens,
rewards included) on the base weights, then pushes every weight set and times `Engine.load_weights`, and checks
each push: `Engine.score()` of a probe completion (the first example's gold answer) against the learner's
logprobs under that weight set (max abs gap). After the last push it times a rollout step again (the LoRA
strategy's per-token adapter cost shows there) and compares the sampler's logprobs of its completions with the
learner's. Prints a table and writes a JSON report atomically. Exits 1 if a push does not verify.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from bench import require_positive

DEFAULT_OUT = "bench/results/weight_push.json"
VERIFY_TOL = 1e-3  # float32 on both sides: the gaps are ~1e-5; a missed / wrong push moves logprobs by >> 0.01


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.weight_push", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="model name/path (smollm2-135m, tiny, ...)")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--strategies", default="lora,merged", help="comma-separated: lora, merged")
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--pushes", type=int, default=3, help="timed pushes per strategy (different weights each)")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--kv-cache-gib", type=float, default=1.0)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--compile", dest="enforce_eager", action="store_false", default=None,
                   help="torch.compile the engine's model (default: EngineConfig's choice, eager on CPU)")
    p.add_argument("--enforce-eager", dest="enforce_eager", action="store_true", help="no torch.compile")
    p.add_argument("--b-std", type=float, default=0.02, help="std of the random LoRA B matrices")
    args = p.parse_args(argv)
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    bad = [s for s in args.strategies if s not in ("lora", "merged")]
    if bad or not args.strategies:
        p.error(f"--strategies: unknown {bad}; use lora and/or merged")
    require_positive(p, args, ("rank", "pushes", "prompts", "n", "max_tokens"))
    return args


def _weight_sets(learner, count: int, b_std: float) -> list[dict]:
    import torch

    sets = []
    for i in range(count):
        gen = torch.Generator().manual_seed(1000 + i)
        with torch.no_grad():
            for name, p in learner.policy.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * b_std)
        sets.append(learner.get_weights()[1])
    return sets


def _load_into_learner(learner, tensors: dict) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(learner.policy, tensors)


def _rollout_step(worker, examples, n) -> dict:
    start = time.perf_counter()
    groups = worker.rollout(examples, n)
    seconds = time.perf_counter() - start
    tokens = sum(g.n_tokens() for g in groups)
    return {"seconds": seconds, "completion_tokens": tokens, "tokens_per_s": tokens / seconds,
            "mean_reward": statistics.fmean(r for g in groups for r in g.meta["rewards"]),
            "eos_stopped": sum(f == "stop" for g in groups for f in g.meta["finish_reasons"]), "groups": groups}


def _max_gap(a, b) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from actors.engine import EngineConfig
    from actors.rollout import RolloutConfig, RolloutWorker
    from data.atomic import write_json_atomic
    from data.embedded import TRAIN_PATH
    from data.prompt import completion_text
    from data.schema import read_examples
    from learner.actor import Learner
    from learner.config import LearnerConfig, LoraConfig, ModelConfig
    from memroute.core.models import load_tokenizer

    examples = [ex.to_dict() for ex in read_examples(TRAIN_PATH)[:args.prompts]]
    lora_cfg = LoraConfig(rank=args.rank, alpha=args.rank)
    learner = Learner(LearnerConfig(model=ModelConfig(name=args.model, dtype="float32"), lora=lora_cfg))
    weight_sets = _weight_sets(learner, args.pushes, args.b_std)
    n_lora = sum(v.numel() for v in weight_sets[0].values())
    print(f"model {args.model}; LoRA rank {args.rank} on {len(lora_cfg.target_modules)} projections: "
          f"{len(weight_sets[0])} tensors, {n_lora / 1e6:.2f}M params ({n_lora * 4 / 1e6:.1f} MB float32)", flush=True)

    from data.prompt import render_prompt

    tok = load_tokenizer(args.model)
    probe_prompt = tok(render_prompt(tok, examples[0]["conversation"]), add_special_tokens=False)["input_ids"]
    probe_completion = tok(completion_text(tok, examples[0]["categories"]), add_special_tokens=False)["input_ids"]
    expected = []  # the learner's logprobs of the probe under each weight set
    for w in weight_sets:
        _load_into_learner(learner, w)
        expected.append(learner.logprobs(probe_prompt, [probe_completion])[0])
    base_expected = learner.logprobs(probe_prompt, [probe_completion], reference=True)[0]

    results = {}
    ok = True
    for strategy in args.strategies:
        print(f"\n== {strategy} ==", flush=True)
        ecfg = EngineConfig(model=args.model, dtype=args.dtype, kv_cache_gib=args.kv_cache_gib, weight_sync=strategy,
                            max_lora_rank=max(32, args.rank), enforce_eager=args.enforce_eager)
        t0 = time.perf_counter()
        worker = RolloutWorker(RolloutConfig(engine=ecfg, n=args.n, max_tokens=args.max_tokens))
        start_s = time.perf_counter() - t0
        engine = worker.engine
        print(f"  engine start {start_s:.1f} s", flush=True)
        base_gap = _max_gap(engine.score(probe_prompt, probe_completion), base_expected)
        _rollout_step(worker, examples[:1], 2)  # warm-up (first-request costs)
        before = _rollout_step(worker, examples, args.n)
        print(f"  rollout step (base weights): {before['seconds']:.2f} s, {before['tokens_per_s']:.1f} tok/s",
              flush=True)
        pushes, gaps, moved = [], [], []
        for i, w in enumerate(weight_sets):
            seconds = engine.load_weights(i + 1, w, lora_cfg)
            got = engine.score(probe_prompt, probe_completion)
            pushes.append(seconds)
            gaps.append(_max_gap(got, expected[i]))
            moved.append(_max_gap(got, base_expected))
            print(f"  push v{i + 1}: {seconds:.3f} s; probe vs learner max |gap| {gaps[-1]:.2e} "
                  f"(moved {moved[-1]:.3f} from the base)", flush=True)
        after = _rollout_step(worker, examples, args.n)
        print(f"  rollout step (v{len(weight_sets)}): {after['seconds']:.2f} s, {after['tokens_per_s']:.1f} tok/s",
              flush=True)
        # the sampler's own logprobs of what it sampled vs the learner's, under the last weight set
        _load_into_learner(learner, weight_sets[-1])
        sampler_gaps = []
        for g in after["groups"]:
            rows = learner.logprobs(g.prompt_ids, g.completion_ids)
            sampler_gaps += [abs(a - b) for lp, row in zip(g.sampler_logprobs, rows) for a, b in zip(lp, row)]
        versions = sorted({g.policy_version for g in after["groups"]})
        verified = max(gaps) < VERIFY_TOL and min(moved) > 10 * VERIFY_TOL and versions == [len(weight_sets)]
        ok &= verified
        results[strategy] = {
            "engine_start_s": start_s,
            "push_s": pushes,
            "push_median_s": statistics.median(pushes),
            "probe_gap_max": max(gaps),
            "probe_moved_min": min(moved),
            "base_probe_gap": base_gap,
            "verified": verified,
            "rollout_base": {k: v for k, v in before.items() if k != "groups"},
            "rollout_after_push": {k: v for k, v in after.items() if k != "groups"},
            "sampler_vs_learner_mean_abs_gap": statistics.fmean(sampler_gaps),
            "sampler_vs_learner_max_abs_gap": max(sampler_gaps),
            "sampled_versions": versions,
        }
        worker.shutdown()
        del worker, engine

    print()
    header = (f"{'strategy':<8} {'start s':>8} {'push s (median)':>16} {'probe gap':>10} {'rollout s base':>15} "
              f"{'rollout s pushed':>17} {'tok/s pushed':>13} {'sampler gap':>12}")
    print(header)
    for s, r in results.items():
        print(f"{s:<8} {r['engine_start_s']:>8.1f} {r['push_median_s']:>16.3f} {r['probe_gap_max']:>10.1e} "
              f"{r['rollout_base']['seconds']:>15.2f} {r['rollout_after_push']['seconds']:>17.2f} "
              f"{r['rollout_after_push']['tokens_per_s']:>13.1f} {r['sampler_vs_learner_mean_abs_gap']:>12.1e}")
    verified = [s for s, r in results.items() if r["verified"]]
    winner = min(verified, key=lambda s: results[s]["push_median_s"] + results[s]["rollout_after_push"]["seconds"],
                 default=None)
    print(f"fastest verified strategy (push + one rollout step): {winner}")
    report = {
        "benchmark": "weight_push",
        "model": args.model,
        "lora": {"rank": args.rank, "alpha": args.rank, "target_modules": list(lora_cfg.target_modules),
                 "params": n_lora, "b_std": args.b_std},
        "rollout": {"prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens},
        "dtype": args.dtype, "enforce_eager": args.enforce_eager, "kv_cache_gib": args.kv_cache_gib,
        "results": results,
        "winner": winner,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "cuda": torch.cuda.is_available()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
