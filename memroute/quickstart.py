"""`memroute quickstart`: the main job on the embedded default, end to end on one CPU machine.

Today it provisions the default model, checks the embedded dataset, and scores the zero-shot model and the
majority baseline on the embedded test split. SFT, RL and serving join it as those stages land.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from data.atomic import write_text_atomic
from data.embedded import TEST_PATH, TRAIN_PATH


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="memroute quickstart", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N test conversations")
    args = p.parse_args(argv)
    from learner.models import ModelError  # cheap: torch loads only when a model does

    try:
        return run(args)
    except (FileNotFoundError, ValueError, ModelError) as e:
        print(f"memroute quickstart: error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    from actors.evaluate import EvalConfig, run_eval
    from data.schema import read_examples
    from learner.models import resolve_model

    start = time.perf_counter()
    out = Path(args.out)
    print(f"[1/3] model: {resolve_model(args.model)}")
    train, test = read_examples(TRAIN_PATH), read_examples(TEST_PATH)
    print(f"[2/3] embedded data: {len(train)} train / {len(test)} test conversations, valid")
    rows = []
    print("[3/3] evaluating on the embedded test split")
    for name, backend in (("majority baseline", "majority"), (f"{args.model} zero-shot", "hf")):
        print(f"      {name} ...")
        m = run_eval(EvalConfig(model=args.model, backend=backend, out=str(out / backend), limit=args.limit))
        rows.append(f"| {name} | {m['mean_f1']:.3f} | {m['exact_match']:.3f} | {m['parse_failure_rate']:.3f} "
                    f"| {m['mean_reward']:.3f} | {out / backend} |")
    summary = "\n".join(["| system | mean F1 | exact | parse failures | mean reward | results |",
                         "|---|---|---|---|---|---|", *rows])
    write_text_atomic(out / "summary.md", summary + "\n")
    print(f"\n{summary}\n\nfinished in {time.perf_counter() - start:.0f}s; summary at {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
