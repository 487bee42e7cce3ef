"""Dropout masks drawn inside the compiled step from a counter-based hash.

Mask `number` of training step `step` keeps unit i when
hash32(hash32(i ^ k1) + k2) >= p * 2**32 (mod 2**32), where k1 and k2 mix the run's seed,
the step and the mask's number. Nothing is drawn on the host or copied in,
there is no generator state to checkpoint (the step is the counter), and the
same integer arithmetic gives the same bits on every backend and device
count. Every function here works on NumPy uint32 arrays and PyTensor uint32
tensors alike, so the tests check the compiled masks against NumPy.

The probabilities are inputs of the step, not constants of its graph, so that
they can change while a run goes: by default (`--dropout` and `--weight-drop`
not given) they follow the number of passes over the training split the run
is expected to make (AUTO).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

_M1, _M2 = np.uint32(0x7FEB352D), np.uint32(0x846CA68B)
_GOLDEN = np.uint32(0x9E3779B9)
_LOW32 = np.uint32(0xFFFFFFFF)


def _low(x):
    """x modulo 2**32: a no-op where uint32 arithmetic wraps, needed where a backend
    (Numba) computes a fused expression's products in 64 bits."""
    return x & _LOW32


def _shift(x, bits: int):
    """x >> bits, written as a division so that PyTensor graphs have it too."""
    return x // np.uint32(1 << bits)


def hash32(x):
    """Chris Wellons' lowbias32: a bijective mix of 32-bit unsigned integers."""
    x = x ^ _shift(x, 16)
    x = _low(x * _M1)
    x = x ^ _shift(x, 15)
    x = _low(x * _M2)
    return x ^ _shift(x, 16)


def keys(seed: int, step, number: int):
    """The two keys of mask `number` at `step` (a uint32 scalar or 1-element array)."""
    k1 = hash32(_low(hash32(_low(hash32(np.full(1, seed, np.uint32))[0] + step)) + np.uint32(number)))
    return k1, hash32(_low(k1 + _GOLDEN))


def threshold(p: float) -> np.uint32:
    """The bits below which a unit is dropped: p of the 2**32 values."""
    return np.uint32(min(round(p * 2**32), 2**32 - 1))


def scale(p: float) -> np.float32:
    """What a kept unit is multiplied by (inverted dropout)."""
    return np.float32(1 / (1 - p))


def _keep(i, below, seed: int, step, number: int):
    """Whether units numbered i (uint32) are kept, `below` being the threshold."""
    k1, k2 = keys(seed, step, number)
    return hash32(_low(hash32(i ^ k1) + k2)) >= below


def keep_numpy(shape: tuple, p: float, seed: int, step: int, number: int) -> np.ndarray:
    """The mask the compiled step draws, computed with NumPy (bool, `shape`)."""
    i = np.arange(int(np.prod(shape)), dtype=np.uint32)
    return _keep(i, threshold(p), seed, np.full(1, step, np.uint32), number).reshape(shape)


def keep_graph(shape: tuple, below, seed: int, step, number: int):
    """The same mask as a PyTensor expression of the uint32 scalars `step` and `below`
    (the threshold of the probability, an input of the step)."""
    import pytensor.tensor as pt

    i = pt.arange(int(np.prod(shape)), dtype="uint32")
    return _keep(i, below, seed, step, number).reshape(shape)


def multipliers(noise: dict, seed: int, step, rates: dict) -> dict:
    """Inverted dropout for each mask `noise` names (name -> (shape, option)): 0 for a
    dropped unit, 1 / (1 - p) for a kept one, as expressions of `step` and of `rates`,
    which maps each option to two scalars: threshold(p) and scale(p)."""
    return {
        name: keep_graph(shape, rates[option][0], seed, step, number) * rates[option][1]
        for number, (name, (shape, option)) in enumerate(noise.items())
    }


# The ModelConfig fields that are drop probabilities (None: chosen by AUTO).
OPTIONS = ("dropout", "weight_drop")

# Their value for a run expected to pass over its training split at most N times:
# none for a run that sees its text about once, where regularisation only slows
# learning (python-stdlib at 1.1 passes: 1.979 bits/char without, 2.012 with 0.1),
# then 0.1, for every other cell of benchmarks/defaults.py's grid
# (5 to 112 passes on three texts, against 0, 0.2 and 0.3: the best or within 0.006 of
# it; docs/performance.md).
AUTO = ((2.0, 0.0), (math.inf, 0.1))


def auto_level(passes: float) -> int:
    """The row of AUTO for a run expected to make `passes` passes."""
    return next(k for k, (most, _) in enumerate(AUTO) if passes <= most)


def auto(cfg) -> list[str]:
    """The options of ModelConfig `cfg` left to AUTO."""
    return [o for o in OPTIONS if getattr(cfg, o) is None]


def rates(cfg, level: int) -> dict[str, float]:
    """Each option's probability: as given, or AUTO's at `level`."""
    return {o: AUTO[level][1] if getattr(cfg, o) is None else getattr(cfg, o) for o in OPTIONS}


def resolved(cfg, level: int):
    """ModelConfig `cfg` with AUTO's probabilities at `level` in place of those left to it."""
    return dataclasses.replace(cfg, **rates(cfg, level))
