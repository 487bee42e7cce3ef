"""How far back a model's memory reaches: held-out bits per character against
the length of the context it may read.

For a context length k the model starts from its initial state, reads only
the k characters before a position and predicts the character there. The
same positions (drawn once, seeded, from the held-out text) are scored for
every k, so the differences between rows are paired and not a matter of
which positions were drawn. The reference row ("unlimited") scores those
positions in the ordinary evaluation, with state carried from the start of
the held-out text.

Every context row starts from the initial state, so a model that some starts
throw off for long (into a state it does not leave for thousands of characters,
seen in docs/memory.md) has a curve far above unlimited at every k, which reads
as a long memory and is not one. Such starts show in the positions themselves:
at the longest context a share of them costs many bits more than with the whole
text before them (12% over 8 bits for docs/memory.md's 2 x 512 LSTM, none
for the default LSTM), and those positions make most of the gap. The curve reports that share
(`lost`) and warns when it is LOST_SHARE or more.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from longmem import plot
from longmem.errors import UserError
from longmem.predict import Predictor

NEAR = 0.02  # bits: a context is "enough" when its bpc is this close to unlimited
GAIN_AT = 64  # the long-context gain is bpc at this context minus unlimited
LOST_BITS = 8.0  # a position is "lost" at a context when it costs this much more than unlimited (1/256 the odds)
LOST_SHARE = 0.01  # ... and the curve warns when this share of positions is lost at the longest context
CHUNK = 256  # positions read at once, at most
# ... and at most this many characters a window (positions x seq): the window's logits are
# (seq, positions, V) floats (a 4,096-character curve on python-stdlib, read then as one
# window of k + 1, peaked at 6.0 GB resident before this bound).
WINDOW_CHARS = 1 << 17


def contexts(max_context: int) -> list[int]:
    """1, 2, 4, ... up to max_context (itself included when it is not a power of 2)."""
    if max_context < 1:
        raise UserError("--max-context must be at least 1")
    ks = [2**i for i in range(max_context.bit_length()) if 2**i <= max_context]
    return ks if ks[-1] == max_context else ks + [max_context]


@dataclass
class Curve:
    contexts: list[int]
    bpc: list[float]
    accuracy: list[float]
    unlimited_bpc: float
    unlimited_accuracy: float
    positions: int
    seed: int
    memory_length: int | None  # smallest k within NEAR bits of unlimited, None if none is
    long_context_gain: float | None  # bpc at GAIN_AT minus unlimited, None if not measured
    # The share of positions lost at the longest context (over LOST_BITS more than unlimited),
    # and the share of that context's gap over unlimited they make; None in curves stored
    # before this check.
    lost: float | None = None
    lost_gap: float | None = None

    @classmethod
    def of(cls, stored: dict) -> Curve:
        """The curve in a stored result (which also holds the settings it was measured with)."""
        return cls(**{name: stored[name] for name in cls.__dataclass_fields__ if name in stored})

    def to_dict(self) -> dict:
        return asdict(self)


def measure(predictor: Predictor, codes: np.ndarray, ks: list[int], positions: int, seed: int,
            seq: int = 64) -> Curve:
    """The memory curve of `predictor` on `codes` (a held-out text).

    Positions are drawn without replacement from those with at least
    max(ks) characters before them, so that every k reads real text.
    """
    if positions < 1:
        raise UserError("--positions must be at least 1")
    if len(codes) <= max(ks) + 1:
        raise UserError(
            f"the held-out text has {len(codes)} characters; --max-context {max(ks)} needs more "
            "(give a smaller --max-context, or --text with a longer file)"
        )
    candidates = np.arange(max(ks), len(codes))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(candidates, size=min(positions, len(candidates)), replace=False))
    # Unlimited: one stream through the text, state carried; entry i predicts codes[i + 1].
    lp, guess, target = predictor.scores(codes[: chosen[-1] + 1], 1, seq)
    unlimited_bits = -lp[0, chosen - 1].astype(np.float64) / math.log(2)
    unlimited_right = guess[0, chosen - 1] == target[0, chosen - 1]
    rows = [_with_context(predictor, codes, chosen, k, seq) for k in ks]  # (bits, hits) per k
    bpc = [float(bits.mean()) for bits, _ in rows]
    accuracy = [float(right.mean()) for _, right in rows]
    unlimited = float(unlimited_bits.mean())
    longest = rows[int(np.argmax(ks))][0]
    return Curve(list(ks), bpc, accuracy, unlimited, float(unlimited_right.mean()), len(chosen), seed,
                 *summary(ks, bpc, unlimited), *lost(longest - unlimited_bits))


def lost(excess: np.ndarray) -> tuple[float, float]:
    """Of the bits each position costs over unlimited at one context: the share of positions
    lost (over LOST_BITS more) and the share of the total they make (0 when the total is not
    above 0)."""
    far = excess > LOST_BITS
    total = excess.sum()
    return float(far.mean()), float(excess[far].sum() / total) if total > 0 else 0.0


def lost_mark(lost: float | None) -> str:
    """What a memory length's cell adds when its curve has LOST_SHARE or more lost starts."""
    return f" (lost starts {lost:.0%})" if (lost or 0) >= LOST_SHARE else ""


def summary(ks: list[int], bpc: list[float], unlimited: float) -> tuple[int | None, float | None]:
    """The memory length (the smallest k within NEAR bits of unlimited, None when
    no k is) and the long-context gain (bpc at GAIN_AT minus unlimited)."""
    near = [k for k, b in zip(ks, bpc) if b - unlimited <= NEAR]
    gain = bpc[ks.index(GAIN_AT)] - unlimited if GAIN_AT in ks else None
    return (near[0] if near else None), gain


def _with_context(predictor: Predictor, codes: np.ndarray, chosen: np.ndarray, k: int, seq: int):
    """Bits and hits at each chosen position p, reading codes[p - k : p] from a zero state
    in windows of `seq` (every k reads through the same compiled window)."""
    bits, right = [], []
    width = min(CHUNK, len(chosen), max(1, WINDOW_CHARS // seq))
    offsets = np.arange(-k, 1)  # the k inputs and, last, the target
    for start in range(0, len(chosen), width):
        part = chosen[start : start + width]
        padded = np.concatenate([part, np.repeat(part[-1:], width - len(part))])  # one compiled shape
        rows = codes[padded[:, None] + offsets[None, :]]  # (width, k + 1)
        lp, guess, target = predictor.read(rows[:, :-1], rows[:, 1:], seq)
        bits.append(-lp[: len(part), -1].astype(np.float64) / math.log(2))
        right.append(guess[: len(part), -1] == target[: len(part), -1])
    return np.concatenate(bits), np.concatenate(right)


def table(curve: Curve) -> str:
    """The curve as the text table `longmem memory` prints."""
    lines = [f"{'context':>9}  {'bpc':>6}  {'accuracy':>8}  {'- unlimited':>11}"]
    for k, b, a in zip(curve.contexts, curve.bpc, curve.accuracy):
        lines.append(f"{k:>9}  {b:6.3f}  {100 * a:7.1f}%  {b - curve.unlimited_bpc:+11.3f}")
    lines.append(f"{'unlimited':>9}  {curve.unlimited_bpc:6.3f}  {100 * curve.unlimited_accuracy:7.1f}%")
    length = (f"{curve.memory_length} characters" if curve.memory_length is not None
              else f"more than {curve.contexts[-1]} characters")
    lines.append(f"memory length {length} (the shortest context within {NEAR} bits of unlimited)")
    if curve.long_context_gain is not None:
        lines.append(f"long-context gain {curve.long_context_gain:.3f} bits/char "
                     f"(bpc at {GAIN_AT} characters of context minus unlimited)")
    lines.append(f"over {curve.positions:,} positions (seed {curve.seed}), the same for every context")
    if curve.lost is not None:
        lines.append(f"lost starts: {100 * curve.lost:.1f}% of positions cost over {LOST_BITS:g} bits more at "
                     f"{curve.contexts[-1]} characters of context than unlimited, "
                     f"{100 * curve.lost_gap:.0f}% of that context's gap")
    if curve.lost is not None and curve.lost >= LOST_SHARE:
        lines.append("warning: some starts from the initial state throw this model off for long, and every "
                     "context row starts there, so the curve measures those starts as well as memory "
                     "(docs/memory.md, \"Cold starts\")")
    return "\n".join(lines)


def of_run(run, snap, predictor: Predictor, codes: np.ndarray, split: str, positions: int,
           ks: list[int], seed: int, text: str | None = None) -> Curve:
    """A run's memory curve on its held-out `split` (or on `text`), stored in the run
    (memory/) keyed by the checkpoint's step and the settings, and read from there
    when it was measured before."""
    def measure_it() -> dict:
        return measure(predictor, codes, ks, positions, seed, snap.config.train.seq).to_dict()

    if text:
        return Curve(**measure_it())
    key = {"step": snap.step, "split": split, "positions": positions, "seed": seed,
           "max_context": ks[-1]}
    stored = run.cached("memory", key, measure_it)
    return Curve.of(stored)


def stored(run, step: int, split: str = "test") -> Curve | None:
    """The memory curve measured before for the checkpoint at `step` on `split` (the one
    over the most positions), or None."""
    found = [d for d in run.stored("memory", {"step": step, "split": split}) if "positions" in d]
    return Curve.of(max(found, key=lambda d: d["positions"])) if found else None


def figure(curves: dict[str, Curve], path: Path) -> Path:
    """bpc against context length (log scale), with each run's unlimited line, as a PNG."""
    return plot.save(draw(curves), path)


def draw(curves: dict[str, Curve]):
    fig, ax = plot.pyplot().subplots(figsize=(8, 4.5))
    for i, (label, curve) in enumerate(curves.items()):
        color = f"C{i}"
        ax.plot(curve.contexts, curve.bpc, marker=".", color=color, label=label or "context k")
        ax.axhline(curve.unlimited_bpc, color=color, ls="--", lw=1,
                   label=f"{label} unlimited".strip())
    plot.by_distance(ax, "characters of context (k)", "held-out bits per character",
                     "how far back the model's memory reaches")
    return fig
