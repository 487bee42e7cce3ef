"""sLSTM, the scalar-memory cell of xLSTM (Beck, Poeppel, Spanring, ..., Hochreiter
2024), in parts.py's pre-norm residual blocks. An LSTM whose input and forget
gates are exponential, held in range by a stabiliser state m, with a normaliser
state n, and whose recurrent connections are block-diagonal: each of `--heads`
heads of d = H / heads units reads only its own units' last h. From the
block's normalised input u_t and h_(t-1),

    z~, i~, f~, o~ = u W + b + (h_(t-1) R, head by head)
    m_t = max(log sigmoid(f~) + m_(t-1), i~)       (i~ where n_(t-1) is 0: nothing stored yet)
    i' = exp(i~ - m_t),  f' = exp(log sigmoid(f~) + m_(t-1) - m_t)
    c_t = f' c_(t-1) + i' tanh(z~),   n_t = f' n_(t-1) + i',   h_t = sigmoid(o~) c_t / n_t,

the equations of the official NX-AI/xlstm code's vanilla sLSTM cell, step by
step; mix(u) = h. The forget gates' biases start between 3 and 6 across the
heads, the others at 0. (The paper's block adds a causal convolution before
the input and forget gates and a gated feed-forward layer; here the block is
the same as the other recurrent models', so the cell is what differs.)

Parameters, per block l: `block.l.W` (H, 4H: z, i, f, o, each H), `block.l.b`,
`block.l.R` (heads, d, 4d: each head's h to its z, i, f, o). State: `h`, `c`,
`n`, `m` (L, B, H). Internals, as the LSTM's: `block.l.h`, `.c` and the gates
`.i`, `.f` (the stabilised i', f'), `.o`, each (T, B, H).
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt

from longmem.config import ModelConfig
from longmem.errors import UserError
from longmem.nets import parts
from longmem.nets.parts import BITS, EXPLODES, log_probs, project  # noqa: F401 (the protocol's)
from longmem.nets.protocol import Diagram, Forward

EMBEDDINGS = ("embed",)  # the parameters indexed by the window's codes
OPTIONS = {"heads"}  # the model options (per_net in config.py) it reads
STATE = ("h", "c", "n", "m")

# A character language model, as parts.py defines one.
target, loss, schedule = parts.next_char, parts.cross_entropy, parts.unscheduled
noise = parts.residual_noise


def init_params(cfg: ModelConfig, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if cfg.hidden % cfg.heads:
        raise UserError(f"--hidden {cfg.hidden} must be a multiple of --heads {cfg.heads}")
    heads, d = cfg.heads, cfg.hidden // cfg.heads

    def mixer(l: int, H: int, draw) -> dict[str, np.ndarray]:
        b = np.zeros(4 * H, np.float32)
        b[2 * H : 3 * H] = np.repeat(np.linspace(3.0, 6.0, heads), d)
        return {f"block.{l}.W": draw(H, 4 * H), f"block.{l}.b": b, f"block.{l}.R": draw(heads, d, 4 * d)}

    return parts.residual_params(cfg, vocab_size, rng, mixer)


def init_state(cfg: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    """Nothing stored: h, c, n and m zero."""
    return {name: np.zeros((cfg.layers, batch, cfg.hidden), np.float32) for name in STATE}


def step(pre, h, c, n, m, R):
    """One character: the input's pre-activations pre (B, 4H) and the state before ->
    (h, c, n, m, i', f', o)."""
    heads, d = R.type.shape[0], R.type.shape[1]
    B, H = h.type.shape[0], heads * d
    rec = pt.matmul(h.reshape((B, heads, d)).transpose(1, 0, 2), R)  # (heads, B, 4d)
    z = pre + rec.reshape((heads, B, 4, d)).transpose(1, 2, 0, 3).reshape((B, 4 * H))
    log_f = -pt.softplus(-z[:, 2 * H : 3 * H])
    i_pre = z[:, H : 2 * H]
    m_new = pt.switch(pt.eq(n, 0), i_pre, pt.maximum(log_f + m, i_pre))
    i_act, f_act = pt.exp(i_pre - m_new), pt.exp(log_f + m - m_new)
    o = pt.sigmoid(z[:, 3 * H :])
    c = f_act * c + i_act * pt.tanh(z[:, :H])
    n = f_act * n + i_act
    return o * c / n, c, n, m_new, i_act, f_act, o


def forward(params: dict, x, state: dict, masks: dict | None = None, schedule: dict | None = None) -> Forward:
    layers, B, H = state["h"].type.shape
    T = x.type.shape[0]
    internals, last = {}, []

    def mix(l, u):
        pre = project(u, params[f"block.{l}.W"]) + params[f"block.{l}.b"]  # (T, B, 4H)
        h, c, n, m, i, f, o = pytensor.scan(
            step, sequences=[pre], outputs_info=[*(state[name][l] for name in STATE), None, None, None],
            non_sequences=[params[f"block.{l}.R"]], n_steps=T, return_updates=False, strict=True)
        last.append({name: value[-1] for name, value in zip(STATE, (h, c, n, m))})
        internals.update({f"block.{l}.{name}": value for name, value in zip("hcifo", (h, c, i, f, o))})
        return pt.specify_shape(h, (T, B, H))

    logits = parts.residual_blocks(params, x, layers, masks, mix)
    return Forward(logits, {name: pt.stack([each[name] for each in last]) for name in STATE}, internals, {})


def describe(cfg: ModelConfig) -> str:
    return (f"{cfg.layers} x {cfg.hidden} sLSTM blocks, {cfg.heads} heads of {cfg.hidden // cfg.heads} cells "
            f"(feed-forward {parts.FF * cfg.hidden})")


def diagram(cfg: ModelConfig) -> Diagram:
    def mixer(d, group, norm):
        gates = d.node(f"{group}.gates", "z~, i~, f~, o~ = W u + b + R h(t-1), head by head", group=group)
        cell = d.node(f"{group}.cell", "m = max(log sigmoid(f~) + m, i~)\nc = f' c + i' tanh(z~), n = f' n + i'\n"
                      "h = sigmoid(o~) c / n", group=group)
        d.edge(norm, gates)
        d.edge(gates, cell)
        d.edge(cell, gates, "h(t-1)", "recurrent")
        d.edge("state", cell, f"{group} h, c, n, m")
        d.edge(cell, "next state", f"{group} h, c, n, m")
        return cell, "h"

    return parts.residual_diagram(cfg, f"block {{l}}: sLSTM, {cfg.heads} heads of {cfg.hidden // cfg.heads} cells",
                                  mixer, "u = x + h")
