"""`memroute data`: validate, describe, convert and score datasets and prediction files."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from data.metrics import align, comparison_tables, compute_metrics, metrics_table, paired_bootstrap, read_predictions
from data.schema import ExampleError, read_examples, write_examples
from data.taxonomy import LABELS
from memroute.core.errors import InputError, InputNotFoundError, run_command


def cmd_validate(args) -> int:
    """Every bad row of every file (file:line, field, problem), then `N rows, M bad` per file; exit 1 if any."""
    bad = 0
    for path in args.files:
        if Path(path).is_file() and Path(path).stat().st_size == 0:
            print(f"FAIL {path}: the file is empty (0 bytes)")
            bad += 1
            continue
        rejects: list[ExampleError] = []
        try:
            examples = read_examples(path, rejects=rejects)
        except (ExampleError, FileNotFoundError) as e:  # the whole file: missing, or not Parquet
            print(f"FAIL {e}")
            bad += 1
            continue
        for e in rejects:
            print(f"FAIL {e}")
        rows = len(examples) + len(rejects)
        if not rows:
            print(f"FAIL {path}: no rows (only blank lines)")
            bad += 1
            continue
        bad += bool(rejects)
        print(f"{'ok  ' if not rejects else 'bad '} {path}: {rows} rows, {len(rejects)} bad")
    return 1 if bad else 0


def dataset_stats(examples) -> dict:
    n = len(examples)
    labels = Counter(label for ex in examples for label in ex.categories)
    turns = sorted(len(ex.conversation) for ex in examples)
    return {
        "rows": n,
        "multi_label_fraction": sum(len(ex.categories) > 1 for ex in examples) / n,
        "none_fraction": labels["none"] / n,
        "mean_labels": sum(len(ex.categories) for ex in examples) / n,
        "turns": {"min": turns[0], "median": turns[n // 2], "max": turns[-1]},
        "label_counts": {label: labels[label] for label in LABELS},
        "sources": dict(Counter(ex.source for ex in examples)),
    }


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def stats_markdown(stats: dict, title: str) -> str:
    """The dataset statistics as markdown: one table of the scalars, one per breakdown (turns, labels)."""
    lines = [f"## {title}", "", "| statistic | value |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in stats.items() if not isinstance(v, dict)]
    for key, table in ((k, v) for k, v in stats.items() if isinstance(v, dict)):
        lines += ["", f"| {key} | value |", "|---|---|"] + [f"| {name} | {_cell(n)} |" for name, n in table.items()]
    return "\n".join(lines)


def compare_markdown(result: dict, a: str, b: str) -> str:
    lo, hi = result["delta_ci95"]
    elo, ehi = result["exact_delta_ci95"]
    return "\n".join([
        f"## paired bootstrap: B = {b} minus A = {a}", "",
        "| metric | A | B | B - A | 95% CI | p(B not better) |", "|---|---|---|---|---|---|",
        f"| mean F1 | {result['mean_f1_a']:.3f} | {result['mean_f1_b']:.3f} | {result['delta']:+.3f} | "
        f"{lo:+.3f} .. {hi:+.3f} | {result['p_b_not_better']:.3f} |",
        f"| exact match | | | {result['exact_delta']:+.3f} | {elo:+.3f} .. {ehi:+.3f} | "
        f"{result['p_b_exact_not_better']:.3f} |",
    ] + _per_source_rows(result.get("per_source", {})))


def _per_source_rows(per_source: dict) -> list[str]:
    if not per_source:
        return []
    rows = ["", "| source | examples | mean F1 A / B | B - A (95% CI) | exact B - A (95% CI) |",
            "|---|---|---|---|---|"]
    for source, r in per_source.items():
        rows.append(f"| {source} | {r['n']} | {r['mean_f1_a']:.3f} / {r['mean_f1_b']:.3f} | {r['delta']:+.3f} "
                    "({:+.3f} .. {:+.3f}) | ".format(*r["delta_ci95"])
                    + "{:+.3f} ({:+.3f} .. {:+.3f}) |".format(r["exact_delta"], *r["exact_delta_ci95"]))
    return rows


def cmd_stats(args) -> int:
    stats = dataset_stats(read_examples(args.file))
    print(json.dumps(stats, indent=2) if args.json else stats_markdown(stats, args.file))
    return 0


def cmd_convert(args) -> int:
    examples = read_examples(args.src)
    write_examples(args.dst, examples)
    print(f"wrote {len(examples)} rows to {args.dst}")
    return 0


def split_examples(examples: list, holdout: int, seed: int) -> tuple[list, list]:
    """(kept, held out): `holdout` examples drawn by a seeded random sample, each part in the file's own order, so the
    same file, size and seed always give the same two parts."""
    import random

    if not 0 < holdout < len(examples):
        raise InputError(f"--holdout {holdout} must be between 1 and {len(examples) - 1} (the file has "
                         f"{len(examples)} rows)")
    picked = set(random.Random(seed).sample(range(len(examples)), holdout))
    return ([ex for i, ex in enumerate(examples) if i not in picked],
            [ex for i, ex in enumerate(examples) if i in picked])


def cmd_split(args) -> int:
    if Path(args.rest).resolve() == Path(args.held_out).resolve():  # refused before the input is read
        raise InputError(f"--rest and --held-out name the same file ({args.rest}): nothing was written")
    kept, held = split_examples(read_examples(args.file), args.holdout, args.seed)
    for path in (args.rest, args.held_out):
        if Path(path).exists() and not args.force:
            raise InputError(f"{path} exists: nothing was written (pass --force to replace it)")
    write_examples(args.rest, kept)
    write_examples(args.held_out, held)
    print(f"wrote {len(kept)} rows to {args.rest} and {len(held)} held-out rows to {args.held_out} (seed {args.seed})")
    return 0


def cmd_score(args) -> int:
    predictions = read_predictions(args.predictions)  # the predictions file is named first when both are missing
    examples = read_examples(args.data)
    metrics = compute_metrics(align(predictions, examples), sources=[ex.source for ex in examples])
    print(json.dumps(metrics, indent=2) if args.json else metrics_table(metrics, args.predictions))
    return 0


def cmd_compare(args) -> int:
    examples = read_examples(args.data)
    pairs_a, pairs_b = align(read_predictions(args.a), examples), align(read_predictions(args.b), examples)
    result = paired_bootstrap(pairs_a, pairs_b)
    sources = sorted({ex.source for ex in examples})
    if len(sources) > 1:  # where the difference comes from, when the set is made of parts
        result["per_source"] = {}
        for source in sources:
            rows = [i for i, ex in enumerate(examples) if ex.source == source]
            part = paired_bootstrap([pairs_a[i] for i in rows], [pairs_b[i] for i in rows])
            result["per_source"][source] = {"n": len(rows)} | part
    print(json.dumps(result, indent=2) if args.json else compare_markdown(result, args.a, args.b))
    return 0


def system_spec(spec: str) -> tuple[str, str]:
    """`NAME=metrics.json` -> (name, path); the name may hold spaces and `=` (the path is after the last one)."""
    name, sep, path = spec.rpartition("=")
    if not sep or not name:
        raise InputError(f"expected NAME=metrics.json, got {spec!r}")
    return name, path


def cmd_table(args) -> int:
    systems = []
    for name, path in map(system_spec, args.systems):
        if not Path(path).exists():
            raise InputNotFoundError(f"metrics file not found: {path}")
        try:
            metrics = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path} is not a metrics.json file (not JSON: {e})") from None
        if not isinstance(metrics, dict) or "mean_f1" not in metrics:
            raise InputError(f"{path} is not a metrics.json file (no mean_f1; write one with `memroute eval`)")
        systems.append((name, metrics))
    print(comparison_tables(systems), end="")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="memroute data", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("validate", help="check files against the schema; lists every bad row")
    s.add_argument("files", nargs="+")
    s.set_defaults(fn=cmd_validate)
    s = sub.add_parser("stats", help="label and length statistics of a dataset")
    s.add_argument("file")
    s.add_argument("--json", action="store_true", help="JSON instead of markdown tables")
    s.set_defaults(fn=cmd_stats)
    s = sub.add_parser("convert", help="convert between .jsonl and .parquet (by suffix)")
    s.add_argument("src")
    s.add_argument("dst")
    s.set_defaults(fn=cmd_convert)
    s = sub.add_parser("split", help="hold out a seeded random part of a dataset (e.g. prompts RL has not seen in SFT)")
    s.add_argument("file")
    s.add_argument("--holdout", type=int, required=True, help="how many rows to hold out")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--rest", required=True, help="where the other rows go (.jsonl or .parquet)")
    s.add_argument("--held-out", required=True, help="where the held-out rows go (.jsonl or .parquet)")
    s.add_argument("--force", action="store_true", help="replace output files that exist")
    s.set_defaults(fn=cmd_split)
    s = sub.add_parser("score", help="metrics of a predictions file against a dataset")
    s.add_argument("predictions")
    s.add_argument("--data", required=True, help="the dataset the predictions are for (JSONL or Parquet)")
    s.add_argument("--json", action="store_true", help="JSON (every metric) instead of the markdown table")
    s.set_defaults(fn=cmd_score)
    s = sub.add_parser("compare", help="paired bootstrap of two prediction files (B minus A)")
    s.add_argument("a", help="predictions.jsonl of system A (the incumbent)")
    s.add_argument("b", help="predictions.jsonl of system B (the candidate)")
    s.add_argument("--data", required=True, help="the dataset both are for (JSONL or Parquet)")
    s.add_argument("--json", action="store_true", help="JSON instead of the markdown table")
    s.set_defaults(fn=cmd_compare)
    s = sub.add_parser("table", help="markdown tables comparing metrics.json files of systems on the same data")
    s.add_argument("systems", nargs="+", metavar="NAME=metrics.json")
    s.set_defaults(fn=cmd_table)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(run_command("memroute data", main))
