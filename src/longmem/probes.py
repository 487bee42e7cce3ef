"""Probes: synthetic texts in which some characters can only be predicted from one a
known distance back (the README defines each text exactly).

A probe's text is episodes joined end to end, each ending with a newline. In every
episode some characters are scored: only a model that remembers what it read a
known number of characters earlier can predict them. Training reads an endless
supply: pass e of stream b is generated from (seed, e, b), so a resumed run reads
exactly the text it would have read, and no text is ever seen twice.
"""

from __future__ import annotations

import math
import string
from dataclasses import asdict, dataclass

import numpy as np

from longmem.batches import Cursor, Streams
from longmem.errors import UserError

FILL, MARK, END = ".", ":", "\n"
DEFAULT_DISTANCE = (16, 1024)
PASS_EPISODES = 4  # a pass of the training streams holds this many of the longest episodes
# Tags in the seeds of the generators: the training streams, and the fixed texts.
TRAIN, TEST, VAL, SAMPLE, PROBE = range(5)


@dataclass(frozen=True)
class Episode:
    text: str
    scored: np.ndarray  # (n,) positions of the scored characters
    lags: np.ndarray  # (n,) for each, how far back the character that tells it is


@dataclass(frozen=True)
class Probe:
    """One probe and its sizes: `length` characters to remember (copy, selective copy)
    or key-value pairs (recall), drawn from `symbols` data symbols, at distances drawn
    log-uniformly from `lo` to `hi`."""

    name: str
    lo: int
    hi: int
    length: int
    symbols: int

    @property
    def alphabet(self) -> str:
        """Every character the probe's text can hold, sorted: the run's vocabulary."""
        data = string.digits[: self.symbols] + string.ascii_lowercase if self.name == "recall" \
            else string.ascii_lowercase[: self.symbols]
        return "".join(sorted(FILL + MARK + END + data))

    @property
    def shortest(self) -> int:
        """The shortest distance an episode can have."""
        return {"copy": self.length + 1, "selective-copy": self.length, "recall": 2 * self.length + 1}[self.name]

    def episode_length(self, distance: int) -> int:
        extra = {"copy": self.length + 1, "selective-copy": self.length + 2, "recall": 2 * self.length + 1}
        return distance + extra[self.name]

    def episode(self, rng: np.random.Generator, distance: int) -> Episode:
        """One episode at `distance` (see the README for each text)."""
        return EPISODES[self.name](self, rng, distance)

    def distance(self, rng: np.random.Generator) -> int:
        """A training distance, log-uniform over [lo, hi]."""
        return int(np.clip(round(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))), self.lo, self.hi))

    def text(self, rng: np.random.Generator, n: int) -> str:
        """n characters of episodes at training distances, joined end to end (the last cut)."""
        parts, total = [], 0
        while total < n:
            parts.append(self.episode(rng, self.distance(rng)).text)
            total += len(parts[-1])
        return "".join(parts)[:n]

    def to_dict(self) -> dict:
        return asdict(self)


def _letters(rng: np.random.Generator, n: int, symbols: int) -> str:
    return "".join(string.ascii_lowercase[i] for i in rng.integers(0, symbols, n))


def _copy(p: Probe, rng: np.random.Generator, d: int) -> Episode:
    """M symbols, fill, a marker, the M symbols again: each copied one is d after its first."""
    data = _letters(rng, p.length, p.symbols)
    text = data + FILL * (d - p.length - 1) + MARK + data + END
    return Episode(text, np.arange(d, d + p.length), np.full(p.length, d))


def _selective_copy(p: Probe, rng: np.random.Generator, d: int) -> Episode:
    """M symbols at random places among d - M fill characters, a marker, the M in order."""
    data = _letters(rng, p.length, p.symbols)
    where = np.sort(rng.choice(d, p.length, replace=False))
    region = np.full(d, FILL)
    region[where] = list(data)
    text = "".join(region) + MARK + data + END
    scored = np.arange(d + 1, d + 1 + p.length)
    return Episode(text, scored, scored - where)


def _recall(p: Probe, rng: np.random.Generator, d: int) -> Episode:
    """K pairs of a key (a distinct letter) and a value (a digit), fill, a marker at d - 1,
    then every key again in a random order, each followed by its value."""
    keys = rng.choice(26, p.length, replace=False)
    values = rng.integers(0, p.symbols, p.length)
    order = rng.permutation(p.length)

    def pairs(i):
        return "".join(string.ascii_lowercase[k] + string.digits[v] for k, v in zip(keys[i], values[i]))

    text = pairs(np.arange(p.length)) + FILL * (d - 2 * p.length - 1) + MARK + pairs(order) + END
    scored = d + 1 + 2 * np.arange(p.length)
    return Episode(text, scored, scored - (2 * order + 1))


EPISODES = {"copy": _copy, "selective-copy": _selective_copy, "recall": _recall}
DEFAULTS = {"copy": (10, 8), "selective-copy": (16, 16), "recall": (8, 10)}  # length, symbols
LIMITS = {"copy": 26, "selective-copy": 26, "recall": 10}  # data symbols at most


def parse_range(text: str) -> tuple[int, int]:
    """'LO:HI' (or one number) as two whole numbers 1 <= LO <= HI."""
    try:
        lo, hi = (int(v) for v in text.split(":")) if ":" in text else (int(text),) * 2
    except ValueError:
        raise UserError(f"--probe-distance {text!r}: give LO:HI, two whole numbers (e.g. 16:1024)") from None
    if not 1 <= lo <= hi:
        raise UserError(f"--probe-distance {text!r}: LO must be at least 1 and at most HI")
    return lo, hi


def probe(name: str, distance: str | None, length: int | None, symbols: int | None) -> Probe:
    """The probe `name` with the sizes the flags give (their defaults where not)."""
    if name not in EPISODES:
        raise UserError(f"unknown probe {name!r}; choose one of {', '.join(EPISODES)}")
    lo, hi = parse_range(distance) if distance else DEFAULT_DISTANCE
    length = DEFAULTS[name][0] if length is None else length
    symbols = DEFAULTS[name][1] if symbols is None else symbols
    if not 1 <= symbols <= LIMITS[name]:
        raise UserError(f"--probe-symbols {symbols}: {name} has 1 to {LIMITS[name]} data symbols")
    if not 1 <= length <= (26 if name == "recall" else 1 << 16):
        raise UserError(f"--probe-length {length}: {name} needs 1 to {26 if name == 'recall' else 1 << 16}")
    found = Probe(name, lo, hi, length, symbols)
    if not distance and lo < found.shortest:  # the default range starts where the probe can
        found = Probe(name, found.shortest, max(hi, found.shortest), length, symbols)
    if found.lo < found.shortest:
        raise UserError(f"--probe-distance {lo}:{hi}: {name} with --probe-length {length} needs distances of "
                        f"at least {found.shortest}")
    return found


class ProbeStreams(Streams):
    """B streams of fresh episodes, a pass of `windows` windows at a time: pass e of
    stream b is generated from (seed, e, b), so that it is the same on resume."""

    ENDLESS = True

    def __init__(self, probe: Probe, seed: int, codes_of, batch: int, seq: int):
        if batch < 1 or seq < 1:
            raise UserError("--batch and --seq must be at least 1")
        self.probe, self.seed, self.codes_of = probe, seed, codes_of
        self.batch, self.seq = batch, seq
        self.windows = -(-PASS_EPISODES * probe.episode_length(probe.hi) // seq)
        self.length = self.windows * seq
        self.epoch = None

    def at(self, cursor: Cursor) -> tuple[np.ndarray, np.ndarray]:
        if cursor.epoch != self.epoch:
            rows = [self.codes_of(self.probe.text(np.random.default_rng([self.seed, TRAIN, cursor.epoch, b]),
                                                  self.length + 1)) for b in range(self.batch)]
            texts = np.stack(rows)
            self.xs, self.ys, self.epoch = texts[:, :-1], texts[:, 1:], cursor.epoch
        return self.window(cursor.window)
