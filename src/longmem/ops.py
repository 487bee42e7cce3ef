"""Operations PyTensor lacks, added once here: the linear recurrence of minGRU and
minLSTM.

`linear_recurrence(a, b, h0)` is every h_t of

    h_t = a_t * h_(t-1) + b_t,      a, b (T, ...), h0 (...), h_(-1) = h0,

as one operation. On the JAX backend it is `jax.lax.scan` on the CPU and
`jax.lax.associative_scan` (log T depth, the parallel scan) on other devices;
on the others, a NumPy loop (`perform`). Its gradient is the same recurrence
run backwards, the adjoint

    lambda_t = g_t + a_(t+1) * lambda_(t+1),   da_t = lambda_t h_(t-1),  db_t = lambda_t,
    dh0 = a_0 lambda_0,

so the backward pass is one operation too.

Why not the log-space parallel scan of Feng et al. (cumulative sums and a
cumulative log-sum-exp, as PyTensor graphs): with a and b in (0, 1) the
recurrence needs no logarithms to be stable, and on 2 CPU cores, for T = 1024,
B = 32, H = 128, the training step's recurrence (forward and gradient) took
2,138 ms that way, 198 ms as a doubling scan of products and 37 ms step by
step (measured in one process; `jax.lax.associative_scan` took 60 ms and
`jax.lax.scan` 33). A GPU is where the parallel form pays.
"""

from __future__ import annotations

import functools

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op


class LinearRecurrence(Op):
    """(a, b, h0) -> h, h_t = a_t h_(t-1) + b_t over the first axis; `reverse` runs it
    from the last t to the first (h_T-1 = a_T-1 h0 + b_T-1)."""

    __props__ = ("reverse",)

    def __init__(self, reverse: bool = False):
        self.reverse = reverse

    def make_node(self, a, b, h0):
        a, b, h0 = (pt.as_tensor_variable(v) for v in (a, b, h0))
        if a.type.ndim != b.type.ndim or h0.type.ndim != a.type.ndim - 1:
            raise TypeError("linear_recurrence: a and b (T, ...) and h0 (...) must agree in rank")
        return Apply(self, [a, b, h0], [b.type()])

    def perform(self, node, inputs, outputs):
        a, b, h0 = inputs
        h, out = h0, np.empty_like(b)
        for t in (range(len(b) - 1, -1, -1) if self.reverse else range(len(b))):
            h = out[t] = a[t] * h + b[t]
        outputs[0][0] = out

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[1]]

    def pullback(self, inputs, outputs, cotangents):
        a, b, h0 = inputs
        (h,), (g,) = outputs, cotangents
        # lambda_t = g_t + a_(t+1) lambda_(t+1): the same recurrence the other way, with a
        # moved one step (the last lambda reads no a).
        later = pt.concatenate([a[1:], pt.zeros_like(a[:1])]) if not self.reverse else \
            pt.concatenate([pt.zeros_like(a[:1]), a[:-1]])
        lam = LinearRecurrence(not self.reverse)(later, g, pt.zeros_like(h0))
        before = pt.concatenate([h0[None], h[:-1]]) if not self.reverse else pt.concatenate([h[1:], h0[None]])
        first = a[0] * lam[0] if not self.reverse else a[-1] * lam[-1]
        return [lam * before, lam, first]


def linear_recurrence(a, b, h0, reverse: bool = False):
    return LinearRecurrence(reverse)(a, b, h0)


PARALLEL = None  # the JAX backend's choice: None, by device (parallel off the CPU); True or False to force it


@functools.cache
def register_jax() -> None:
    """Give the JAX backend these operations. engine.configure calls it once float32 is
    PyTensor's float type: importing PyTensor's JAX dispatch reads that type (and
    turns JAX's 64-bit mode on under float64)."""
    from pytensor.link.jax.dispatch import jax_funcify

    jax_funcify.register(LinearRecurrence)(_jax_linear_recurrence)


def _jax_linear_recurrence(op, **kwargs):
    import jax

    def sequential(a, b, h0):
        def step(h, ab):
            h = ab[0] * h + ab[1]
            return h, h

        return jax.lax.scan(step, h0, (a, b), reverse=op.reverse)[1]

    def parallel(a, b, h0):
        def combine(first, then):  # (a1, b1) then (a2, b2): h -> a2 (a1 h + b1) + b2
            return first[0] * then[0], then[0] * first[1] + then[1]

        edge = -1 if op.reverse else 0
        b = b.at[edge].add(a[edge] * h0)
        return jax.lax.associative_scan(combine, (a, b), reverse=op.reverse)[1]

    def linear_recurrence(a, b, h0):
        h0 = jax.numpy.broadcast_to(h0, b.shape[1:]).astype(b.dtype)  # the carry's type, exactly
        a = a.astype(b.dtype)
        chosen = jax.default_backend() != "cpu" if PARALLEL is None else PARALLEL
        return (parallel if chosen else sequential)(a, b, h0)

    return linear_recurrence
