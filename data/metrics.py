"""Evaluation metrics for routing predictions, with bootstrap intervals.

Predictions are JSONL rows `{"id", "predicted": [labels], "raw": text, "model": name}`; they are joined to the
gold examples by id. An empty `predicted` list means the answer did not parse (it scores reward -1).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from data.atomic import write_jsonl_atomic
from memroute.core.errors import InputError, InputNotFoundError
from data.reward import reward_from_labels, set_f1
from data.schema import Example
from data.taxonomy import LABELS, NONE, clean_label_set, majority_horizon, set_scope


@dataclass
class Prediction:
    id: str
    predicted: list[str]
    raw: str = ""
    model: str = ""


class PredictionError(InputError):
    """A predictions file that cannot be read or scored; the message names the file and line."""


def write_predictions(path: str | os.PathLike, predictions: Sequence[Prediction]) -> None:
    write_jsonl_atomic(path, (asdict(p) for p in predictions))


def read_predictions(path: str | os.PathLike) -> list[Prediction]:
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"predictions file not found: {path}")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pred = Prediction(id=row["id"], predicted=clean_label_set(row["predicted"]),
                              raw=row.get("raw", ""), model=row.get("model", ""))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise PredictionError(f"{path}:{i}: bad prediction row: {e}") from None
        out.append(pred)
    return out


def align(predictions: Sequence[Prediction], examples: Sequence[Example]) -> list[tuple[list[str], list[str]]]:
    """(predicted, gold) pairs in example order; every example needs exactly one prediction."""
    by_id: dict[str, Prediction] = {}
    for p in predictions:
        if p.id in by_id:
            raise PredictionError(f"duplicate prediction for id {p.id!r}")
        by_id[p.id] = p
    missing = [ex.id for ex in examples if ex.id not in by_id]
    if missing:
        raise PredictionError(f"{len(missing)} examples have no prediction, e.g. {missing[:3]}")
    return [(by_id[ex.id].predicted, ex.categories) for ex in examples]


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def row_scores(pairs: Sequence[tuple[list[str], list[str]]]) -> list[float]:
    return [set_f1(pred, gold) for pred, gold in pairs]


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of `values`."""
    if not values:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    return means[int(n_boot * alpha / 2)], means[min(n_boot - 1, int(n_boot * (1 - alpha / 2)))]


def per_source(pairs: Sequence[tuple[list[str], list[str]]], sources: Sequence[str]) -> dict:
    """Mean F1, exact match and labels per answer for each source of the examples (a corpus made of parts, as
    the reference one is, can be won on one part and lost on another)."""
    if len(sources) != len(pairs):
        raise InputError(f"{len(sources)} sources for {len(pairs)} predictions")
    groups: dict[str, list[tuple[list[str], list[str]]]] = {}
    for source, pair in zip(sources, pairs):
        groups.setdefault(source, []).append(pair)
    return {source: {"n": len(group),
                     "mean_f1": sum(row_scores(group)) / len(group),
                     "exact_match": sum(set(p) == set(g) for p, g in group) / len(group),
                     "mean_labels_predicted": sum(len(p) for p, _ in group) / len(group),
                     "mean_labels_gold": sum(len(g) for _, g in group) / len(group)}
            for source, group in sorted(groups.items())}


def compute_metrics(pairs: Sequence[tuple[list[str], list[str]]], n_boot: int = 1000, seed: int = 0,
                    sources: Sequence[str] | None = None) -> dict:
    """All routing metrics for (predicted, gold) label-list pairs; with the examples' `sources`, also the
    headline figures per source where there is more than one."""
    n = len(pairs)
    if n == 0:
        raise InputError("no predictions to score")
    counts = {label: {"tp": 0, "fp": 0, "fn": 0} for label in LABELS}
    exact = any_match = horizon_agree = scope_agree = parse_fail = n_pred = 0
    rewards = []
    for pred, gold in pairs:
        pred_set, gold_set = set(pred), set(gold)
        exact += pred_set == gold_set
        any_match += bool(pred_set & gold_set)
        horizon_agree += bool(pred) and majority_horizon(pred) == majority_horizon(gold)
        scope_agree += bool(pred) and set_scope(pred) == set_scope(gold)
        parse_fail += not pred
        n_pred += len(pred)
        rewards.append(reward_from_labels(pred, gold, parsed=bool(pred)).total)
        for label in pred_set | gold_set:
            key = "tp" if label in pred_set and label in gold_set else ("fp" if label in pred_set else "fn")
            counts[label][key] += 1
    per_category = {}
    for label, c in counts.items():
        p, r, f = _prf(c["tp"], c["fp"], c["fn"])
        per_category[label] = {"precision": p, "recall": r, "f1": f, "support": c["tp"] + c["fn"],
                               "predicted": c["tp"] + c["fp"]}
    micro = _prf(*(sum(c[k] for c in counts.values()) for k in ("tp", "fp", "fn")))
    # Macro averages over the labels that occur in the gold set or the predictions (a label absent from both
    # has no defined score and would only dilute the average).
    active = [m for m in per_category.values() if m["support"] or m["predicted"]]
    macro = [sum(m[k] for m in active) / len(active) for k in ("precision", "recall", "f1")]
    f1s = row_scores(pairs)
    lo, hi = bootstrap_ci(f1s, n_boot=n_boot, seed=seed)
    exact_lo, exact_hi = bootstrap_ci([float(set(p) == set(g)) for p, g in pairs], n_boot=n_boot, seed=seed)
    return {
        "n": n,
        "mean_f1": sum(f1s) / n,
        "mean_f1_ci95": [lo, hi],
        "exact_match": exact / n,
        "exact_match_ci95": [exact_lo, exact_hi],
        "any_match": any_match / n,
        "micro": dict(zip(("precision", "recall", "f1"), micro)),
        "macro": dict(zip(("precision", "recall", "f1"), macro)),
        "none_precision": per_category[NONE]["precision"],
        "none_recall": per_category[NONE]["recall"],
        "mean_labels_predicted": n_pred / n,
        "horizon_agreement": horizon_agree / n,
        "scope_agreement": scope_agree / n,
        "parse_failure_rate": parse_fail / n,
        "mean_reward": sum(rewards) / n,
        "per_category": per_category,
    } | ({"per_source": per_source(pairs, sources)} if sources is not None and len(set(sources)) > 1 else {})


def paired_bootstrap(pairs_a, pairs_b, n_boot: int = 1000, seed: int = 0) -> dict:
    """Compare two systems on the same examples: mean F1 difference (B - A), its 95% interval, and the share
    of resamples where B does not beat A (a one-sided p-value)."""
    if len(pairs_a) != len(pairs_b) or not pairs_a:
        raise InputError("paired bootstrap needs two non-empty prediction sets over the same examples")
    diffs = [b - a for a, b in zip(row_scores(pairs_a), row_scores(pairs_b))]
    exact = [float(set(pb) == set(gb)) - float(set(pa) == set(ga)) for (pa, ga), (pb, gb) in zip(pairs_a, pairs_b)]
    rng = random.Random(seed)
    n = len(diffs)
    boots, exact_boots = [], []
    for _ in range(n_boot):  # the same resampled rows for both figures
        rows = [rng.randrange(n) for _ in range(n)]
        boots.append(sum(diffs[i] for i in rows) / n)
        exact_boots.append(sum(exact[i] for i in rows) / n)
    boots.sort()
    exact_boots.sort()
    lo, hi = int(n_boot * 0.025), min(n_boot - 1, int(n_boot * 0.975))
    return {
        "mean_f1_a": sum(row_scores(pairs_a)) / n,
        "mean_f1_b": sum(row_scores(pairs_b)) / n,
        "delta": sum(diffs) / n,
        "delta_ci95": [boots[lo], boots[hi]],
        "p_b_not_better": sum(d <= 0 for d in boots) / n_boot,
        "exact_delta": sum(exact) / n,
        "exact_delta_ci95": [exact_boots[lo], exact_boots[hi]],
        "p_b_exact_not_better": sum(d <= 0 for d in exact_boots) / n_boot,
    }


def metrics_table(metrics: dict, title: str = "") -> str:
    """A markdown summary: headline figures, then per-category P/R/F1."""
    lo, hi = metrics["mean_f1_ci95"]
    lines = [f"## {title}" if title else "", "",
             "| metric | value |", "|---|---|",
             f"| examples | {metrics['n']} |",
             f"| mean F1 (95% CI) | {metrics['mean_f1']:.3f} ({lo:.3f}-{hi:.3f}) |",
             f"| exact match (95% CI) | {metrics['exact_match']:.3f}"
             + (" ({:.3f}-{:.3f}) |".format(*metrics["exact_match_ci95"]) if "exact_match_ci95" in metrics else " |"),
             f"| any match | {metrics['any_match']:.3f} |",
             f"| micro P / R / F1 | {metrics['micro']['precision']:.3f} / {metrics['micro']['recall']:.3f} / "
             f"{metrics['micro']['f1']:.3f} |",
             f"| macro P / R / F1 | {metrics['macro']['precision']:.3f} / {metrics['macro']['recall']:.3f} / "
             f"{metrics['macro']['f1']:.3f} |",
             f"| none precision / recall | {metrics['none_precision']:.3f} / {metrics['none_recall']:.3f} |",
             f"| mean labels predicted | {metrics['mean_labels_predicted']:.2f} |",
             f"| horizon / scope agreement | {metrics['horizon_agreement']:.3f} / {metrics['scope_agreement']:.3f} |",
             f"| parse failures | {metrics['parse_failure_rate']:.3f} |",
             f"| mean reward | {metrics['mean_reward']:.3f} |",
             "", "| category | P | R | F1 | support |", "|---|---|---|---|---|"]
    for label, m in metrics["per_category"].items():
        lines.append(f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    if metrics.get("per_source"):
        lines += ["", "| source | examples | mean F1 | exact match | labels per answer (gold) |",
                  "|---|---|---|---|---|"]
        for source, m in metrics["per_source"].items():
            lines.append(f"| {source} | {m['n']} | {m['mean_f1']:.3f} | {m['exact_match']:.3f} | "
                         f"{m['mean_labels_predicted']:.2f} ({m['mean_labels_gold']:.2f}) |")
    return "\n".join(lines).lstrip() + "\n"


def write_eval_outputs(out: str | os.PathLike, predictions: Sequence[Prediction], metrics: dict, title: str) -> None:
    """An evaluation's three files in `out`, each atomic: predictions.jsonl, metrics.json, metrics.md."""
    from data.atomic import write_json_atomic, write_text_atomic

    out = Path(out)
    write_predictions(out / "predictions.jsonl", predictions)
    write_json_atomic(out / "metrics.json", metrics)
    write_text_atomic(out / "metrics.md", metrics_table(metrics, title))


def comparison_tables(systems: Sequence[tuple[str, dict]]) -> str:
    """Markdown tables comparing systems scored on the same data: headline figures with bootstrap intervals,
    then F1 per category (the README's and the model card's results)."""
    def ci(m: dict, key: str) -> str:
        if f"{key}_ci95" not in m:  # scored before that interval was computed
            return f"{m[key]:.3f}"
        lo, hi = m[f"{key}_ci95"]
        return f"{m[key]:.3f} ({lo:.3f}-{hi:.3f})"

    lines = ["| system | mean F1 (95% CI) | exact match (95% CI) | none P / R | parse failures | mean reward |",
             "|---|---|---|---|---|---|"]
    for name, m in systems:
        lines.append(f"| {name} | {ci(m, 'mean_f1')} | {ci(m, 'exact_match')} | {m['none_precision']:.3f} / "
                     f"{m['none_recall']:.3f} | {m['parse_failure_rate']:.3f} | {m['mean_reward']:.3f} |")
    lines += ["", "| category (support) | " + " | ".join(name for name, _ in systems) + " |",
              "|---|" + "---|" * len(systems)]
    for label in LABELS:
        support = systems[0][1]["per_category"][label]["support"]
        lines.append(f"| {label} ({support}) | "
                     + " | ".join(f"{m['per_category'][label]['f1']:.3f}" for _, m in systems) + " |")
    return "\n".join(lines) + "\n"
