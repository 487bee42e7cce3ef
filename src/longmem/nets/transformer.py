"""A small causal Transformer, the reference the original names: parts.py's pre-norm
residual blocks, whose own part is multi-head attention with rotary positions
(Su et al. 2021) over the `--context` characters before each position and the
position itself,

    mix_l(v) = attention(q, k, v from v Wqkv) Wo      `block.l.Wqkv` (H, 3H), `block.l.Wo` (H, H),

each head's scores q.k times a gain of its own, `block.l.scale` (heads,), that
starts at 1/sqrt(d) (d = H / heads units a head) and is learned, so a head can
sharpen its attention as far as recall over a long context needs.

As Transformer-XL (Dai et al. 2019) carries its memory, the keys and values of
the last `context` positions of each layer are the state carried from one
window to the next (computed by the window before, held out of the gradient as
the LSTM's carried state is), so a window of any length, one character
included (sampling, `guess`), reads the same context. Each layer reaches
`context` characters back, through the layer below, so the model reads at
most layers x context characters back: its memory is bounded by construction.

State: `k` and `v` (L, B, context, H), keys before their rotation and values;
`seen` (1, B, context), 1 where a slot holds a character the stream has read
(a stream starts with none). Internals, per block: `block.l.h` (the
attention's output, (T, B, H)) and `block.l.lag` (the mean distance back each
head attends to, (T, B, heads)).
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt

from longmem.config import ModelConfig
from longmem.errors import UserError
from longmem.nets import parts
from longmem.nets.parts import BITS, EXPLODES, log_probs, project  # noqa: F401 (the protocol's)
from longmem.nets.protocol import Diagram, Forward

EMBEDDINGS = ("embed",)  # the parameters indexed by the window's codes
OPTIONS = {"heads", "context"}  # the model options (per_net in config.py) it reads
ROTARY_BASE = 10000.0
MASKED = np.float32(-1e30)  # the score of a key a query may not read
PIECE = 128  # the fewest positions attended to at once (at least the context)

# A character language model, as parts.py defines one.
target, loss, schedule = parts.next_char, parts.cross_entropy, parts.unscheduled
noise = parts.residual_noise


def init_params(cfg: ModelConfig, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if cfg.hidden % (2 * cfg.heads):
        raise UserError(f"--hidden {cfg.hidden} must be a multiple of twice --heads {cfg.heads} (each head's "
                        "units are rotated in pairs)")

    def mixer(l: int, H: int, draw) -> dict[str, np.ndarray]:
        scale = np.full(cfg.heads, (H // cfg.heads) ** -0.5, np.float32)
        return {f"block.{l}.Wqkv": draw(H, 3 * H), f"block.{l}.scale": scale, f"block.{l}.Wo": draw(H, H)}

    return parts.residual_params(cfg, vocab_size, rng, mixer)


def init_state(cfg: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    """No character read yet: empty keys and values, none of them seen."""
    kv = np.zeros((cfg.layers, batch, cfg.context, cfg.hidden), np.float32)
    return {"k": kv, "v": kv.copy(), "seen": np.zeros((1, batch, cfg.context), np.float32)}


def rotary(x, positions: np.ndarray):
    """x (..., n, d) with each pair (i, i + d/2) of its d units turned by position p
    times 10000^(-2i/d), for its n positions p: dot products of two rotated vectors
    then depend on their positions' difference only."""
    d = x.type.shape[-1]
    angle = positions[:, None] * ROTARY_BASE ** (-np.arange(d // 2) * 2.0 / d)  # (n, d/2)
    cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return pt.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def readable(T: int, C: int) -> np.ndarray:
    """(T, C + T): whether the window's query t reads key j of the context and the
    window laid end to end (the window's own keys from C on): itself and the C
    positions before it."""
    t, j = np.arange(T)[:, None], np.arange(C + T)[None, :]
    return (j >= t) & (j <= C + t)


def forward(params: dict, x, state: dict, masks: dict | None = None, schedule: dict | None = None) -> Forward:
    layers, B, C, H = state["k"].type.shape
    T = x.type.shape[0]
    heads = params["block.0.scale"].type.shape[0]
    d = H // heads
    # A long window is attended to in pieces, each reading the keys and values the one
    # before left, as a window reads those of the window before: the same values,
    # with scores of (piece, context + piece) per head instead of (T, context + T).
    piece = max(C, PIECE)
    internals, keys, values, seens = {}, [], [], []

    def split(m):  # (B, n, H) -> (B, heads, n, d)
        return m.reshape((B, m.type.shape[1], heads, d)).transpose(0, 2, 1, 3)

    def attend(l, u):
        qkv = project(u, params[f"block.{l}.Wqkv"]).transpose(1, 0, 2)  # (B, T, 3H)
        k, v, seen, outs, lag = state["k"][l], state["v"][l], state["seen"][0], [], []
        for start in range(0, T, piece):
            P = min(piece, T - start)
            part = qkv[:, start : start + P]
            k = pt.concatenate([k, part[:, :, H : 2 * H]], axis=1)  # (B, C + P, H)
            v = pt.concatenate([v, part[:, :, 2 * H :]], axis=1)
            seen = pt.concatenate([seen, pt.ones((B, P), dtype="float32")], axis=1)
            allowed = pt.and_(readable(P, C)[None, None], seen[:, None, None, :] > 0)  # (B, 1, P, C + P)
            q = rotary(split(part[:, :, :H]), np.arange(C, C + P, dtype=np.float64))
            scores = q @ rotary(split(k), np.arange(C + P, dtype=np.float64)).transpose(0, 1, 3, 2)
            scores = scores * params[f"block.{l}.scale"][None, :, None, None]
            weights = pt.special.softmax(pt.switch(allowed, scores, MASKED), axis=-1)
            outs.append((weights @ split(v)).transpose(2, 0, 1, 3).reshape((P, B, H)))  # (P, B, H)
            distance = (C + np.arange(P)[:, None] - np.arange(C + P)[None, :]).astype(np.float32)
            lag.append((weights * distance).sum(axis=-1).transpose(2, 0, 1))  # (P, B, heads)
            k, v, seen = k[:, P:], v[:, P:], seen[:, P:]
        keys.append(k)
        values.append(v)
        seens.append(seen)
        out = pt.concatenate(outs, axis=0) if len(outs) > 1 else outs[0]
        internals[f"block.{l}.h"] = out
        internals[f"block.{l}.lag"] = pt.concatenate(lag, axis=0) if len(lag) > 1 else lag[0]
        return project(out, params[f"block.{l}.Wo"])

    logits = parts.residual_blocks(params, x, layers, masks, attend)
    return Forward(logits, {"k": pt.stack(keys), "v": pt.stack(values), "seen": seens[0][None]}, internals, {})


def activations(cfg: ModelConfig, T: int) -> int:
    """Per position and layer: about 30 values per unit (the projections, the
    feed-forward layer, the norms) and the scores, weights and mask of every head
    over the context and the window."""
    return cfg.layers * (30 * cfg.hidden + 3 * cfg.heads * (cfg.context + T))


def describe(cfg: ModelConfig) -> str:
    return (f"{cfg.layers} x {cfg.hidden} transformer blocks, {cfg.heads} heads, context {cfg.context} "
            f"(feed-forward {parts.FF * cfg.hidden})")


def diagram(cfg: ModelConfig) -> Diagram:
    def mixer(d, group, norm):
        qkv = d.node(f"{group}.qkv", "q, k, v = Wqkv u\nrotary positions on q, k", group=group)
        att = d.node(f"{group}.attention", f"softmax(q k^T / sqrt(d)) v\neach position: itself and the "
                     f"{cfg.context} before it", group=group)
        d.edge(norm, qkv)
        d.edge(qkv, att, "q, k, v")
        d.edge("state", att, f"{group} k, v of the last {cfg.context}", "fixed")
        d.edge(att, "next state", f"{group} k, v")
        return att, ""

    return parts.residual_diagram(cfg, f"block {{l}}: {cfg.heads} heads of {cfg.hidden // cfg.heads} units", mixer,
                                  "u = x + Wo attention")
