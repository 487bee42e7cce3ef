"""What several nets share: their initialisation, the LSTM's gates, the language
model's target and loss, the batched product of a whole window, and the
parallel scan of a linear recurrence.

A net takes these as its own protocol functions (`target = parts.next_char`)
or calls them while it builds its graph; nothing here compiles.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import zero_grad


def uniform(rng: np.random.Generator, scale: float):
    """A function (*shape) -> float32 weights uniform in [-scale, scale], drawn from `rng`
    in the order of the calls."""

    def draw(*shape: int) -> np.ndarray:
        return rng.uniform(-scale, scale, shape).astype(np.float32)

    return draw


def lstm_bias(cells: int, extra: int = 0) -> np.ndarray:
    """An LSTM's bias (4 cells + extra,): zero, except the forget gates' 1, so that a
    new cell starts by keeping what it holds."""
    b = np.zeros(4 * cells + extra, np.float32)
    b[cells : 2 * cells] = 1.0
    return b


def gates(z, cells: int):
    """The input, forget and output gates and the candidate value from an LSTM's
    pre-activations z (B, 4 cells, then anything else), in that order."""
    i, f, o = (pt.sigmoid(z[:, k * cells : (k + 1) * cells]) for k in range(3))
    return i, f, o, pt.tanh(z[:, 3 * cells : 4 * cells])


def project(x, W):
    """x (..., n) @ W (n, m) -> (..., m) as one 2-D product.

    PyTensor differentiates a batched product `x @ W` into one product per
    leading index, summed afterwards: for the softmax layer of the default
    model that took 15 of the training step's 130 ms, against about 3 for the
    one product this gives.
    """
    rows = x.reshape((-1, x.shape[-1])) @ W
    return rows.reshape((*(x.shape[i] for i in range(x.ndim - 1)), W.shape[-1]))


def next_step_error(prediction, actual, T: int):
    """Half the squared error of prediction(t) against actual(t + 1), summed over units and
    averaged over the rest: (T, B, n) each. A window of one step has no pair: 0."""
    if T == 1:
        return pt.constant(np.float32(0))
    return 0.5 * ((prediction[:-1] - actual[1:]) ** 2).sum(axis=-1).mean()


def log_add_exp(a, b):
    """log(exp(a) + exp(b)) without overflow. The shift m is held out of the gradient,
    which is then exactly the softmax weights of a and b, ties included (the
    gradient of maximum and abs would count a tie twice)."""
    m = zero_grad(pt.maximum(a, b))
    return m + pt.log(pt.exp(a - m) + pt.exp(b - m))


def log_cumsum_exp(y, T: int):
    """log(cumsum(exp(y), axis=0)) of y (T, ...), computed at once: PyTensor has no such
    operation, so this is the Hillis-Steele scan, log2(T) rounds in which every
    position adds the running total 1, 2, 4, ... positions back (T log T work,
    no step-by-step loop; the gradient follows by differentiation)."""
    shift = 1
    while shift < T:
        y = pt.concatenate([y[:shift], log_add_exp(y[shift:], y[:-shift])], axis=0)
        shift *= 2
    return y


def linear_scan(log_a, log_b, h0, T: int):
    """Every h_t of h_t = a_t h_(t-1) + b_t over a window, from log a and log b (T, B, H),
    b > 0, and h0 (B, H) of any sign: with A_t = log a_1 + ... + log a_t,

        h_t = exp(A_t) h0 + exp(A_t + log sum_(s <= t) exp(log b_s - A_s)),

    cumulative sums and a cumulative log-sum-exp, as Heinsen (2023) and minGRU
    (Feng et al. 2024) compute it. h0 is kept out of the logarithm, so a zero or
    negative state needs no special case."""
    A = pt.cumsum(log_a, axis=0)
    return pt.exp(A) * h0 + pt.exp(A + log_cumsum_exp(log_b - A, T))


# The protocol of a character language model (see protocol.py).

EXPLODES = 3.0  # cross-entropy starts near log V: three times that is divergence
BITS = True  # the loss is a cross-entropy in nats, shown in bits per character too


def next_char(x, y):
    """A language model learns the next character."""
    return y


def log_probs(logits, y):
    """log p(y) for every position: logits (T, B, V), y (T, B) -> (T, B)."""
    lp = pt.special.log_softmax(logits, axis=-1)
    return pt.take_along_axis(lp, y[..., None], axis=-1)[..., 0]


def cross_entropy(fw, y):
    """Mean cross-entropy of the targets, in nats."""
    return -log_probs(fw.logits, y).mean()


def unscheduled(cfg, step: int) -> dict[str, float]:
    """A net whose graph does not change with the training step."""
    return {}
