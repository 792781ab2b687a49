"""Resumable output: work is written in shards, each atomically, as both JSONL and Parquet.

Layout of a stage's folder (e.g. runs/teacher/generate):
    shards/part-00000.jsonl + .parquet     accepted rows (data.schema Examples)
    rejected/part-00000.jsonl + .parquet   rows that failed validation after all attempts, with the reason
    usage.json                             requests, tokens and cost, summed over every run into this folder

A shard is committed when its JSONL file exists: the Parquet twin is written first, the JSONL last, each by
temp file + rename, and a chunk's rejected part before its accepted part. After a kill at any point, `load()`
removes what an unfinished commit left (a Parquet without its JSONL, temp files) and the ids in committed
shards are the finished work: a re-run skips them, so no row is ever written twice, and loses at most the one
chunk that was in flight.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from data.atomic import atomic_path, write_json_atomic, write_jsonl_atomic
from data.schema import Example, read_examples, write_examples
from memroute.core.errors import MemrouteError

_PART = re.compile(r"^part-(\d{5})\.jsonl$")


class ShardError(MemrouteError, RuntimeError):
    """The output folder's shards do not fit this run (or each other); the message names the file."""


def _write_rejected_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
                        ("attempts", pa.list_(pa.string())), ("raw", pa.string()),
                        ("input", pa.string())])  # JSON text: a spec or a conversation, by stage
    table = pa.Table.from_pylist([{**row, "input": json.dumps(row["input"], ensure_ascii=False)} for row in rows],
                                 schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_rejected(path_stem: Path, rows: list[dict]) -> None:
    """Rejected rows as `<stem>.parquet` then `<stem>.jsonl` (the commit marker)."""
    _write_rejected_parquet(path_stem.with_suffix(".parquet"), rows)
    write_jsonl_atomic(path_stem.with_suffix(".jsonl"), rows)


def read_rejected(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ShardError(f"{path}:{i}: rejected row is not valid JSON: {e.msg}") from None
    return rows


class ShardStore:
    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.accepted_dir = self.out_dir / "shards"
        self.rejected_dir = self.out_dir / "rejected"
        self.accepted: list[Example] = []
        self.rejected: list[dict] = []
        self._next = 0

    @staticmethod
    def _committed(folder: Path, repair: bool) -> list[tuple[int, Path]]:
        if not folder.exists():
            return []
        if repair:
            for leftover in folder.glob(".*.tmp"):  # temp files of a write that a kill interrupted
                leftover.unlink(missing_ok=True)
            for parquet in folder.glob("part-*.parquet"):  # Parquet written, JSONL not: never committed
                if not parquet.with_suffix(".jsonl").exists():
                    parquet.unlink()
        return sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _PART.match(p.name)))

    def load(self, repair: bool = True) -> "ShardStore":
        """Read every committed shard; raise if an id appears twice (that would be a bug, never hidden).

        With repair (not in a dry run) it also clears what an interrupted commit left behind."""
        self.accepted, self.rejected = [], []
        seen: dict[str, Path] = {}
        indices = [-1]
        for folder, is_accepted in ((self.accepted_dir, True), (self.rejected_dir, False)):
            for index, path in self._committed(folder, repair):
                indices.append(index)
                rows = read_examples(path) if is_accepted else read_rejected(path)
                for row in rows:
                    row_id = row.id if is_accepted else row["id"]
                    if row_id in seen:
                        raise ShardError(f"id {row_id!r} is in both {seen[row_id]} and {path}")
                    seen[row_id] = path
                (self.accepted if is_accepted else self.rejected).extend(rows)
                if repair and is_accepted and not path.with_suffix(".parquet").exists():  # a deleted twin
                    write_examples(path.with_suffix(".parquet"), rows)
        self._next = max(indices) + 1
        return self

    def done_ids(self) -> set[str]:
        return {ex.id for ex in self.accepted} | {row["id"] for row in self.rejected}

    def write_shard(self, accepted: list[Example], rejected: list[dict]) -> int:
        """Commit one chunk's results as shard number N (both folders share the numbering)."""
        index = self._next
        name = f"part-{index:05d}"
        if rejected:
            write_rejected(self.rejected_dir / name, rejected)
        if accepted:
            write_examples(self.accepted_dir / f"{name}.parquet", accepted)
            write_examples(self.accepted_dir / f"{name}.jsonl", accepted)
        self.accepted.extend(accepted)
        self.rejected.extend(rejected)
        self._next += 1
        return index

    def add_usage(self, requests: int, retries: int, input_tokens: int, output_tokens: int,
                  price_in: float, price_out: float) -> dict:
        path = self.out_dir / "usage.json"
        usage = json.loads(path.read_text()) if path.exists() else {
            "requests": 0, "retries": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
        for key, value in (("requests", requests), ("retries", retries), ("input_tokens", input_tokens),
                           ("output_tokens", output_tokens)):
            usage[key] += value
        usage["cost_usd"] = round(usage["cost_usd"] + (input_tokens * price_in + output_tokens * price_out) / 1e6, 6)
        write_json_atomic(path, usage)
        return usage
