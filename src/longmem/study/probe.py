"""How far back a model trained on a probe remembers: accuracy and bits on the scored
characters of fresh episodes at chosen distances (`longmem probe`).

At each distance d, `episodes` episodes are generated (seeded by the run's seed and
d, never seen in training). Each is read from the model's initial state as one
stream after an episode at the trained distance nearest d (so that, as in
training, it starts from the state the end of an episode leaves), state carried
between windows of the run's --seq, as training reads its text. Only the scored
characters count (probes.py): those a model can only get right by remembering
what it read d characters back. Distances beyond the trained range test
extrapolation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from longmem import plot, probes
from longmem.corpus import Vocab
from longmem.errors import UserError
from longmem.predict import Predictor

DISTANCES = [16, 64, 256, 1024, 4096]
EPISODES = 64  # fresh episodes per distance, by default
REACH = 0.9  # accuracy: the probe reach is the longest distance with at least this


@dataclass
class ProbeCurve:
    probe: dict  # the probe's settings (probes.Probe.to_dict)
    distances: list[int]
    accuracy: list[float]  # top-1 on the scored characters
    bits: list[float]  # mean bits per scored character
    chance_accuracy: float
    chance_bits: float
    episodes: int
    scored: int  # scored characters at each distance
    seed: int
    reach: int | None  # the longest distance with accuracy >= REACH, None if none

    @classmethod
    def of(cls, stored: dict) -> ProbeCurve:
        return cls(**{name: stored[name] for name in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return asdict(self)


def measure(predictor: Predictor, probe: probes.Probe, vocab: Vocab, distances: list[int], episodes: int,
            seed: int, seq: int) -> ProbeCurve:
    """The probe's accuracy and bits by distance (see the module's docstring)."""
    if episodes < 1:
        raise UserError("--episodes must be at least 1")
    short = [d for d in distances if d < probe.shortest]
    if short:
        raise UserError(f"--distances {short[0]}: {probe.name} with {probe.length} "
                        f"{'pairs' if probe.name == 'recall' else 'symbols'} needs distances of at least "
                        f"{probe.shortest}")
    accuracy, bits, scored = [], [], 0
    for d in distances:
        rng = np.random.default_rng([seed, probes.PROBE, d])
        # Each episode follows one at the trained distance nearest d (as in training, the
        # state it starts from is the end of another), and is padded with newlines to whole
        # windows (one compiled shape).
        warm = min(max(d, probe.lo), probe.hi)
        batch = [(probe.episode(rng, warm).text, probe.episode(rng, d)) for _ in range(episodes)]
        before = len(batch[0][0])
        width = -(-(before + len(batch[0][1].text) - 1) // seq) * seq
        texts = np.stack([vocab.encode((w + e.text).ljust(width + 1, probes.END)) for w, e in batch])
        lp, guess, target = predictor.read(texts[:, :-1], texts[:, 1:], seq)
        at = before + batch[0][1].scored - 1  # entry i predicts character i + 1; the same places in every stream
        accuracy.append(float((guess[:, at] == target[:, at]).mean()))
        bits.append(float(-lp[:, at].astype(np.float64).mean() / math.log(2)))
        scored = lp[:, at].size
    reached = [d for d, a in zip(distances, accuracy) if a >= REACH]
    return ProbeCurve(probe.to_dict(), list(distances), accuracy, bits, 1 / probe.symbols,
                      math.log2(probe.symbols), episodes, scored, seed, max(reached) if reached else None)


def trained_on(run) -> bool:
    """Whether a run trained on a probe (its config.json records the probe's settings)."""
    return isinstance(run.read_config().get("source", {}).get("probe"), dict)


def of_config(run) -> probes.Probe:
    """The probe a run trained on, as its config.json records it."""
    info = run.read_config()
    settings = info.get("source", {}).get("probe")
    if not trained_on(run):
        raise UserError(f"{run.path} trained on {info.get('corpus')}, not a probe; train one with "
                        f"--corpus probe:NAME ({', '.join(probes.EPISODES)})")
    try:
        return probes.Probe(**settings)
    except TypeError:
        raise UserError(f"{run.config}: damaged (its probe's settings are not a probe's)") from None


def of_run(run, snap, predictor: Predictor, probe: probes.Probe, distances: list[int] | None = None,
           episodes: int = EPISODES) -> ProbeCurve:
    """A run's probe curve (at DISTANCES and the ends of the trained range, those the
    probe can have, unless `distances` are given), stored in the run (probe/) keyed by
    the checkpoint's step and the settings, and read from there when measured before."""
    distances = distances or sorted(d for d in {*DISTANCES, probe.lo, probe.hi} if d >= probe.shortest)
    seed = snap.config.train.seed
    key = {"step": snap.step, "episodes": episodes, "distances": list(distances)}
    stored = run.cached("probe", key, lambda: measure(predictor, probe, snap.vocab, distances, episodes,
                                                      seed, snap.config.train.seq).to_dict())
    return ProbeCurve.of(stored)


def stored(run, step: int) -> ProbeCurve | None:
    """The probe curve measured before for the checkpoint at `step` (the one with the most
    distances), or None."""
    found = run.stored("probe", {"step": step})
    return ProbeCurve.of(max(found, key=lambda d: len(d["distances"]))) if found else None


def table(curve: ProbeCurve) -> str:
    """The curve as the text table `longmem probe` prints."""
    p = curve.probe
    lines = [f"{'distance':>9}  {'accuracy':>8}  {'bits':>6}  {'':8}"]
    for d, a, b in zip(curve.distances, curve.accuracy, curve.bits):
        where = "trained" if p["lo"] <= d <= p["hi"] else "beyond" if d > p["hi"] else "shorter"
        lines.append(f"{d:>9}  {100 * a:7.1f}%  {b:6.3f}  {where}")
    lines.append(f"{'chance':>9}  {100 * curve.chance_accuracy:7.1f}%  {curve.chance_bits:6.3f}")
    reach = f"{curve.reach} characters" if curve.reach else "none"
    lines.append(f"probe reach {reach} (the longest distance with {100 * REACH:.0f}% or more); "
                 f"{p['name']}, trained at {p['lo']}:{p['hi']}, {curve.episodes} episodes "
                 f"({curve.scored:,} scored characters) per distance")
    return "\n".join(lines)


def figure(curves: dict[str, ProbeCurve], path: Path) -> Path:
    """Accuracy on the scored characters against distance, with chance and the trained range."""
    return plot.save(draw(curves), path)


def draw(curves: dict[str, ProbeCurve]):
    fig, ax = plot.pyplot().subplots(figsize=(8, 4.5))
    for i, (label, curve) in enumerate(curves.items()):
        color = f"C{i}"
        ax.plot(curve.distances, [100 * a for a in curve.accuracy], marker="o", color=color,
                label=label or f"{curve.probe['name']}")
        ax.axhline(100 * curve.chance_accuracy, color=color, ls=":", lw=1, label=f"{label} chance".strip())
        ax.axvspan(curve.probe["lo"], curve.probe["hi"], color=color, alpha=0.08)
    ax.set_ylim(0, 101)
    plot.by_distance(ax, "distance (characters back; shaded: trained)", "accuracy on scored characters (%)",
                     "how far back the model remembers: probe accuracy by distance")
    return fig
