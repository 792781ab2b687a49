"""The one checkpoint format (memroute.core.checkpoint): staged writes, commit, verify, find the adapter."""

from __future__ import annotations

import json
import os

import pytest

from memroute.core.checkpoint import (CHECKPOINT_MANIFEST, CheckpointError, commit, commit_copy, find_adapter,
                                      staging_dir, verify_checkpoint, write_manifest)


def _checkpoint(tmp_path, name="ckpt", weights=b"w1"):
    tmp = staging_dir(tmp_path / name)
    (tmp / "adapter").mkdir()
    (tmp / "adapter" / "adapter_config.json").write_text("{}")
    (tmp / "adapter" / "adapter_model.safetensors").write_bytes(weights)
    write_manifest(tmp, {"format": 1, "state": {"step": 3}})
    return commit(tmp, tmp_path / name)


def test_staged_commit_verifies_and_leaves_nothing_beside(tmp_path):
    target = _checkpoint(tmp_path)
    body = verify_checkpoint(target, required=("adapter/adapter_model.safetensors",))
    assert body["state"] == {"step": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_staging_dir_is_fresh_next_to_target(tmp_path):
    first = staging_dir(tmp_path / "sub" / "x")
    (first / "stale").write_text("left by a killed writer")
    again = staging_dir(tmp_path / "sub" / "x")
    assert again == first and again.parent == tmp_path / "sub" and not any(again.iterdir())
    assert str(os.getpid()) in again.name


def test_commit_replaces_older_checkpoint(tmp_path):
    _checkpoint(tmp_path, weights=b"old")
    target = _checkpoint(tmp_path, weights=b"new")
    assert (target / "adapter" / "adapter_model.safetensors").read_bytes() == b"new"
    verify_checkpoint(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_commit_copy_copies_whole_and_replaces(tmp_path):
    src = _checkpoint(tmp_path, "src", weights=b"a")
    dest = tmp_path / "out" / "adapter"
    dest.mkdir(parents=True)
    (dest / "old_file").write_text("from before")
    commit_copy(src, dest)
    verify_checkpoint(dest)
    assert not (dest / "old_file").exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["adapter"]


@pytest.mark.parametrize("damage", ["flip", "extra", "missing", "manifest"])
def test_verify_names_the_damage(tmp_path, damage):
    target = _checkpoint(tmp_path)
    weights = target / "adapter" / "adapter_model.safetensors"
    if damage == "flip":
        weights.write_bytes(b"w2")
    elif damage == "extra":
        (target / "stray.bin").write_bytes(b"x")
    elif damage == "missing":
        weights.unlink()
    else:
        (target / CHECKPOINT_MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError) as err:
        verify_checkpoint(target)
    expected = {"flip": "sha256 differs", "extra": "stray.bin: not in the manifest",
                "missing": "adapter_model.safetensors: missing", "manifest": "unreadable manifest"}[damage]
    assert expected in str(err.value)


def test_required_file_not_listed(tmp_path):
    target = _checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not list optim.pt"):
        verify_checkpoint(target, required=("optim.pt",))


def test_find_adapter_run_dir_and_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert find_adapter(run) is None
    rl = _checkpoint(run, "checkpoint")  # an RL run's one checkpoint
    assert find_adapter(run) == rl / "adapter"
    assert find_adapter(rl / "adapter") == rl / "adapter"
    exported = run / "adapter"
    exported.mkdir()
    (exported / "adapter_config.json").write_text(json.dumps({}))
    os.utime(exported / "adapter_config.json", (2e9, 2e9))  # newer than the checkpoint's
    assert find_adapter(run) == exported
