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
    h~_t = q^T C_t / max(|q . n_t|, exp(-m_t)),
    mix(u) = (o * RMSNorm_head(h~)) Wout          (each head's d values normalised alone),

the recurrence of the official NX-AI/xlstm code (its
`recurrent_step_stabilized_simple`, and its `outnorm` as an RMSNorm), read
CHUNK characters at a time in the paper's parallel form (see chunk), chunk to
chunk by a scan: the same values as step by step, in batched products over a
chunk instead of a loop over every character (at windows of 256, 3 x 112 with
4 heads trains about 3 times as fast as by the step-by-step scan). As that
code starts them, the gates read nothing of the input yet, and the forget
gates' biases start between 3 and 6 across the heads (memories that last 20 to
400 characters).

Parameters, per block l: `block.l.Wqkv` (H, 3H), `block.l.Wg` (H, 2 heads) and
`block.l.bg` (input gates, then forget gates), `block.l.hnorm` (H,),
`block.l.Wo` (H, H), `block.l.bo`, `block.l.Wout` (H, H). State: `C` (L, B,
heads, d, d), `n` (L, B, heads, d), `m` (L, B, heads). Internals: `block.l.h`
(o * RMSNorm_head(h~), (T, B, H)), `block.l.i` and `block.l.f` (the stabilised
gates i' and f', (T, B, heads)), `block.l.o`.
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
# Characters read at once (see chunk), a scan carrying the memories from chunk to
# chunk: 32 trained fastest of 16-128 at windows of 256 and 1,024 (3 x 112, 4 heads).
CHUNK = 32

# A character language model, as parts.py defines one.
target, loss, schedule = parts.next_char, parts.cross_entropy, parts.unscheduled
noise = parts.residual_noise


def init_params(cfg: ModelConfig, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if cfg.hidden % cfg.heads:
        raise UserError(f"--hidden {cfg.hidden} must be a multiple of --heads {cfg.heads}")

    def mixer(l: int, H: int, draw) -> dict[str, np.ndarray]:
        # As the official code starts them: the gates read nothing of the input yet,
        # the input gates open a little at random, the forget gates keep 3 to 6.
        gates = np.concatenate([rng.normal(0, 0.1, cfg.heads), np.linspace(3.0, 6.0, cfg.heads)]).astype(np.float32)
        return {f"block.{l}.Wqkv": draw(H, 3 * H), f"block.{l}.Wg": np.zeros((H, 2 * cfg.heads), np.float32),
                f"block.{l}.bg": gates, f"block.{l}.hnorm": np.ones(H, np.float32),
                f"block.{l}.Wo": draw(H, H), f"block.{l}.bo": np.zeros(H, np.float32),
                f"block.{l}.Wout": draw(H, H)}

    return parts.residual_params(cfg, vocab_size, rng, mixer)


def init_state(cfg: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    """Empty memories: C, n and m zero."""
    L, heads, d = cfg.layers, cfg.heads, cfg.hidden // cfg.heads
    return {"C": np.zeros((L, batch, heads, d, d), np.float32), "n": np.zeros((L, batch, heads, d), np.float32),
            "m": np.zeros((L, batch, heads), np.float32)}


def activations(cfg: ModelConfig, T: int) -> int:
    """Per position and layer: about 30 values per unit, the weights and scores of
    every head over its chunk (log D, D, S), and the matrix memory the gradient
    keeps once a chunk (H x d)."""
    chunk = min(CHUNK, T)
    return cfg.layers * (30 * cfg.hidden + 3 * cfg.heads * chunk + cfg.hidden * (cfg.hidden // cfg.heads) // chunk)


def chunk(q, k, v, i, log_f, C, n, m):
    """c characters at once, from the memories before them: q, k, v (c, B, heads, d),
    i~ and log sigmoid(f~) (c, B, heads), C (B, heads, d, d), n (B, heads, d), m (B,
    heads) -> h~ (c, B, heads, d), the memories after the last, i' and f' (c, B, heads).

    The recurrence unrolled (the xLSTM paper's parallel form, with the memories
    carried in): with F_t the sum of log f over the chunk to t, character s adds its
    k v^T to the memory at t >= s with log weight F_t - F_s + i~_s, and the memory
    before the chunk carries log weight F_t + m. m_t is the largest of these
    weights, as the step-by-step max gives it, so both forms scale alike."""
    c = q.type.shape[0]
    Q, K, Vs = (a.transpose(1, 2, 0, 3) for a in (q, k, v))  # (B, heads, c, d)
    I, log_F = i.transpose(1, 2, 0), log_f.transpose(1, 2, 0)  # (B, heads, c)
    F = pt.cumsum(log_F, axis=-1)
    log_D = pt.switch(np.tril(np.ones((c, c), bool)), F[..., :, None] - F[..., None, :] + I[..., None, :], -np.inf)
    log_carried = F + m[..., None]
    m_t = pt.maximum(log_D.max(axis=-1), log_carried)  # (B, heads, c)
    D, carried = pt.exp(log_D - m_t[..., None]), pt.exp(log_carried - m_t)
    S = (Q @ K.transpose(0, 1, 3, 2)) * D  # (B, heads, t, s): q_t . k_s, weighted
    numerator = S @ Vs + carried[..., None] * (Q @ C)
    denominator = pt.maximum(pt.abs(S.sum(axis=-1) + carried * (Q @ n[..., None])[..., 0]), pt.exp(-m_t)) + EPS
    added = K * D[..., -1, :, None]  # (B, heads, s, d): each k as the memory after the chunk holds it
    C = carried[..., -1, None, None] * C + added.transpose(0, 1, 3, 2) @ Vs
    n = carried[..., -1, None] * n + added.sum(axis=-2)
    m_before = pt.concatenate([m[..., None], m_t[..., :-1]], axis=-1)
    i_act, f_act = pt.exp(I - m_t), pt.exp(log_F + m_before - m_t)
    h = (numerator / denominator[..., None]).transpose(2, 0, 1, 3)
    return h, C, n, m_t[..., -1], i_act.transpose(2, 0, 1), f_act.transpose(2, 0, 1)


def forward(params: dict, x, state: dict, masks: dict | None = None, schedule: dict | None = None) -> Forward:
    layers, B, heads, d = state["n"].type.shape
    T, H = x.type.shape[0], heads * d
    internals, memories = {}, []

    def mix(l, u):
        qkv = project(u, params[f"block.{l}.Wqkv"]).reshape((T, B, 3, heads, d))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1] * np.float32(d**-0.5), qkv[:, :, 2]
        gates = project(u, params[f"block.{l}.Wg"]) + params[f"block.{l}.bg"]  # (T, B, 2 heads)
        i, log_f = gates[..., :heads], -pt.softplus(-gates[..., heads:])
        seqs, C, n, m, pieces = (q, k, v, i, log_f), state["C"][l], state["n"][l], state["m"][l], []
        c = min(CHUNK, T)
        whole = T // c * c
        if T // c > 1:  # the whole chunks, one scan step each
            cut = [a[:whole].reshape((T // c, c, *a.type.shape[1:])) for a in seqs]
            h, Cs, ns, ms, i_act, f_act = pytensor.scan(
                chunk, sequences=cut, outputs_info=[None, C, n, m, None, None], return_updates=False)
            C, n, m = Cs[-1], ns[-1], ms[-1]
            pieces.append(tuple(a.reshape((whole, *a.type.shape[2:])) for a in (h, i_act, f_act)))
        else:
            whole = 0
        if whole < T:  # one chunk, or what is left after the whole ones
            h, C, n, m, i_act, f_act = chunk(*(a[whole:] for a in seqs), C, n, m)
            pieces.append((h, i_act, f_act))
        memories.append((C, n, m))
        h, i_act, f_act = (pt.concatenate(p, axis=0) if len(pieces) > 1 else p[0] for p in zip(*pieces))
        h = parts.rms_norm(h, params[f"block.{l}.hnorm"].reshape((heads, d)))  # each head on its own
        o = pt.sigmoid(project(u, params[f"block.{l}.Wo"]) + params[f"block.{l}.bo"])
        out = o * h.reshape((T, B, H))
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
