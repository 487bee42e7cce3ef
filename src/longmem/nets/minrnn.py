"""What minGRU and minLSTM share (Feng, Tung, Ahmed, Bengio and Hajimirsadeghi 2024,
"Were RNNs all we needed?"): residual blocks around a recurrence whose gates
read only the input, so that it is linear in the state,

    h_t = a_t * h_(t-1) + b_t,

and a whole window is computed at once by `parts.linear_scan` (cumulative
sums and a cumulative log-sum-exp) instead of step by step. A window of one
character is the same recurrence, one step: sampling, `guess` and carried
state need nothing else.

The stack, as the paper's language models build it: an embedding `embed`
(V, H), then per block l, with RMSNorm gains `block.l.norm` and
`block.l.ff.norm` (H,),

    u = x + drop(scan(cell(norm(x) W + b)))          W: `block.l.W` (H, k H), b: `block.l.b`
    x = u + drop(W2 gelu(W1 norm(u) + b1) + b2)      `block.l.ff.W1` (H, 4H), `.ff.W2` (4H, H)

and a last RMSNorm `norm` before the softmax layer `out.W` (H, V), `out.b`.
The cell (mingru.py, minlstm.py) turns the k H pre-activations of each
position into log a and log b; the candidate value goes through
g(x) = x + 1/2 (x >= 0), sigmoid(x) (x < 0), which is positive, so log b
exists. The state carried between windows is each block's last h, (L, B, H).
Internals, per block: `block.l.h` (the recurrence's h), `.f` (a_t, what is
kept), `.i` (the input gate: b_t = i_t g(h~_t)), each (T, B, H).
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt

from longmem.config import ModelConfig
from longmem.nets import parts
from longmem.nets.parts import project
from longmem.nets.protocol import Diagram, Forward

EMBEDDINGS = ("embed",)  # the parameters indexed by the window's codes
FF = 4  # the feed-forward layer's width, in multiples of H
NORM_EPS = 1e-6


def init_params(cfg: ModelConfig, vocab_size: int, rng: np.random.Generator, width: int) -> dict[str, np.ndarray]:
    """Weights uniform in [-init_scale, init_scale], biases 0, norm gains 1; `width`
    pre-activations per unit for the cell."""
    H, V, uniform = cfg.hidden, vocab_size, parts.uniform(rng, cfg.init_scale)
    params = {"embed": uniform(V, H)}
    for l in range(cfg.layers):
        params |= {f"block.{l}.norm": np.ones(H, np.float32), f"block.{l}.W": uniform(H, width * H),
                   f"block.{l}.b": np.zeros(width * H, np.float32), f"block.{l}.ff.norm": np.ones(H, np.float32),
                   f"block.{l}.ff.W1": uniform(H, FF * H), f"block.{l}.ff.b1": np.zeros(FF * H, np.float32),
                   f"block.{l}.ff.W2": uniform(FF * H, H), f"block.{l}.ff.b2": np.zeros(H, np.float32)}
    params |= {"norm": np.ones(H, np.float32), "out.W": uniform(H, V), "out.b": np.zeros(V, np.float32)}
    return params


def init_state(cfg: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    """The state a window starts from: each block's h, (L, B, H), zero."""
    return {"h": np.zeros((cfg.layers, batch, cfg.hidden), np.float32)}


def noise(cfg: ModelConfig, T: int, B: int) -> dict[str, tuple[tuple, float]]:
    """Dropout on the output of each block's two branches, before it is added."""
    if cfg.dropout <= 0:
        return {}
    return {f"block.{l}.{branch}dropout": ((T, B, cfg.hidden), cfg.dropout)
            for l in range(cfg.layers) for branch in ("", "ff.")}


def rms_norm(x, gain):
    """x (..., H) divided by its root mean square over H, times the gain (H,)."""
    return x / pt.sqrt((x * x).mean(axis=-1, keepdims=True) + NORM_EPS) * gain


def gelu(x):
    """The tanh approximation of GELU (Hendrycks and Gimpel 2016)."""
    return 0.5 * x * (1 + pt.tanh(np.float32(np.sqrt(2 / np.pi)) * (x + np.float32(0.044715) * x**3)))


def log_g(x):
    """log g(x), g the positive activation of the candidate value."""
    return pt.switch(x >= 0, pt.log(pt.maximum(x, 0) + np.float32(0.5)), -pt.softplus(-x))


def forward(params: dict, x, state: dict, masks: dict | None, cell) -> Forward:
    """Logits for every position of a window x (T, B) of codes, each block's
    recurrence computed by the parallel scan; `cell(k, H)` -> (log a, log b,
    internals) from the pre-activations k (T, B, width H)."""
    layers, T, B = state["h"].type.shape[0], *x.type.shape
    H = params["embed"].type.shape[1]
    masks = masks or {}
    drop = lambda v, name: v * masks[name] if name in masks else v  # noqa: E731
    u, internals, last = params["embed"][x], {}, []  # (T, B, H)
    for l in range(layers):
        k = project(rms_norm(u, params[f"block.{l}.norm"]), params[f"block.{l}.W"]) + params[f"block.{l}.b"]
        log_a, log_b, inside = cell(k, H)
        hs = pt.specify_shape(parts.linear_scan(log_a, log_b, state["h"][l], T), (T, B, H))
        internals |= {f"block.{l}.{name}": value for name, value in {"h": hs, **inside}.items()}
        last.append(hs[-1])
        u = u + drop(hs, f"block.{l}.dropout")
        v = gelu(project(rms_norm(u, params[f"block.{l}.ff.norm"]), params[f"block.{l}.ff.W1"])
                 + params[f"block.{l}.ff.b1"])
        u = u + drop(project(v, params[f"block.{l}.ff.W2"]) + params[f"block.{l}.ff.b2"], f"block.{l}.ff.dropout")
    logits = project(rms_norm(u, params["norm"]), params["out.W"]) + params["out.b"]
    return Forward(logits, {"h": pt.stack(last)}, internals, {})


def describe(cfg: ModelConfig, name: str) -> str:
    return f"{cfg.layers} x {cfg.hidden} {name} blocks (feed-forward {FF * cfg.hidden})"


def diagram(cfg: ModelConfig, name: str, gates: str, recurrence: str) -> Diagram:
    d = Diagram()
    source = d.node("embed", "embedding embed[x]")
    d.edge("x", source)
    for l in range(cfg.layers):
        group = f"block.{l}"
        d.groups[group] = (f"block {l}: {name}, {cfg.hidden} units, feed-forward {FF * cfg.hidden}", [])
        norm = d.node(f"{group}.norm", "RMSNorm", group=group)
        gate = d.node(f"{group}.gates", gates, group=group)
        scan = d.node(f"{group}.scan", f"{recurrence}\nall t at once: parallel scan in log space", group=group)
        add = d.node(f"{group}.add", "u = x + h" + (f" (dropout {cfg.dropout:g} on h)" if cfg.dropout else ""),
                     group=group)
        ff = d.node(f"{group}.ff", "W2 gelu(W1 RMSNorm(u) + b1) + b2", group=group)
        out = d.node(f"{group}.out", "u + feed-forward", group=group)
        d.edge(source, norm)
        d.edge(norm, gate, "W u + b")
        d.edge(gate, scan, "log a, log b")
        d.edge("state", scan, f"{group} h")
        d.edge(scan, "next state", f"{group} h(T)")
        d.edge(scan, add, "h")
        d.edge(source, add, "x (residual)")
        d.edge(add, ff)
        d.edge(ff, out)
        d.edge(add, out, "u (residual)")
        source = out
    d.edge(source, "logits", "out.W RMSNorm(x) + out.b")
    return d
