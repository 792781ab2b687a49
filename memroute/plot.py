"""`memroute plot RUN_DIR`: PNG plots of a run's metrics.jsonl, one per figure, into RUN_DIR/plots/.

    memroute plot runs/rl-cpu            # reward.png f1.png kl.png throughput.png ... + summary.png
    memroute plot runs/sft-cpu           # loss.png throughput.png lr.png grad_norm.png + summary.png

The kind of run is read from its rows: RL rows carry `reward`, SFT rows carry `loss` and `lr` without it. Each
PNG is written atomically (temp file + rename), so a dashboard or README that shows it never sees half a file,
and re-running on a growing run simply replaces them.

Rendering uses matplotlib when it is installed; it is not in the lock (requirements/cpu.lock), so the default is
a small line-chart renderer on Pillow (which is in the lock, via vLLM/transformers): axes, nice ticks, a grid and
one polyline per series. It draws only what these plots need.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from data.atomic import atomic_path
from learner.tracking import read_metrics


@dataclass(frozen=True)
class Figure:
    name: str  # the PNG's file name (without .png)
    title: str
    series: tuple[tuple[str, str], ...]  # (metrics.jsonl key, legend label)
    ylabel: str = ""


RL_FIGURES = (
    Figure("reward", "mean reward per step", (("reward", "reward (all samples)"),), "reward"),
    Figure("f1", "F1 per step", (("f1", "sampled F1"), ("eval_mean_f1", "held-out greedy mean F1")), "F1"),
    Figure("kl", "KL to the reference per step", (("kl", "KL"),), "KL"),
    Figure("throughput", "learner throughput per step", (("tokens_per_s", "tokens/s"),), "tokens / s"),
    Figure("loss", "policy loss per step", (("loss", "loss"),), "loss"),
    Figure("parse_failures", "parse failure rate per step", (("parse_failure_rate", "parse failures"),), "share"),
    Figure("step_time", "seconds per step", (("step_seconds", "step"), ("rollout_seconds", "rollout"),
                                             ("update_seconds", "update"), ("push_seconds", "push")), "s"),
)
SFT_FIGURES = (
    Figure("loss", "SFT loss per step", (("loss", "train loss"),), "loss"),
    Figure("throughput", "SFT throughput per step", (("tokens_per_s", "tokens/s"),), "tokens / s"),
    Figure("lr", "learning rate per step", (("lr", "lr"),), "lr"),
    Figure("grad_norm", "gradient norm per step", (("grad_norm", "grad norm"),), "norm"),
)
COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))


class PlotError(ValueError):
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
    render = _matplotlib_renderer() or render_pil
    written, panels = [], []
    for fig in figures:
        data = [(label, pts) for key, label in fig.series if (pts := series(rows, key))]
        if not data:
            continue
        panels.append((fig, data))
        path = out_dir / f"{fig.name}.png"
        with atomic_path(path) as tmp:
            render(tmp, f"{fig.title} ({run_dir.name})", fig.ylabel, data)
        written.append(path)
    if panels:
        path = out_dir / "summary.png"
        with atomic_path(path) as tmp:
            _summary(tmp, panels, run_dir.name, render)
        written.append(path)
    return written


# --- rendering ----------------------------------------------------------------------------------------------


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round-numbered ticks covering [lo, hi] (1, 2, 2.5, 5 x 10^k steps)."""
    if hi <= lo:
        lo, hi = lo - 0.5 if lo == hi else hi, hi + 0.5
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(ticks[-1] + step)
    return ticks


def _fmt(v: float) -> str:
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.1e}"
    return f"{v:.4g}"


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError):
        return ImageFont.load_default()


def _draw_chart(img, box: tuple[int, int, int, int], title: str, ylabel: str, data, xlabel: str = "step") -> None:
    """One line chart inside `box` (left, top, right, bottom) of a Pillow image."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    left, top, right, bottom = box
    font, small = _font(15), _font(12)
    draw.text((left + 10, top + 6), title, fill="black", font=font)
    px0, py0, px1, py1 = left + 70, top + 46, right - 16, bottom - 46  # the plot area
    xs = [x for _, pts in data for x, _ in pts]
    ys = [y for _, pts in data for _, y in pts]
    yt = nice_ticks(min(ys), max(ys))
    xt = nice_ticks(min(xs), max(xs)) if max(xs) > min(xs) else [min(xs) - 1, min(xs), min(xs) + 1]
    if xlabel == "step":
        xt = [t for t in xt if t == int(t)] or xt  # steps are integers
    x_lo, x_hi, y_lo, y_hi = xt[0], xt[-1], yt[0], yt[-1]

    def at(x, y):
        return (px0 + (x - x_lo) / (x_hi - x_lo) * (px1 - px0), py1 - (y - y_lo) / (y_hi - y_lo) * (py1 - py0))

    for t in yt:
        _, y = at(x_lo, t)
        draw.line([(px0, y), (px1, y)], fill=(225, 225, 225))
        label = _fmt(t)
        draw.text((px0 - 6 - draw.textlength(label, font=small), y - 7), label, fill=(60, 60, 60), font=small)
    for t in xt:
        x, _ = at(t, y_lo)
        draw.line([(x, py1), (x, py1 + 4)], fill="black")
        label = _fmt(t)
        draw.text((x - draw.textlength(label, font=small) / 2, py1 + 6), label, fill=(60, 60, 60), font=small)
    draw.rectangle([px0, py0, px1, py1], outline="black")
    draw.text(((px0 + px1) / 2 - 12, py1 + 24), xlabel, fill="black", font=small)
    if ylabel:
        draw.text((left + 6, py0 - 17), ylabel, fill=(60, 60, 60), font=small)
    for i, (label, pts) in enumerate(data):
        color = COLORS[i % len(COLORS)]
        coords = [at(x, y) for x, y in pts]
        if len(coords) > 1:
            draw.line(coords, fill=color, width=2)
        if len(coords) <= 60:  # markers while they stay readable
            for cx, cy in coords:
                draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=color)
        lx = px1 - 220
        ly = py0 + 8 + 18 * i
        draw.line([(lx, ly + 7), (lx + 22, ly + 7)], fill=color, width=3)
        draw.text((lx + 28, ly), label, fill="black", font=small)


def render_pil(path: Path, title: str, ylabel: str, data, size: tuple[int, int] = (900, 480),
               xlabel: str = "step") -> None:
    from PIL import Image

    img = Image.new("RGB", size, "white")
    _draw_chart(img, (0, 0, *size), title, ylabel, data, xlabel)
    img.save(path, format="PNG")


def _summary(path: Path, panels, run_name: str, render) -> None:
    """All figures in one PNG, two per row (Pillow; the per-figure PNGs may come from matplotlib)."""
    from PIL import Image

    w, h, cols = 700, 380, 2
    rows = math.ceil(len(panels) / cols)
    img = Image.new("RGB", (w * cols, h * rows), "white")
    for i, (fig, data) in enumerate(panels):
        x, y = (i % cols) * w, (i // cols) * h
        _draw_chart(img, (x, y, x + w, y + h), f"{fig.title} ({run_name})", fig.ylabel, data)
    img.save(path, format="PNG")


def _matplotlib_renderer():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def render(path: Path, title: str, ylabel: str, data) -> None:
        fig, ax = plt.subplots(figsize=(9, 4.8), dpi=100)
        for label, pts in data:
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o" if len(pts) <= 60 else None, label=label)
        ax.set(title=title, xlabel="step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.savefig(path, format="png")
        plt.close(fig)

    return render


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="memroute plot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory holding metrics.jsonl (SFT or RL)")
    p.add_argument("--out", help="where the PNGs go (default: RUN_DIR/plots)")
    args = p.parse_args(argv)
    try:
        written = plot_run(args.run_dir, args.out)
    except PlotError as e:
        print(f"memroute plot: error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
