"""Figures of tracked values and learning curves, written as PNG files.

The transformations (`--select`, `--crop`, `--diff`, `--smooth`) are plain
NumPy on (steps, values) arrays, applied in that order, so they can be
tested without looking at pixels.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longmem import track
from longmem.errors import UserError
from longmem.files import atomic_write
from longmem.rundir import RunDir


@dataclass
class Curve:
    label: str
    steps: np.ndarray  # (n,)
    values: np.ndarray  # (n, k): k lines
    elements: list | None = None  # which element each line shows, for the legend

    def line_labels(self) -> list[str]:
        k = self.values.shape[1]
        if k == 1 and self.elements is None:
            return [self.label]
        elements = self.elements if self.elements is not None else list(range(k))
        return [f"{self.label}[{e}]".strip() for e in elements]


def parse_crop(text: str | None) -> tuple[int | None, int | None]:
    """"A:B" -> steps A <= step < B; either side may be empty."""
    if not text:
        return None, None
    try:
        a, b = text.split(":")
        return (int(a) if a.strip() else None), (int(b) if b.strip() else None)
    except ValueError:
        raise UserError(f"--crop takes A:B (steps), not {text!r}") from None


def parse_select(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        select = [int(i) for i in text.split(",")]
    except ValueError:
        raise UserError(f"--select takes element numbers like 0,3,7, not {text!r}") from None
    if min(select) < 0:
        raise UserError(f"--select takes element numbers from 0 (flat positions in the value), not {min(select)}")
    return select


def transform(steps, values, select=None, crop=(None, None), diff=False, smooth=1):
    """Apply --select, --crop, --diff and --smooth; returns steps (n,) and values (n, k).

    select: element numbers of the flattened value. crop: keep steps in
    [A, B). diff: the change from one record to the next. smooth: moving
    average over N records (only whole windows, so the first N-1 go).
    """
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=np.float64)
    values = values.reshape(len(steps), -1) if len(steps) else values.reshape(0, max(1, values[0:].size))
    if select is not None:
        bad = [i for i in select if not -values.shape[1] <= i < values.shape[1]]
        if bad:
            raise UserError(f"--select {bad[0]}: the value has {values.shape[1]} elements")
        values = values[:, select]
    lo, hi = crop
    keep = np.ones(len(steps), bool)
    if lo is not None:
        keep &= steps >= lo
    if hi is not None:
        keep &= steps < hi
    steps, values = steps[keep], values[keep]
    if diff:
        steps, values = steps[1:], np.diff(values, axis=0)
    if smooth > 1:
        if len(steps) < smooth:
            return steps[:0], values[:0]
        kernel = np.ones(smooth) / smooth
        values = np.stack([np.convolve(v, kernel, mode="valid") for v in values.T], axis=1)
        steps = steps[smooth - 1 :]
    return steps, values


# What each learning curve of metrics.jsonl is called in a legend.
CURVE_NAMES = {"bpc": "training", "val_bpc": "validation", "train_bpc": "training text, evaluated"}


def learning_curves(run: RunDir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Training and validation bpc from metrics.jsonl (a torn last line is skipped);
    only the curves that have records."""
    rows = run.metric_records()
    curves = {}
    for key in CURVE_NAMES:
        kept = [r for r in rows if key in r]
        if kept:
            curves[key] = (np.array([r["step"] for r in kept]), np.array([r[key] for r in kept]))
    return curves


def series(run: RunDir, name: str) -> track.Series:
    s = track.load(run.path, name)
    if len(s.steps) == 0:
        raise UserError(f"track {name!r} of {run.path} has no records yet")
    return s


def kept_positions(select: list[int], indices: list | None, size: int) -> list[int]:
    """Where element numbers of a value are among the kept ones (all, or `indices`
    when --track-max kept only some); an element that was not kept is refused."""
    if indices is None:
        return select
    where = {e: i for i, e in enumerate(indices)}
    positions = []
    for e in select:
        flat = e + size if e < 0 else e  # for callers in Python; --select numbers are not negative
        if flat not in where:
            shown = ", ".join(map(str, indices[:12])) + (", ..." if len(indices) > 12 else "")
            raise UserError(f"--select {e}: element not kept (--track-max kept {len(indices)} of {size}: {shown})")
        positions.append(where[flat])
    return positions


@dataclass
class Panel:
    title: str
    ylabel: str
    curves: list
    xlabel: str = "step"


def figure(panels: list[Panel], path: Path, title: str | None = None, share_y: bool = False,
           show: bool = False) -> Path:
    """Draw panels side by side, each with curves against the step, and save a PNG."""
    fig = draw(panels, title, share_y, show)
    save(fig, path)
    if show:
        import matplotlib.pyplot as plt

        plt.show()
    return path


def draw(panels: list[Panel], title: str | None = None, share_y: bool = False, show: bool = False,
         size: tuple[float, float] | None = None):
    """A matplotlib figure of the panels side by side."""
    plt = pyplot(show)
    width = 8 if len(panels) == 1 else 4.5 * len(panels)
    fig, axes = plt.subplots(1, len(panels), figsize=size or (width, 4.5), sharey=share_y, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        labels = [label for curve in panel.curves for label in curve.line_labels()]
        for curve in panel.curves:
            marker = "." if len(curve.steps) <= 30 else None
            for j, label in enumerate(curve.line_labels()):
                ax.plot(curve.steps, curve.values[:, j], label=label or None, lw=1.2, marker=marker)
        ax.set_title(panel.title)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if len(labels) <= 12 and any(labels):
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def by_distance(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Finish axes whose x is a distance in characters, 1, 2, 4, ... on a log scale."""
    import matplotlib.ticker

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()


def pyplot(show: bool = False):
    """matplotlib.pyplot, drawing off screen unless the figure is to be shown."""
    import matplotlib

    if not show:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    pyplot().close(fig)
    return buffer.getvalue()


def save(fig, path: Path) -> Path:
    """Write the figure to `path` as a PNG, whole or not at all; the figure is closed."""
    atomic_write(path, png(fig))
    return path


@dataclass
class Options:
    smooth: int = 1
    crop: tuple = (None, None)
    select: list | None = None
    diff: bool = False

    def describe(self) -> str:
        parts = []
        if self.select is not None:
            parts.append("elements " + ",".join(map(str, self.select)))
        if self.crop != (None, None):
            parts.append("steps {}:{}".format(*("" if v is None else v for v in self.crop)))
        if self.diff:
            parts.append("change per record")
        if self.smooth > 1:
            parts.append(f"moving average of {self.smooth}")
        return f" ({'; '.join(parts)})" if parts else ""


LEARNING_CURVE = "learning-curve"


def plot_runs(runs: list[RunDir], labels: list[str], names: list[str], opts: Options,
              out: Path | None = None, show: bool = False) -> list[Path]:
    """One PNG per name; with no names, the learning curve and every tracked name,
    skipping (and saying so on stderr) what has no records."""
    chosen = names or [LEARNING_CURVE] + track.available(runs[0].tracks)
    if out is not None and out.suffix.lower() == ".png" and len(chosen) > 1:
        raise UserError(f"--out {out} names one figure, and there are {len(chosen)}: give a folder")
    figures = []
    for name in chosen:
        try:
            panel = _panel(runs, labels, name, opts)
        except UserError as e:
            if names:
                raise
            print(f"longmem: skipped {name}: {e}", file=sys.stderr)
            continue
        target = _target(runs[0], name, out, len(chosen))
        figures.append(figure([panel], target, show=show))
    if not figures:
        raise UserError(f"nothing to plot in {runs[0].path}: no metrics and no tracked values yet")
    return figures


def _panel(runs: list[RunDir], labels: list[str], name: str, opts: Options) -> Panel:
    """The curves of one name in every run, transformed as `opts` says."""
    curves, every_step = [], []
    for run, label in zip(runs, labels):
        if name == LEARNING_CURVE:
            found = learning_curves(run)
            if not found:
                raise UserError(f"{run.path} has no bpc in metrics.jsonl")
            for key, (steps, values) in found.items():
                every_step.append(steps)
                s, v = transform(steps, values, crop=opts.crop, smooth=opts.smooth)
                curves.append(Curve(f"{label} {CURVE_NAMES[key]}".strip(), s, v))
            continue
        found = series(run, name)
        every_step.append(found.steps)
        shown, select = found.indices, None
        if opts.select is not None:
            select = kept_positions(opts.select, found.indices, found.size)
            shown = [e if found.indices is None else found.indices[i] for i, e in zip(select, opts.select)]
        s, v = transform(found.steps, found.values, select, opts.crop, opts.diff, opts.smooth)
        curves.append(Curve(label, s, v, shown if found.values[0].size > 1 else None))
    if all(len(c.steps) == 0 for c in curves):
        steps = np.concatenate(every_step)
        raise UserError(
            f"no records of {name} left to draw{opts.describe()}; the run has steps "
            f"{steps.min()}..{steps.max()} in {len(steps)} records"
        )
    if name == LEARNING_CURVE:
        return Panel("learning curve" + opts.describe(), "bits per character", curves)
    return Panel(name + opts.describe(), name + (" change" if opts.diff else ""), curves)


def _target(run: RunDir, name: str, out: Path | None, count: int) -> Path:
    stem = track.file_stem(name) + ".png"
    if out is None:
        return run.plots / stem
    if count == 1 and out.suffix.lower() == ".png":
        return out
    return out / stem
