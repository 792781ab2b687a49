"""Learning curves: test F1 against examples seen, from the checkpoints of an SFT run.

    python -m memroute.curve RUN_DIR --data ../shared/data/test.jsonl --out docs/results/NAME [--every-epoch]
                             [--steps 100,200] [--extra NAME=DATA ...] [--limit N] [--data-name dev]
    python -m memroute.curve --compare A.json B.json ... --out docs/results/NAME [--set dev]

Each chosen checkpoint (`RUN_DIR/train/checkpoint_*`: every epoch's last one with `--every-epoch`, or the given
steps) is scored with `memroute eval` (greedy, the vLLM engine) on `--data` and on each `--extra` set; the points go
to NAME.json (steps, examples and epochs seen, mean F1 and exact match with their 95% intervals, and where each
checkpoint's full evaluation is) and NAME.png (mean F1 against epochs seen, one line per data set). A point already
in NAME.json for the same checkpoint, data and adapter hash is kept, so a re-run after more training only scores
the new checkpoints.

`--compare` reads several such NAME.json files (the runs of a recipe sweep) and writes one table (NAME.md: each
run's score at each epoch scored, and the final one with its interval) and one plot (NAME.png: mean F1 against
epochs seen, one line per run) for the chosen set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from data.atomic import atomic_path, write_json_atomic
from memroute.core.errors import InputNotFoundError, run_command


def _checkpoints(run_dir: Path) -> dict[int, Path]:
    out = {}
    for p in sorted((run_dir / "train").glob("checkpoint_*")):
        if (p / "memroute_checkpoint.json").exists():
            out[json.loads((p / "memroute_checkpoint.json").read_text())["global_step"]] = p
    return out


def _adapter_hash(adapter: Path) -> str:
    return hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()[:16]


def choose(run_dir: Path, steps: list[int] | None, every_epoch: bool) -> list[tuple[int, Path]]:
    import yaml

    ckpts = _checkpoints(run_dir)
    if not ckpts:
        raise InputNotFoundError(f"no committed checkpoints under {run_dir / 'train'}")
    if steps:
        missing = [s for s in steps if s not in ckpts]
        if missing:
            raise InputNotFoundError(f"no checkpoint at step(s) {missing} in {run_dir}; have {sorted(ckpts)}")
        return [(s, ckpts[s]) for s in steps]
    if every_epoch:
        per_epoch = _steps_per_epoch(run_dir, yaml)
        last = {}
        for s in sorted(ckpts):
            last[(s - 1) // per_epoch] = s  # the latest checkpoint within each epoch
        return [(s, ckpts[s]) for s in sorted(last.values())]
    return sorted(ckpts.items())


def _steps_per_epoch(run_dir: Path, yaml) -> int:
    from data.mix import read_mix_examples

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    return len(read_mix_examples(cfg["train_data"])) // cfg["batch_size"]


def curve(run_dir: Path, datasets: list[tuple[str, str]], out: Path, steps: list[int] | None = None,
          every_epoch: bool = False, limit: int | None = None, model: str = "smollm2-135m") -> dict:
    import yaml

    from actors.evaluate import EvalConfig, run_eval
    from data.mix import read_mix_examples

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    n_train = len(read_mix_examples(cfg["train_data"]))
    old = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {"points": []}
    known = {(p["step"], p["data"], p["adapter_sha"]): p for p in old["points"]}
    points = []
    for step, folder in choose(run_dir, steps, every_epoch):
        adapter = folder / "adapter"
        sha = _adapter_hash(adapter)
        for name, data in datasets:
            if (step, data, sha) in known:
                points.append(known[(step, data, sha)])
                continue
            eval_dir = out.parent / f"{out.name}_evals" / f"step{step:06d}_{name}"
            m = run_eval(EvalConfig(model=model, adapter=str(adapter), data=data, out=str(eval_dir), limit=limit))
            seen = step * cfg["batch_size"]
            points.append({"step": step, "examples_seen": seen, "epochs_seen": round(seen / n_train, 3),
                           "set": name, "data": data, "adapter_sha": sha, "eval_dir": str(eval_dir),
                           "mean_f1": m["mean_f1"], "mean_f1_ci95": m["mean_f1_ci95"],
                           "exact_match": m["exact_match"], "exact_match_ci95": m.get("exact_match_ci95"),
                           "parse_failure_rate": m["parse_failure_rate"], "n": m["n"]})
            print(f"step {step} ({points[-1]['epochs_seen']} epochs) {name}: mean F1 {m['mean_f1']:.3f}, "
                  f"exact {m['exact_match']:.3f}", flush=True)
            result = {"run_dir": str(run_dir), "train_examples": n_train, "points": points}
            write_json_atomic(out.with_suffix(".json"), result)  # after each point: a kill keeps what is done
    result = {"run_dir": str(run_dir), "train_examples": n_train, "points": points}
    write_json_atomic(out.with_suffix(".json"), result)
    plot(result, out.with_suffix(".png"), Path(run_dir).name)
    return result


def plot(result: dict, path: Path, title: str) -> None:
    from memroute.plot import render

    series = []
    for name in dict.fromkeys(p["set"] for p in result["points"]):
        pts = sorted((p["epochs_seen"], p["mean_f1"]) for p in result["points"] if p["set"] == name)
        series.append((f"{name} mean F1", pts))
        pts = sorted((p["epochs_seen"], p["exact_match"]) for p in result["points"] if p["set"] == name)
        series.append((f"{name} exact match", pts))
    with atomic_path(path) as tmp:
        render(tmp, f"scores against epochs of training ({title})", "score", series, xlabel="epochs seen")


def compare(curves: list[Path], out: Path, set_name: str = "test") -> str:
    """One table and one plot over several learning curves (NAME.json files of `curve`), for one scored set."""
    from memroute.plot import render

    runs = []
    for path in curves:
        if not path.is_file():
            raise InputNotFoundError(f"learning curve not found: {path} "
                                     "(write it with python -m memroute.curve RUN_DIR ...)")
        result = json.loads(path.read_text(encoding="utf-8"))
        pts = sorted((p for p in result["points"] if p["set"] == set_name), key=lambda p: p["step"])
        if not pts:
            raise InputNotFoundError(f"{path} has no points for the set {set_name!r}")
        runs.append((path.stem, pts))
    lines = [f"| run | {set_name}: mean F1 / exact match at each epoch scored | final mean F1 (95% CI) | final exact |",
             "|---|---|---|---|"]
    for name, pts in runs:
        per_epoch = "; ".join(f"{p['epochs_seen']:g}: {p['mean_f1']:.3f} / {p['exact_match']:.3f}" for p in pts)
        last = pts[-1]
        lo, hi = last["mean_f1_ci95"]
        lines.append(f"| {name} | {per_epoch} | {last['mean_f1']:.3f} ({lo:.3f}-{hi:.3f}) | "
                     f"{last['exact_match']:.3f} |")
    table = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out.with_suffix(".md")) as tmp:
        Path(tmp).write_text(table, encoding="utf-8")
    series = [(name, [(p["epochs_seen"], p["mean_f1"]) for p in pts]) for name, pts in runs]
    with atomic_path(out.with_suffix(".png")) as tmp:
        render(tmp, f"{set_name} mean F1 against epochs of training", "mean F1", series, xlabel="epochs seen")
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m memroute.curve", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", nargs="?", help="the SFT run whose checkpoints are scored")
    p.add_argument("--data", help="the set scored (JSONL/Parquet)")
    p.add_argument("--data-name", default="test", help="what --data is called in the points and plots")
    p.add_argument("--compare", nargs="+", metavar="CURVE_JSON", help="tabulate and plot these curves instead")
    p.add_argument("--set", default="test", help="with --compare: the set to tabulate")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=DATA", help="another set to score")
    p.add_argument("--out", required=True, help="output path without suffix (NAME.json, NAME.png)")
    p.add_argument("--steps", help="comma-separated checkpoint steps (default: all, or --every-epoch)")
    p.add_argument("--every-epoch", action="store_true", help="the last checkpoint of each epoch")
    p.add_argument("--limit", type=int, default=None, help="score only the first N conversations of each set")
    p.add_argument("--model", default="smollm2-135m")
    args = p.parse_args(argv)
    if args.compare:
        print(compare([Path(c) for c in args.compare], Path(args.out), args.set), end="")
        return 0
    if not args.run_dir or not args.data:
        p.error("a run directory and --data are required (or --compare)")
    if any("=" not in x for x in args.extra):
        p.error("--extra takes NAME=DATA")
    datasets = [(args.data_name, args.data)] + [tuple(x.split("=", 1)) for x in args.extra]
    steps = [int(s) for s in args.steps.split(",")] if args.steps else None
    curve(Path(args.run_dir), datasets, Path(args.out), steps, args.every_epoch, args.limit, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(run_command("memroute curve", main))
