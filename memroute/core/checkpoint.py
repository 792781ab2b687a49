"""Checkpoints on disk, the part every layer shares: file hashes, the error, and which checkpoint of a run is the
latest.

An SFT run keeps its checkpoints where Ray Train puts them (`<run_dir>/train/checkpoint_*`) and Ray's own list of
the committed ones (`checkpoint_manager_snapshot.json`); `ray_latest_checkpoint` reads that list, so SFT's resume
and Serve's "newest adapter of a run dir" agree on it, and only this module knows Ray Train's file names.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from memroute.core.errors import MemrouteError

RAY_RUN_NAME = "train"  # Ray Train's folder inside an SFT run_dir (RunConfig(storage_path=run_dir, name="train"))
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's list of committed checkpoints


class CheckpointError(MemrouteError, RuntimeError):
    """A checkpoint that is missing, corrupt, or does not fit the run; the message names it."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in `chunk`-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def ray_latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The latest checkpoint Ray Train committed for `run_dir` (from its snapshot), or None if there is none."""
    exp = Path(run_dir) / RAY_RUN_NAME
    snap = exp / RAY_SNAPSHOT
    if not snap.exists():
        return None
    try:
        latest = json.loads(snap.read_text(encoding="utf-8")).get("latest_checkpoint_result")
        name = latest["checkpoint_dir_name"] if latest else None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"Ray Train's checkpoint list {snap} is corrupt ({e}); cannot tell which checkpoint "
                              f"is the latest. Resume from a given one with resume_from=<checkpoint folder> and a "
                              f"new run_dir, or delete {exp} to start over") from None
    return exp / name if name else None
