"""memroute.curve: which checkpoints a learning curve scores, and its plot (the scoring itself is memroute eval,
tested on its own)."""

import json
from pathlib import Path

import pytest

from data.embedded import TRAIN_PATH
from memroute.curve import choose, compare, plot


def _run(tmp_path: Path, steps) -> Path:
    run = tmp_path / "run"
    for s in steps:
        folder = run / "train" / f"checkpoint_{s:06d}"
        folder.mkdir(parents=True)
        (folder / "memroute_checkpoint.json").write_text(json.dumps({"global_step": s}))
    (run / "train" / "checkpoint_000099").mkdir()  # no manifest: never committed, never scored
    (run / "config.yaml").write_text(f"train_data: {TRAIN_PATH}\nbatch_size: 8\n")
    return run


def test_choose_every_epoch_all_and_given_steps(tmp_path):
    per_epoch = sum(1 for line in TRAIN_PATH.read_text().splitlines() if line.strip()) // 8  # 34
    run = _run(tmp_path, [25, 34, 50, 68, 75])
    assert [s for s, _ in choose(run, None, True)] == [34, 68, 75]
    assert per_epoch == 34
    assert [s for s, _ in choose(run, None, False)] == [25, 34, 50, 68, 75]
    assert [s for s, _ in choose(run, [50], False)] == [50]
    with pytest.raises(FileNotFoundError, match="99"):
        choose(run, [99], False)


def test_plot_writes_a_png(tmp_path):
    points = [{"set": "test", "epochs_seen": e, "mean_f1": f, "exact_match": f / 2} for e, f in ((1, .3), (2, .5))]
    plot({"points": points}, tmp_path / "c.png", "run")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _curve_json(path: Path, f1s) -> Path:
    points = [{"set": "dev", "step": 50 * (i + 1), "epochs_seen": i + 1, "mean_f1": f, "exact_match": f / 2,
               "mean_f1_ci95": [f - .1, f + .1]} for i, f in enumerate(f1s)]
    path.write_text(json.dumps({"points": points}))
    return path


def test_compare_tabulates_each_run_per_epoch_and_plots(tmp_path):
    a = _curve_json(tmp_path / "lr1e-3.json", [.3, .5, .6])
    b = _curve_json(tmp_path / "lr2e-3.json", [.4, .45])
    table = compare([a, b], tmp_path / "sweep", "dev")
    rows = table.splitlines()
    assert rows[2] == "| lr1e-3 | 1: 0.300 / 0.150; 2: 0.500 / 0.250; 3: 0.600 / 0.300 | 0.600 (0.500-0.700) | 0.300 |"
    assert rows[3].startswith("| lr2e-3 | 1: 0.400 / 0.200; 2: 0.450 / 0.225 | 0.450 (0.350-0.550)")
    assert (tmp_path / "sweep.md").read_text() == table
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileNotFoundError, match="'test'"):
        compare([a], tmp_path / "other", "test")


def test_compare_names_a_missing_curve(tmp_path):
    with pytest.raises(FileNotFoundError, match="learning curve not found: .*nope.json"):
        compare([tmp_path / "nope.json"], tmp_path / "sweep", "dev")
