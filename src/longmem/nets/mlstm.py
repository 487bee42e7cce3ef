"""mLSTM, the matrix-memory cell of xLSTM (Beck, Poeppel, Spanring, ..., Hochreiter
2024), in parts.py's pre-norm residual blocks. Each of `--heads` heads keeps a
matrix memory C (d x d, d = H / heads), a normaliser n (d) and a stabiliser m
(a number). From the block's normalised input u_t (no hidden-to-hidden
connection: every gate reads the input only),

    q, k, v = u Wqkv (k divided by sqrt d),   i~, f~ = u Wg + bg (one of each a head),
    o = sigmoid(u Wo + bo),
    m_t = max(log sigmoid(f~) + m_(t-1), i~)                 (exp never overflows)
    i' = exp(i~ - m_t),  f' = exp(log sigmoid(f~) + m_(t-1) - m_t)
    C_t = f' C_(t-1) + i' k v^T,   n_t = f' n_(t-1) + i' k
    h~_t = q^T C_t / max(|q . n_t|, exp(-m_t)),   mix(u) = (o * h~) Wout,

the recurrent form of the official NX-AI/xlstm code (its
`recurrent_step_stabilized_simple`), step by step over the window; the forget
gates' biases start between 3 and 6 across the heads (memories that last 20 to
400 characters), as that code starts them.

Parameters, per block l: `block.l.Wqkv` (H, 3H), `block.l.Wg` (H, 2 heads) and
`block.l.bg` (input gates, then forget gates), `block.l.Wo` (H, H), `block.l.bo`,
`block.l.Wout` (H, H). State: `C` (L, B, heads, d, d), `n` (L, B, heads, d), `m`
(L, B, heads). Internals: `block.l.h` (o * h~, (T, B, H)), `block.l.i` and
`block.l.f` (the stabilised gates i' and f', (T, B, heads)), `block.l.o`.
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
EPS = np.float32(1e-6)

# A character language model, as parts.py defines one.
target, loss, schedule = parts.next_char, parts.cross_entropy, parts.unscheduled
noise = parts.residual_noise


def init_params(cfg: ModelConfig, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if cfg.hidden % cfg.heads:
        raise UserError(f"--hidden {cfg.hidden} must be a multiple of --heads {cfg.heads}")

    def mixer(l: int, H: int, draw) -> dict[str, np.ndarray]:
        gates = np.concatenate([np.zeros(cfg.heads), np.linspace(3.0, 6.0, cfg.heads)]).astype(np.float32)
        return {f"block.{l}.Wqkv": draw(H, 3 * H), f"block.{l}.Wg": draw(H, 2 * cfg.heads), f"block.{l}.bg": gates,
                f"block.{l}.Wo": draw(H, H), f"block.{l}.bo": np.zeros(H, np.float32),
                f"block.{l}.Wout": draw(H, H)}

    return parts.residual_params(cfg, vocab_size, rng, mixer)


def init_state(cfg: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    """Empty memories: C, n and m zero."""
    L, heads, d = cfg.layers, cfg.heads, cfg.hidden // cfg.heads
    return {"C": np.zeros((L, batch, heads, d, d), np.float32), "n": np.zeros((L, batch, heads, d), np.float32),
            "m": np.zeros((L, batch, heads), np.float32)}


def activations(cfg: ModelConfig, T: int) -> int:
    """Per position and layer: about 30 values per unit, and the matrix memory, which
    the gradient keeps at every step (H x d)."""
    return cfg.layers * cfg.hidden * (30 + cfg.hidden // cfg.heads)


def step(q, k, v, i, log_f, C, n, m):
    """One character: q, k, v (B, heads, d), i and log f (B, heads); the state before
    -> (h~, C, n, m, i', f')."""
    m_new = pt.maximum(log_f + m, i)
    f_act, i_act = pt.exp(log_f + m - m_new), pt.exp(i - m_new)
    C = f_act[..., None, None] * C + i_act[..., None, None] * (k[..., :, None] * v[..., None, :])
    n = f_act[..., None] * n + i_act[..., None] * k
    numerator = (q[..., :, None] * C).sum(axis=-2)  # q^T C: (B, heads, d)
    denominator = pt.maximum(pt.abs((q * n).sum(axis=-1)), pt.exp(-m_new)) + EPS
    return numerator / denominator[..., None], C, n, m_new, i_act, f_act


def forward(params: dict, x, state: dict, masks: dict | None = None, schedule: dict | None = None) -> Forward:
    layers, B, heads, d = state["n"].type.shape
    T, H = x.type.shape[0], heads * d
    internals, memories = {}, []

    def mix(l, u):
        qkv = project(u, params[f"block.{l}.Wqkv"]).reshape((T, B, 3, heads, d))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1] * np.float32(d**-0.5), qkv[:, :, 2]
        gates = project(u, params[f"block.{l}.Wg"]) + params[f"block.{l}.bg"]  # (T, B, 2 heads)
        i, log_f = gates[..., :heads], -pt.softplus(-gates[..., heads:])
        (h, C, n, m, i_act, f_act) = pytensor.scan(
            step, sequences=[q, k, v, i, log_f],
            outputs_info=[None, state["C"][l], state["n"][l], state["m"][l], None, None],
            n_steps=T, return_updates=False)
        memories.append((C[-1], n[-1], m[-1]))
        o = pt.sigmoid(project(u, params[f"block.{l}.Wo"]) + params[f"block.{l}.bo"])
        out = o * pt.specify_shape(h, (T, B, heads, d)).reshape((T, B, H))
        internals.update({f"block.{l}.h": out, f"block.{l}.i": i_act, f"block.{l}.f": f_act, f"block.{l}.o": o})
        return project(out, params[f"block.{l}.Wout"])

    logits = parts.residual_blocks(params, x, layers, masks, mix)
    new = {name: pt.stack([memory[k] for memory in memories]) for k, name in enumerate(("C", "n", "m"))}
    return Forward(logits, new, internals, {})


def describe(cfg: ModelConfig) -> str:
    return (f"{cfg.layers} x {cfg.hidden} mLSTM blocks, {cfg.heads} heads of {cfg.hidden // cfg.heads} x "
            f"{cfg.hidden // cfg.heads} memories (feed-forward {parts.FF * cfg.hidden})")


def diagram(cfg: ModelConfig) -> Diagram:
    def mixer(d, group, norm):
        gates = d.node(f"{group}.gates", "q, k, v = Wqkv u; i~, f~ = Wg u + bg; o = sigmoid(Wo u + bo)\n"
                       "(from the input only)", group=group)
        memory = d.node(f"{group}.memory", "m = max(log sigmoid(f~) + m, i~)\nC = f' C + i' k v^T, n = f' n + i' k",
                        group=group)
        read = d.node(f"{group}.read", "h = o * q^T C / max(|q . n|, exp(-m))", group=group)
        d.edge(norm, gates)
        d.edge(gates, memory, "k, v, i~, f~")
        d.edge(memory, memory, "C, n, m (t-1)", "recurrent")
        d.edge("state", memory, f"{group} C, n, m")
        d.edge(memory, "next state", f"{group} C, n, m")
        d.edge(gates, read, "q, o")
        d.edge(memory, read, "C, n, m")
        return read, "h"

    return parts.residual_diagram(cfg, f"block {{l}}: mLSTM, {cfg.heads} heads", mixer, "u = x + Wout h")
