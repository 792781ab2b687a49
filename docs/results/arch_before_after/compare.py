"""Compare two trees' tiny runs (run.sh): every metrics file, timing fields dropped; prints the differences as
JSON and exits 1 if there are any."""

from __future__ import annotations

import json
import sys
from pathlib import Path

FILES = ["qs/sft/metrics.jsonl", "qs/rl/metrics.jsonl", "qs/summary.json", "rl/metrics.jsonl",
         "rl/eval_metrics.json"]
TIMING = ("time", "elapsed", "_s", "per_s", "seconds", "wall", "created", "tokens_per_s", "rss")


def timeless(obj):
    if isinstance(obj, dict):
        return {k: timeless(v) for k, v in obj.items() if not any(t in k for t in TIMING)}
    if isinstance(obj, list):
        return [timeless(v) for v in obj]
    return round(obj, 6) if isinstance(obj, float) else obj


def load(path: Path):
    text = path.read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else json.loads(text)
    return timeless(rows)


def main(base: str, new: str) -> int:
    report, diffs = {}, 0
    for rel in FILES:
        a, b = Path(base) / rel, Path(new) / rel
        if not a.exists() or not b.exists():
            report[rel] = {"missing": [str(p) for p in (a, b) if not p.exists()]}
            diffs += 1
            continue
        left, right = load(a), load(b)
        same = left == right
        report[rel] = {"same": same, "rows": len(left) if isinstance(left, list) else 1}
        if not same:
            diffs += 1
            report[rel]["base"], report[rel]["new"] = left, right
    print(json.dumps(report, indent=2))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
