"""What minGRU and minLSTM share (Feng, Tung, Ahmed, Bengio and Hajimirsadeghi 2024,
"Were RNNs all we needed?"): residual blocks around a recurrence whose gates
read only the input, so that it is linear in the state,

    h_t = a_t * h_(t-1) + b_t,

and every product of a window is computed at once, for all its positions, the
recurrence alone left to `ops.linear_recurrence` (one operation: a scan of
elementwise products on the CPU, the parallel scan on other devices; see
ops.py for why not the paper's log-space form). A window of one character is
the same recurrence, one step: sampling, `guess` and carried state need
nothing else.

The stack, as the paper's language models build it: parts.py's pre-norm
residual blocks, whose own part is

    mix_l(v) = scan(cell(v W + b))          W: `block.l.W` (H, k H), b: `block.l.b`.

The cell (mingru.py, minlstm.py) turns the k H pre-activations of each
position into a and b; the candidate value goes through g(x) = x + 1/2
(x >= 0), sigmoid(x) (x < 0), as the paper's does. The state carried between windows is each block's last h, (L, B, H).
Internals, per block: `block.l.h` (the recurrence's h), `.f` (a_t, what is
kept), `.i` (the input gate: b_t = i_t g(h~_t)), each (T, B, H).
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt

from longmem import ops
from longmem.config import ModelConfig
from longmem.nets import parts
from longmem.nets.parts import project
from longmem.nets.protocol import Diagram, Forward

EMBEDDINGS = ("embed",)  # the parameters indexed by the window's codes


def init_params(cfg: ModelConfig, vocab_size: int, rng: np.random.Generator, width: int) -> dict[str, np.ndarray]:
    """parts.residual_params, with `width` pre-activations per unit for the cell."""

    def mixer(l: int, H: int, draw) -> dict[str, np.ndarray]:
        return {f"block.{l}.W": draw(H, width * H), f"block.{l}.b": np.zeros(width * H, np.float32)}

    return parts.residual_params(cfg, vocab_size, rng, mixer)


def init_state(cfg: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    """The state a window starts from: each block's h, (L, B, H), zero."""
    return {"h": np.zeros((cfg.layers, batch, cfg.hidden), np.float32)}


noise = parts.residual_noise


def activations(cfg: ModelConfig, T: int) -> int:
    """Per position and layer: about 30 values per unit (the cell's pre-activations,
    the recurrence, the feed-forward layer, the norms)."""
    return cfg.layers * cfg.hidden * 30


def g(x):
    """The candidate value's activation: positive, linear above 0."""
    return pt.switch(x >= 0, x + np.float32(0.5), pt.sigmoid(x))


def forward(params: dict, x, state: dict, masks: dict | None, cell) -> Forward:
    """Logits for every position of a window x (T, B) of codes; `cell(k, H)` -> (a, b,
    internals) from the pre-activations k (T, B, width H)."""
    layers, T, B = state["h"].type.shape[0], *x.type.shape
    H = params["embed"].type.shape[1]
    internals, last = {}, []

    def scan(l, v):
        a, b, inside = cell(project(v, params[f"block.{l}.W"]) + params[f"block.{l}.b"], H)
        hs = pt.specify_shape(ops.linear_recurrence(a, b, state["h"][l]), (T, B, H))
        internals.update({f"block.{l}.{name}": value for name, value in {"h": hs, **inside}.items()})
        last.append(hs[-1])
        return hs

    logits = parts.residual_blocks(params, x, layers, masks, scan)
    return Forward(logits, {"h": pt.stack(last)}, internals, {})


def describe(cfg: ModelConfig, name: str) -> str:
    return f"{cfg.layers} x {cfg.hidden} {name} blocks (feed-forward {parts.FF * cfg.hidden})"


def diagram(cfg: ModelConfig, name: str, gates: str, recurrence: str) -> Diagram:
    def mixer(d, group, norm):
        gate = d.node(f"{group}.gates", gates, group=group)
        scan = d.node(f"{group}.scan", f"{recurrence}\n(a linear recurrence)", group=group)
        d.edge(norm, gate, "W u + b")
        d.edge(gate, scan, "a, b")
        d.edge("state", scan, f"{group} h")
        d.edge(scan, "next state", f"{group} h(T)")
        return scan, "h"

    return parts.residual_diagram(cfg, f"block {{l}}: {name}, {cfg.hidden} units", mixer, "u = x + h")
