"""Coverage of a dataset per label, industry and length bucket, against the targets in the config.

Written as coverage.json (machine-readable: counts, targets, shortfalls) and coverage.md (a table per
dimension). Industries come from each row's metadata["industry"] ("unknown" when absent); every industry the
config plans for is listed even at zero, so a gap shows.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

from data.atomic import write_json_atomic, write_text_atomic
from data.schema import Example
from data.taxonomy import LABELS
from data.teacher.config import TeacherConfig


def length_bucket(turns: int, bounds: Sequence[int]) -> str:
    low = 1
    for high in bounds:
        if turns <= high:
            return f"{low}-{high} turns"
        low = high + 1
    return f"{low}+ turns"


def _dimension(counts: Counter, keys: Sequence[str], target: int) -> dict:
    rows = {key: {"count": counts.get(key, 0), "target": target, "short_by": max(0, target - counts.get(key, 0))}
            for key in keys}
    return {"rows": rows, "met": all(r["short_by"] == 0 for r in rows.values())}


def coverage_report(examples: Sequence[Example], cfg: TeacherConfig) -> dict:
    t = cfg.coverage
    labels = Counter(label for ex in examples for label in ex.categories)
    industries = Counter(str(ex.metadata.get("industry") or "unknown") for ex in examples)
    lengths = Counter(length_bucket(len(ex.conversation), t.length_buckets) for ex in examples)
    industry_keys = list(cfg.generate.industries) + sorted(set(industries) - set(cfg.generate.industries))
    bucket_keys = [length_bucket(b, t.length_buckets) for b in t.length_buckets]
    bucket_keys.append(length_bucket(t.length_buckets[-1] + 1 if t.length_buckets else 1, t.length_buckets))
    report = {
        "rows": len(examples),
        "label": _dimension(labels, list(LABELS), t.per_label),
        "industry": _dimension(industries, industry_keys, t.per_industry),
        "length": _dimension(lengths, bucket_keys, t.per_length_bucket),
    }
    report["all_met"] = all(report[d]["met"] for d in ("label", "industry", "length"))
    return report


def coverage_markdown(report: dict, title: str = "Coverage") -> str:
    lines = [f"# {title}", "", f"{report['rows']} rows; all targets met: {'yes' if report['all_met'] else 'no'}"]
    for dim in ("label", "industry", "length"):
        lines += ["", f"## per {dim} ({'met' if report[dim]['met'] else 'NOT met'})", "",
                  f"| {dim} | count | target | short by |", "|---|---|---|---|"]
        lines += [f"| {key} | {r['count']} | {r['target']} | {r['short_by'] or ''} |"
                  for key, r in report[dim]["rows"].items()]
    return "\n".join(lines) + "\n"


def write_coverage(examples: Sequence[Example], cfg: TeacherConfig, out_dir: str | Path, title: str = "Coverage"
                   ) -> dict:
    report = coverage_report(examples, cfg)
    write_json_atomic(Path(out_dir) / "coverage.json", report)
    write_text_atomic(Path(out_dir) / "coverage.md", coverage_markdown(report, title))
    return report
