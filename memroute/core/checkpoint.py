"""The one on-disk checkpoint format, for every folder memroute writes and later trusts: SFT and RL checkpoints,
provisioned model folders, and the adapters Serve loads from a run.

A checkpoint is a folder plus, written last, a JSON manifest: the caller's fields (step, version, source, ...) and
the sha256 of every other file in the folder. `write_manifest` hashes and fsyncs the files and writes the manifest;
`commit` renames the finished temp folder into place, so a reader sees a complete checkpoint or none;
`verify_checkpoint` checks a folder against its manifest (exactly the listed files, each with its hash) and
raises `CheckpointError` naming the problem. Run checkpoints use `memroute_checkpoint.json`; model folders keep
their historical `memroute_manifest.json` name, in the same format.

Where a run's checkpoints are: SFT keeps them where Ray Train puts them (`<run_dir>/train/checkpoint_*`, with Ray's
list of committed ones in `checkpoint_manager_snapshot.json`); RL keeps one, `<run_dir>/checkpoint/`, replaced at
every save. `latest_checkpoint` knows both, and `find_adapter` turns a run dir into the adapter to load, so only
this module knows Ray Train's file names.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from data.atomic import replace_dir
from memroute.core.errors import MemrouteError

CHECKPOINT_MANIFEST = "memroute_checkpoint.json"  # SFT and RL checkpoints
MODEL_MANIFEST = "memroute_manifest.json"  # provisioned model folders (memroute/core/models.py)
ADAPTER = "adapter"  # the peft adapter folder inside a checkpoint, and a finished run's exported adapter
RL_CHECKPOINT = "checkpoint"  # the RL loop's checkpoint folder inside its run_dir
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


def folder_files(folder: str | os.PathLike, manifest: str = CHECKPOINT_MANIFEST) -> list[str]:
    """Relative POSIX paths of every file under `folder`, its manifest excluded, sorted."""
    folder = Path(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.relative_to(folder).as_posix() != manifest)


def write_manifest(folder: str | os.PathLike, fields: dict[str, Any], manifest: str = CHECKPOINT_MANIFEST) -> dict:
    """Hash (and fsync) every file of `folder`, then write the manifest: `fields`, `created` and `files`."""
    folder = Path(folder)
    umask = os.umask(0)
    os.umask(umask)
    files = {}
    for rel in folder_files(folder, manifest):
        p = folder / rel
        p.chmod(0o666 & ~umask)  # some writers (safetensors) create 0600 files
        files[rel] = sha256_file(p)
        with open(p, "rb") as f:  # durable before the rename publishes the folder
            os.fsync(f.fileno())
    body = {**fields, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files}
    with open(folder / manifest, "w", encoding="utf-8") as f:
        f.write(json.dumps(body, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return body


def staging_dir(target: str | os.PathLike) -> Path:
    """A fresh, empty folder next to `target` (same filesystem, so `commit` is a rename) to write a checkpoint
    into; one left by a killed writer with the same pid is cleared first."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Publish a finished checkpoint folder: rename `tmp` to `target`, replacing an older one."""
    replace_dir(Path(tmp), Path(target))
    return Path(target)


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flush every file under `folder` to disk (before a rename publishes it)."""
    for p in Path(folder).rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def commit_copy(src: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy the folder `src` to `target` as one step: staged beside it, flushed, then committed (replacing an
    older `target`), so a reader sees the old folder or the whole new one."""
    tmp = staging_dir(target)
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        fsync_tree(tmp)
        return commit(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_manifest(folder: str | os.PathLike, manifest: str = CHECKPOINT_MANIFEST) -> dict:
    """The folder's parsed manifest (unverified); `CheckpointError` if it has none or it is unreadable."""
    path = Path(folder) / manifest
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(body.get("files"), dict) or not body["files"]:
            raise ValueError("'files' is empty or not a mapping")
        return body
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {manifest} (an incomplete checkpoint, or not one of memroute's)") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: unreadable manifest ({e})") from None


def manifest_problems(folder: str | os.PathLike, manifest: str = CHECKPOINT_MANIFEST) -> list[str]:
    """What is wrong with `folder` against its manifest (empty: it verifies). It must hold exactly the listed
    files, each with its recorded sha256."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder}: not a directory"]
    try:
        expected = read_manifest(folder, manifest)["files"]
    except CheckpointError as e:
        return [str(e)]
    problems = []
    present = set(folder_files(folder, manifest))
    for rel, digest in expected.items():
        if rel not in present:
            problems.append(f"{rel}: missing")
            continue
        try:
            if sha256_file(folder / rel) != digest:
                problems.append(f"{rel}: sha256 differs from the manifest")
        except OSError as e:
            problems.append(f"{rel}: unreadable ({e})")
    problems.extend(f"{rel}: not in the manifest" for rel in sorted(present - set(expected)))
    return problems


def verify_checkpoint(folder: str | os.PathLike, required: tuple[str, ...] = (),
                      manifest: str = CHECKPOINT_MANIFEST) -> dict:
    """The checkpoint's manifest after checking the folder against it and that it lists `required` files;
    `CheckpointError` naming the checkpoint and the problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder} does not exist (or is not a folder)")
    problems = manifest_problems(folder, manifest)
    if problems:
        raise CheckpointError(f"checkpoint {folder} is corrupt or incomplete: {'; '.join(problems[:5])}")
    body = read_manifest(folder, manifest)
    missing = [rel for rel in required if rel not in body["files"]]
    if missing:
        raise CheckpointError(f"checkpoint {folder} is corrupt: its manifest does not list {', '.join(missing)}")
    return body


def ray_latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The latest checkpoint Ray Train committed for an SFT `run_dir` (from its snapshot), or None."""
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


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """A run's latest checkpoint folder: the RL loop's `<run_dir>/checkpoint` (once its manifest is written), else
    Ray Train's latest committed one of an SFT run; None if the run has none yet."""
    rl = Path(run_dir) / RL_CHECKPOINT
    if (rl / CHECKPOINT_MANIFEST).exists():
        return rl
    return ray_latest_checkpoint(run_dir)


def find_adapter(path: str | os.PathLike) -> Path | None:
    """The adapter to load from `path`: `path` itself if it is a peft adapter folder (adapter_config.json), else
    the newest of a run dir's exported `adapter/` and its latest checkpoint's adapter; None if there is none."""
    path = Path(path)
    if (path / "adapter_config.json").exists():
        return path
    candidates = [path / ADAPTER]
    latest = latest_checkpoint(path)
    if latest is not None:
        candidates.append(latest / ADAPTER)
    found = [c for c in candidates if (c / "adapter_config.json").exists()]
    return max(found, key=lambda c: (c / "adapter_config.json").stat().st_mtime) if found else None
