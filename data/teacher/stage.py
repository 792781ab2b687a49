"""One pipeline stage (generate or label) end to end: resume, run, then merge, deduplicate and report.

The merged outputs are rebuilt from the shards after every run, finished or stopped, so they always show all
the work done so far:
    <name>.jsonl / <name>.parquet   accepted rows, in plan order, near-duplicates removed
    duplicates.jsonl                the rows removed as near-duplicates, with the row each duplicates
    rejected.jsonl                  every rejected row with its reason
    coverage.json / coverage.md     coverage of <name> against the config's targets
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from data.atomic import write_jsonl_atomic
from data.schema import write_examples
from data.teacher.client import TeacherClient
from data.teacher.config import TeacherConfig
from data.teacher.coverage import write_coverage
from data.teacher.dedup import drop_near_duplicates
from data.teacher.runner import RunSummary, Task, run_tasks
from data.teacher.shards import ShardStore


def merge_outputs(store: ShardStore, tasks: Sequence[Task], cfg: TeacherConfig, name: str) -> dict:
    order = {t.id: i for i, t in enumerate(tasks)}
    # Rows of this folder that the current plan no longer lists (a smaller n) are kept, after the plan's.
    rows = sorted(store.accepted, key=lambda ex: order.get(ex.id, len(order)))
    kept, dups = drop_near_duplicates(rows, cfg.dedup_threshold, cfg.dedup_shingle_words)
    out = store.out_dir
    write_examples(out / f"{name}.parquet", kept)
    write_examples(out / f"{name}.jsonl", kept)
    write_jsonl_atomic(out / "duplicates.jsonl", (asdict(d) for d in dups))
    write_jsonl_atomic(out / "rejected.jsonl", store.rejected)
    coverage = write_coverage(kept, cfg, out, title=f"Coverage of {out / name}.jsonl")
    return {"rows": len(kept), "duplicates": len(dups), "rejected": len(store.rejected),
            "coverage_met": coverage["all_met"]}


def run_stage(cfg: TeacherConfig, tasks: Sequence[Task], out_dir: str | Path, stage: str, name: str,
              client: TeacherClient | None = None, log=None) -> tuple[RunSummary, dict]:
    log = log or (lambda msg: print(msg, file=sys.stderr))
    store = ShardStore(out_dir).load()
    client = client or TeacherClient(cfg, log=log)
    try:
        summary = run_tasks(tasks, client, store, cfg, stage, log=log)
    finally:
        merged = merge_outputs(store, tasks, cfg, name)
    return summary, merged


def report(summary: RunSummary, merged: dict, out_dir: str | Path, name: str, budget_summary: str) -> tuple[str, int]:
    """The closing message and exit code: 0 when every item is accepted or rejected, 1 when some are pending."""
    lines = [f"{summary.accepted} accepted and {summary.rejected} rejected this run "
             f"({summary.already_done} already done, {summary.pending} pending); {budget_summary}",
             f"wrote {Path(out_dir) / name}.jsonl and .parquet: {merged['rows']} rows ({merged['duplicates']} "
             f"near-duplicates removed, {merged['rejected']} rejected in rejected.jsonl); coverage targets met: "
             f"{'yes' if merged['coverage_met'] else 'no'} (coverage.md)"]
    if summary.stopped:
        lines.append(f"stopped early: {summary.stopped}. Everything finished is kept; re-run the same command "
                     "(with a larger budget if that was the limit) to continue.")
    if summary.failed:
        lines.append(f"{summary.failed} items failed after all retries (they stay pending; a re-run retries "
                     f"them); last error: {summary.failures[-1]}")
    return "\n".join(lines), 0 if summary.complete else 1
