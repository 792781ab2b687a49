"""`memroute plot RUN_DIR`: PNG plots of a run's metrics.jsonl, one per figure, into RUN_DIR/plots/.

    memroute plot runs/rl-cpu            # reward.png f1.png kl.png throughput.png ... + summary.png
    memroute plot runs/sft-cpu           # loss.png throughput.png lr.png grad_norm.png + summary.png

The kind of run is read from its rows: RL rows carry `reward`, SFT rows carry `loss` and `lr` without it. Each
PNG is written atomically (temp file + rename), so a dashboard or README that shows it never sees half a file,
and re-running on a growing run simply replaces them.

Rendering is matplotlib's (Agg backend, no display). Noisy per-step series (the losses) are drawn faint with a
bias-corrected moving average on top, as TensorBoard smooths them.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from data.atomic import atomic_path
from memroute.core.errors import InputError, run_command
from learner.tracking import read_metrics


@dataclass(frozen=True)
class Figure:
    name: str  # the PNG's file name (without .png)
    title: str
    series: tuple[tuple[str, str], ...]  # (metrics.jsonl key, legend label)
    ylabel: str = ""
    smooth: bool = False  # noisy per-step values: the raw series faint under a moving average


RL_FIGURES = (
    Figure("reward", "mean reward per step", (("reward", "reward (all samples)"),), "reward"),
    Figure("f1", "F1 per step", (("f1", "sampled F1"), ("eval_mean_f1", "held-out greedy mean F1")), "F1"),
    Figure("kl", "KL to the reference per step", (("kl", "KL"),), "KL"),
    Figure("throughput", "learner throughput per step", (("tokens_per_s", "tokens/s"),), "tokens / s"),
    Figure("loss", "policy loss per step", (("loss", "loss"),), "loss", smooth=True),
    Figure("parse_failures", "parse failure rate per step", (("parse_failure_rate", "parse failures"),), "share"),
    Figure("step_time", "seconds per step", (("step_seconds", "step"), ("rollout_seconds", "rollout"),
                                             ("update_seconds", "update"), ("push_seconds", "push")), "s"),
)
SFT_FIGURES = (
    Figure("loss", "SFT loss per step", (("loss", "train loss"),), "loss", smooth=True),
    Figure("throughput", "SFT throughput per step", (("tokens_per_s", "tokens/s"),), "tokens / s", smooth=True),
    Figure("lr", "learning rate per step", (("lr", "lr"),), "lr"),
    Figure("grad_norm", "gradient norm per step", (("grad_norm", "grad norm"),), "norm", smooth=True),
)


class PlotError(InputError):
    pass


def run_kind(rows: list[dict]) -> str:
    if any("reward" in r for r in rows):
        return "rl"
    if any("loss" in r and "lr" in r for r in rows):
        return "sft"
    raise PlotError("metrics rows carry neither `reward` (RL) nor `loss` and `lr` (SFT)")


def series(rows: list[dict], key: str) -> list[tuple[float, float]]:
    """(step, value) for every row holding a finite number under `key` (eval figures exist on a few steps)."""
    out = []
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and "step" in r:
            out.append((float(r["step"]), float(v)))
    return out


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write the run's PNGs (figures with no data are skipped) and a summary grid; returns the paths written."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        raise PlotError(f"no metrics.jsonl in {run_dir} (is it a memroute run directory?)")
    rows = read_metrics(metrics)
    if not rows:
        raise PlotError(f"{metrics} holds no complete row yet")
    figures = RL_FIGURES if run_kind(rows) == "rl" else SFT_FIGURES
    out_dir = Path(out_dir) if out_dir else run_dir / "plots"
    written, panels = [], []
    for fig in figures:
        data = [(label, pts) for key, label in fig.series if (pts := series(rows, key))]
        if not data:
            continue
        panels.append((fig, data))
        path = out_dir / f"{fig.name}.png"
        with atomic_path(path) as tmp:
            render(tmp, f"{fig.title} ({run_dir.name})", fig.ylabel, data, smooth=fig.smooth)
        written.append(path)
    if panels:
        path = out_dir / "summary.png"
        with atomic_path(path) as tmp:
            _summary(tmp, panels, run_dir.name)
        written.append(path)
    return written


# --- rendering (matplotlib, Agg: no display needed) ----------------------------------------------------------


def ema(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing): the first points are not
    pulled towards zero."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw(ax, title: str, ylabel: str, data, xlabel: str = "step", smooth: bool = False) -> None:
    """One chart on a matplotlib axis. `smooth`: each series drawn faint, its moving average solid on top."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    for i, (label, pts) in enumerate(data):
        xs, ys = [x for x, _ in pts], [y for _, y in pts]
        color = f"C{i}"
        if smooth and len(pts) > 10:
            ax.plot(xs, ys, color=color, alpha=0.25, linewidth=1)
            ax.plot(xs, ema(ys), color=color, linewidth=2, label=f"{label} (smoothed)")
        else:
            ax.plot(xs, ys, color=color, linewidth=2, marker="o" if len(pts) <= 60 else None, markersize=4,
                    label=label)
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if xlabel == "step":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    formatter = ScalarFormatter(useMathText=True)  # one format per axis: 1e-4 steps share an x10^-4 offset
    formatter.set_powerlimits((-3, 4))
    ax.yaxis.set_major_formatter(formatter)
    ax.legend(loc="best", fontsize=9, framealpha=0.85)


def render(path: Path, title: str, ylabel: str, data, xlabel: str = "step", smooth: bool = False) -> None:
    """One chart as a PNG at `path`; `data` is [(legend label, [(x, y), ...]), ...]."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=100, layout="constrained")
    _draw(ax, title, ylabel, data, xlabel, smooth)
    fig.savefig(path, format="png")
    plt.close(fig)


def _summary(path: Path, panels, run_name: str) -> None:
    """All figures in one PNG, two per row."""
    plt = _pyplot()
    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 3.8 * rows), dpi=100, layout="constrained",
                             squeeze=False)
    for ax, (figure, data) in zip(axes.flat, panels):
        _draw(ax, f"{figure.title} ({run_name})", figure.ylabel, data, smooth=figure.smooth)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.savefig(path, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="memroute plot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory holding metrics.jsonl (SFT or RL)")
    p.add_argument("--out", help="where the PNGs go (default: RUN_DIR/plots)")
    args = p.parse_args(argv)
    written = plot_run(args.run_dir, args.out)  # a PlotError goes to the error boundary: one line, exit 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_command("memroute plot", main))
