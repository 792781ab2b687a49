"""`memroute plot`: PNGs from a synthetic metrics.jsonl (RL and SFT), written atomically into RUN_DIR/plots/."""

import json
import math

import pytest
from PIL import Image

from memroute.plot import PlotError, ema, main, plot_run


def write_rows(run, rows, torn_tail=False):
    run.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (run / "metrics.jsonl").write_text(text + ('{"step": 99, "rew' if torn_tail else ""))


def rl_rows(n=12):
    return [{"step": s, "reward": -1 + s / n, "f1": s / (2 * n), "kl": 0.01 * s, "tokens_per_s": 100 + s,
             "loss": 1 / s, "parse_failure_rate": 1 - s / n, "step_seconds": 2.0, "rollout_seconds": 1.5,
             "sample_ids": ["a"], **({"eval_mean_f1": s / n} if s % 4 == 0 else {})} for s in range(1, n + 1)]


def test_rl_run_gets_reward_f1_kl_and_throughput_pngs(tmp_path):
    run = tmp_path / "rl"
    write_rows(run, rl_rows(), torn_tail=True)  # a killed run's torn last line is skipped, not an error
    written = plot_run(run)
    names = {p.name for p in written}
    assert {"reward.png", "f1.png", "kl.png", "throughput.png", "summary.png"} <= names
    for path in written:
        assert path.parent == run / "plots"
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size[0] >= 700
            # something was drawn in colour (the series), not only black axes on white
            colors = img.convert("RGB").getcolors(maxcolors=1 << 20)
            assert any(r != g or g != b for _, (r, g, b) in colors)
    assert not [p for p in (run / "plots").iterdir() if p.name.startswith(".")]  # no temp files left behind
    first = (run / "plots" / "reward.png").stat().st_mtime_ns
    plot_run(run)  # re-plotting a growing run replaces the files
    assert (run / "plots" / "reward.png").stat().st_mtime_ns >= first


def test_sft_run_gets_loss_and_no_rl_figures(tmp_path):
    run = tmp_path / "sft"
    write_rows(run, [{"step": s, "loss": 2 / s, "lr": 1e-4, "grad_norm": 1.0, "tokens_per_s": 90.0}
                     for s in range(1, 6)])
    names = {p.name for p in plot_run(run)}
    assert {"loss.png", "throughput.png", "summary.png"} <= names and "reward.png" not in names


def test_errors_name_the_problem(tmp_path, capsys):
    with pytest.raises(PlotError, match="no metrics.jsonl"):
        plot_run(tmp_path)
    write_rows(tmp_path / "odd", [{"step": 1, "something": 3}])
    with pytest.raises(PlotError, match="neither `reward`"):
        plot_run(tmp_path / "odd")
    from memroute.core.errors import run_command

    assert run_command("memroute plot", main, [str(tmp_path / "missing")]) == 2
    assert "memroute plot: error: no metrics.jsonl" in capsys.readouterr().err


def test_smoothing_is_a_bias_corrected_moving_average():
    assert ema([5.0, 5.0, 5.0]) == pytest.approx([5.0, 5.0, 5.0])  # no pull towards zero at the start
    noisy = [1.0 + (-1) ** i for i in range(200)]  # 2, 0, 2, 0, ...
    smoothed = ema(noisy)
    assert max(smoothed[50:]) - min(smoothed[50:]) < 0.25 and smoothed[-1] == pytest.approx(1.0, abs=0.15)


def test_loss_figure_shows_raw_and_smoothed(tmp_path):
    import matplotlib.pyplot as plt

    from memroute import plot

    run = tmp_path / "sft"
    write_rows(run, [{"step": s, "loss": 1 / s + (0.3 if s % 2 else 0), "lr": 1e-4 * s} for s in range(1, 60)])
    drawn = []
    real = plot._draw

    def spy(ax, *args, **kwargs):
        real(ax, *args, **kwargs)
        drawn.append([(line.get_label(), line.get_alpha()) for line in ax.get_lines()])
    plot._draw = spy
    try:
        plot_run(run)
    finally:
        plot._draw = real
    loss_lines = drawn[0]
    assert [a for _, a in loss_lines] == [0.25, None] and loss_lines[1][0] == "train loss (smoothed)"
    assert not plt.get_fignums()  # every figure closed: a long run re-plotting does not leak memory
