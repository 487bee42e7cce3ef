"""What several nets share: their initialisation, the LSTM's gates, the language
model's target and loss, the batched product of a whole window, and the
pre-norm residual blocks that minGRU,
minLSTM and the transformer are built of.

A net takes these as its own protocol functions (`target = parts.next_char`)
or calls them while it builds its graph; nothing here compiles.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt


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


# Pre-norm residual blocks (minrnn.py, transformer.py): an embedding `embed` (V, H),
# then per block l, with RMSNorm gains `block.l.norm` and `block.l.ff.norm` (H,),
#
#     u = x + drop(mix_l(norm(x)))                       the block's own part (a scan, attention)
#     x = u + drop(W2 gelu(W1 norm(u) + b1) + b2)        `block.l.ff.W1` (H, 4H), `.ff.W2` (4H, H)
#
# and a last RMSNorm `norm` before the softmax layer `out.W` (H, V), `out.b`.
# Dropout (`block.l.dropout`, `block.l.ff.dropout`) is on each branch's output.

FF = 4  # the feed-forward layer's width, in multiples of H
NORM_EPS = 1e-6


def residual_params(cfg, vocab_size: int, rng: np.random.Generator, mixer) -> dict[str, np.ndarray]:
    """The blocks' parameters, weights uniform in [-init_scale, init_scale], biases 0,
    norm gains 1; `mixer(l, H, uniform)` gives block l's own (`block.l.*`)."""
    H, V, draw = cfg.hidden, vocab_size, uniform(rng, cfg.init_scale)
    params = {"embed": draw(V, H)}
    for l in range(cfg.layers):
        params |= {f"block.{l}.norm": np.ones(H, np.float32), **mixer(l, H, draw),
                   f"block.{l}.ff.norm": np.ones(H, np.float32), f"block.{l}.ff.W1": draw(H, FF * H),
                   f"block.{l}.ff.b1": np.zeros(FF * H, np.float32), f"block.{l}.ff.W2": draw(FF * H, H),
                   f"block.{l}.ff.b2": np.zeros(H, np.float32)}
    return params | {"norm": np.ones(H, np.float32), "out.W": draw(H, V), "out.b": np.zeros(V, np.float32)}


def residual_noise(cfg, T: int, B: int) -> dict[str, tuple[tuple, str]]:
    """Dropout on the output of each block's two branches, before it is added."""
    if cfg.dropout == 0:
        return {}
    return {f"block.{l}.{branch}dropout": ((T, B, cfg.hidden), "dropout")
            for l in range(cfg.layers) for branch in ("", "ff.")}


def residual_blocks(params: dict, x, layers: int, masks: dict | None, mix):
    """Logits (T, B, V) of the window x (T, B) through the blocks; `mix(l, v)` is block
    l's own part, from the normalised v (T, B, H) to its output (T, B, H)."""
    masks = masks or {}

    def drop(v, name):
        return v * masks[name] if name in masks else v

    u = params["embed"][x]
    for l in range(layers):
        u = u + drop(mix(l, rms_norm(u, params[f"block.{l}.norm"])), f"block.{l}.dropout")
        v = gelu(project(rms_norm(u, params[f"block.{l}.ff.norm"]), params[f"block.{l}.ff.W1"])
                 + params[f"block.{l}.ff.b1"])
        u = u + drop(project(v, params[f"block.{l}.ff.W2"]) + params[f"block.{l}.ff.b2"], f"block.{l}.ff.dropout")
    return project(rms_norm(u, params["norm"]), params["out.W"]) + params["out.b"]


def residual_diagram(cfg, title: str, mixer, added: str):
    """The diagram of the blocks (see protocol.Diagram): embedding, then per block
    RMSNorm, the block's own part, the residual add (labelled `added`), the
    feed-forward layer and its add. `mixer(d, group, norm)` draws block `group`'s
    own part from the node `norm` and returns (its output node, the edge's label);
    `title` names a block (with {l} for its number)."""
    from longmem.nets.protocol import Diagram, probability

    d = Diagram()
    source = d.node("embed", "embedding embed[x]")
    d.edge("x", source)
    for l in range(cfg.layers):
        group = f"block.{l}"
        d.groups[group] = (title.format(l=l) + f", feed-forward {FF * cfg.hidden}", [])
        norm = d.node(f"{group}.norm", "RMSNorm", group=group)
        d.edge(source, norm)
        mixed, label = mixer(d, group, norm)
        dropped = f" (dropout {probability(cfg.dropout)})" if cfg.dropout != 0 else ""
        add = d.node(f"{group}.add", added + dropped, group=group)
        ff = d.node(f"{group}.ff", "W2 gelu(W1 RMSNorm(u) + b1) + b2", group=group)
        out = d.node(f"{group}.out", "u + feed-forward", group=group)
        d.edge(mixed, add, label)
        d.edge(source, add, "x (residual)")
        d.edge(add, ff)
        d.edge(ff, out)
        d.edge(add, out, "u (residual)")
        source = out
    d.edge(source, "logits", "out.W RMSNorm(x) + out.b")
    return d


def rms_norm(x, gain):
    """x (..., H) divided by its root mean square over H, times the gain (H,)."""
    return x / pt.sqrt((x * x).mean(axis=-1, keepdims=True) + NORM_EPS) * gain


def gelu(x):
    """The tanh approximation of GELU (Hendrycks and Gimpel 2016)."""
    return 0.5 * x * (1 + pt.tanh(np.float32(np.sqrt(2 / np.pi)) * (x + np.float32(0.044715) * x**3)))


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
