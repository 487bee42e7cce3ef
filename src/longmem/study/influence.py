"""Where a model looks, by distance: the second view of memory (`longmem memory
--influence`), beside the curve that cuts the context.

For each held-out position p the model reads the L characters before it from
its initial state; the influence at lag k is the norm of the gradient of
log p(the character at p) with respect to the input k characters back (its
embedding rows, nets/protocol.py's EMBEDDINGS), averaged over the positions.
The positions are drawn as `longmem memory` draws them (seeded, with at least
L characters before them), and read in batches through one compiled function.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from longmem import plot, signals
from longmem.errors import UserError
from longmem.predict import Predictor

BATCH = 32  # positions read at once, at most
CHARS = 1 << 16  # ... and at most this many characters at once (positions x lags), which bounds memory
SHARE = 0.01  # the reach: the longest lag whose influence is at least this share of the largest


@dataclass
class Influence:
    lags: list[int]  # 1 .. L
    norm: list[float]  # the mean gradient norm at each lag
    positions: int
    seed: int
    reach: int  # the longest lag with at least SHARE of the largest influence

    @classmethod
    def of(cls, stored: dict) -> Influence:
        return cls(**{name: stored[name] for name in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return asdict(self)


def measure(predictor: Predictor, codes: np.ndarray, lags: int, positions: int, seed: int) -> Influence:
    """The influence of each of the `lags` inputs before a position on its prediction."""
    if positions < 1:
        raise UserError("--positions must be at least 1")
    if len(codes) <= lags + 1:
        raise UserError(f"the held-out text has {len(codes)} characters; --max-context {lags} needs more "
                        "(give a smaller --max-context, or --text with a longer file)")
    candidates = np.arange(lags, len(codes))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(candidates, size=min(positions, len(candidates)), replace=False))
    norm = by_lag(predictor, codes, chosen, lags).mean(axis=0)
    strong = np.flatnonzero(norm >= SHARE * norm.max()) if norm.max() > 0 else np.array([0])
    return Influence(list(range(1, lags + 1)), [float(v) for v in norm], len(chosen), seed, int(strong[-1]) + 1)


def by_lag(predictor: Predictor, codes: np.ndarray, chosen: np.ndarray, lags: int) -> np.ndarray:
    """(positions, lags): for each chosen position p (with at least `lags` characters before
    it), the gradient norm of log p(codes[p]) with respect to the input k characters back,
    k = 1 .. lags, reading codes[p - lags : p] from the initial state."""
    width = min(BATCH, len(chosen), max(1, CHARS // lags))
    fn = predictor.input_gradient_fn(lags, width)
    offsets = np.arange(-lags, 1)  # the inputs and, last, the target
    found = []
    for start in range(0, len(chosen), width):
        part = chosen[start : start + width]
        padded = np.concatenate([part, np.repeat(part[-1:], width - len(part))])  # one compiled shape
        cols = codes[padded[None, :] + offsets[:, None]].astype(np.int32)  # (lags + 1, width)
        signals.check()
        norms = np.asarray(fn(cols[:-1], cols[1:]), dtype=np.float64)  # (lags, width), oldest input first
        found.append(norms[::-1, : len(part)].T)  # by lag: 1 (the input just before) .. lags
    return np.concatenate(found)


def of_run(run, snap, predictor: Predictor, codes: np.ndarray, split: str, positions: int, lags: int,
           seed: int, text: str | None = None) -> Influence:
    """A run's influence curve on its held-out `split` (or on `text`), stored in the run
    (influence/) keyed by the checkpoint's step and the settings, as memory curves are."""
    def measure_it() -> dict:
        return measure(predictor, codes, lags, positions, seed).to_dict()

    if text:
        return Influence(**measure_it())
    key = {"step": snap.step, "split": split, "positions": positions, "seed": seed, "lags": lags}
    return Influence.of(run.cached("influence", key, measure_it))


def table(influence: Influence) -> str:
    """The influence at lags 1, 2, 4, ... as `longmem memory --influence` prints it."""
    top = max(influence.norm) or 1.0
    lines = [f"{'lag':>9}  {'influence':>10}  {'of the largest':>14}"]
    k = 1
    while k <= len(influence.lags):
        lines.append(f"{k:>9}  {influence.norm[k - 1]:10.3g}  {100 * influence.norm[k - 1] / top:13.1f}%")
        k *= 2
    lines.append(f"influence reach {influence.reach} characters (the longest lag with at least "
                 f"{100 * SHARE:g}% of the largest gradient), over {influence.positions:,} positions")
    return "\n".join(lines)


def figure(influences: dict[str, Influence], path: Path) -> Path:
    """The gradient norm against the lag (both on log scales), as a PNG."""
    fig, ax = plot.pyplot().subplots(figsize=(8, 4.5))
    for i, (label, influence) in enumerate(influences.items()):
        ax.plot(influence.lags, influence.norm, color=f"C{i}", label=label or "mean gradient norm")
    ax.set_yscale("log")
    plot.by_distance(ax, "lag: characters back", "|d log p / d input|",
                     "where the model looks: influence of each earlier input")
    return plot.save(fig, path)
