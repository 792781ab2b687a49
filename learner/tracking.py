"""Per-run observability shared by SFT and RL: metrics.jsonl, TensorBoard, Ray metrics and a progress bar.

The metrics file has one JSON row per optimizer step. A resumed run first truncates it to the checkpoint's step
(`truncate_metrics`), so the file never holds a step twice. Every numeric figure also goes to TensorBoard
(`<run_dir>/tb`) and to a `ray.util.metrics` Gauge named `memroute_<prefix>_<key>`, which the Ray dashboard's
metrics view shows.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

from data.atomic import write_jsonl_atomic

log = logging.getLogger(__name__)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The rows of a metrics.jsonl (a torn last line, from a kill, is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def truncate_metrics(path: str | os.PathLike, last_step: int) -> None:
    """Keep the rows up to `last_step` (the step of the checkpoint a run resumes from)."""
    path = Path(path)
    if path.exists():
        write_jsonl_atomic(path, [r for r in read_metrics(path) if r.get("step", 0) <= last_step])


class RunTracker:
    """Writes one row per step to every sink. `keys` are the figures sent to TensorBoard and Ray gauges."""

    def __init__(self, run_dir: str | os.PathLike, prefix: str, keys: Iterable[str], start_step: int = 0,
                 total_steps: int | None = None, bar: str | None = "tqdm", log_every: int = 1):
        """`bar`: "tqdm" (a driver process), "ray" (inside a Ray actor or Train worker: Ray's tqdm, which the
        driver's console shows without garbling) or None. TensorBoard and gauges take every `log_every`-th
        step; the metrics file takes every step."""
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir, self.prefix, self.keys, self.log_every = Path(run_dir), prefix, list(keys), max(log_every, 1)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        truncate_metrics(self.run_dir / "metrics.jsonl", start_step)
        self.metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")
        self.tb = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=start_step + 1)
        self.tags = {"run": self.run_dir.name}
        self.gauges = {}
        try:
            from ray.util.metrics import Gauge

            self.gauges = {k: Gauge(f"memroute_{prefix}_{k}", description=f"{prefix} {k.replace('_', ' ')}",
                                    tag_keys=("run",)) for k in self.keys}
        except Exception as e:  # noqa: BLE001 - metrics are best effort (no Ray, or no metrics agent)
            log.warning("Ray metrics gauges unavailable: %s", e)
        self.bar = None
        if bar == "tqdm":
            from tqdm import tqdm

            self.bar = tqdm(desc=prefix, total=total_steps, initial=start_step, unit="step")
        elif bar == "ray":
            from ray.experimental.tqdm_ray import tqdm

            self.bar = tqdm(desc=f"{prefix} {self.run_dir.name}", total=total_steps, unit="step")
            self.bar.update(start_step)

    def step(self, row: dict) -> None:
        self.metrics.write(json.dumps(row) + "\n")
        self.metrics.flush()
        step = row["step"]
        for key in self.keys if step % self.log_every == 0 else ():
            value = row.get(key)
            if isinstance(value, (int, float)):
                self.tb.add_scalar(f"{self.prefix}/{key}", value, step)
                if key in self.gauges:
                    self.gauges[key].set(float(value), tags=self.tags)
        if self.bar is not None:
            shown = " ".join(f"{k} {row[k]:.4g}" for k in self.keys[:3] if isinstance(row.get(k), (int, float)))
            self.bar.set_description(f"{self.prefix} {shown}")  # Ray's tqdm has no set_postfix
            self.bar.update(1)

    def sync(self) -> None:
        self.metrics.flush()
        os.fsync(self.metrics.fileno())
        self.tb.flush()

    def close(self) -> None:
        self.sync()
        self.metrics.close()
        self.tb.close()
        if self.bar is not None:
            self.bar.close()
