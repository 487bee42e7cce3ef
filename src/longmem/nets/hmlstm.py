"""Hierarchical multiscale LSTM (Chung, Ahn and Bengio, ICLR 2017).

Each layer above the first updates only when the layer below detects a
boundary, so upper layers run on a condensed time scale. Per layer l and
step t, with z the binary boundaries (z of the layer below the first is 1):

    s = U_l h_l(t-1) + z_l(t-1) V_l h_(l+1)(t-1) + z_(l-1)(t) W_l h_(l-1)(t) + b_l
    f, i, o = sigmoid(s_f), sigmoid(s_i), sigmoid(s_o); g = tanh(s_g)
    z_l(t) = [hard_sigmoid(slope * s_z) > 0.5]   (straight-through gradient)

    FLUSH  (z_l(t-1) = 1):                     c = i g,          h = o tanh(c)
    UPDATE (z_l(t-1) = 0, z_(l-1)(t) = 1):     c = f c + i g,    h = o tanh(c)
    COPY   (z_l(t-1) = 0, z_(l-1)(t) = 0):     c, h kept

The top layer has no boundary detector (its z is 0, so it never flushes).
The output layer is a gated sum of every layer's h: e = relu(sum_l g_l E_l h_l)
with g_l = sigmoid(w_l . [h_1 ... h_L]), then a softmax over the vocabulary.

Parameters, per layer l: `hm.l.W` (input, 4H+1; an embedding for l = 0),
`hm.l.U` (H, 4H+1), `hm.l.V` (H, 4H+1, for l < L-1: top-down), `hm.l.b`
(4H+1,), `hm.l.E` (H, H); then `out.gate` (L*H, L), `out.W` (H, V), `out.b`.
The gates are side by side in the order input, forget, output, candidate,
then the one boundary unit. Internals: `hm.l.h`, `hm.l.c` (T, B, H) and the
boundaries `hm.l.z` (T, B).
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import zero_grad

from longmem.config import ModelConfig
from longmem.nets import parts
from longmem.nets.parts import BITS, EXPLODES, log_probs, project  # noqa: F401 (the protocol's)
from longmem.nets.protocol import Diagram, Forward

MAX_SLOPE = 5.0
EMBEDDINGS = ("hm.0.W",)  # the parameters indexed by the window's codes

# A character language model, as parts.py defines one; its output is read from every layer.
target, loss = parts.next_char, parts.cross_entropy


def init_params(cfg: ModelConfig, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights uniform in [-init_scale, init_scale], biases 0, forget-gate biases 1."""
    H, L, V, uniform = cfg.hidden, cfg.layers, vocab_size, parts.uniform(rng, cfg.init_scale)
    params = {}
    for layer in range(L):
        params[f"hm.{layer}.W"] = uniform(V if layer == 0 else H, 4 * H + 1)
        params[f"hm.{layer}.U"] = uniform(H, 4 * H + 1)
        if layer < L - 1:
            params[f"hm.{layer}.V"] = uniform(H, 4 * H + 1)
        params[f"hm.{layer}.b"] = parts.lstm_bias(H, extra=1)  # the boundary unit's last
        params[f"hm.{layer}.E"] = uniform(H, H)
    params["out.gate"] = uniform(L * H, L)
    params["out.W"] = uniform(H, V)
    params["out.b"] = np.zeros(V, np.float32)
    return params


def init_state(cfg: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    """h and c of every layer (L, B, H) and each layer's last boundary (L, B), zero."""
    shape = (cfg.layers, batch, cfg.hidden)
    return {"h": np.zeros(shape, np.float32), "c": np.zeros(shape, np.float32),
            "z": np.zeros((cfg.layers, batch), np.float32)}


def noise(cfg: ModelConfig, T: int, B: int) -> dict[str, tuple[tuple, str]]:
    """Dropout on the output embedding, before the softmax."""
    return {"out.dropout": ((T, B, cfg.hidden), "dropout")} if cfg.dropout != 0 else {}


def schedule(cfg: ModelConfig, step: int) -> dict[str, float]:
    """Slope annealing of the boundary detectors' hard sigmoid: from 1 up to 5."""
    return {"slope": min(MAX_SLOPE, 1.0 + cfg.slope_rate * step)}


def _step(xp_t, *args):
    """One time step of every layer. xp_t (B, 4H+1) is layer 0's input projection
    with its bias; args are h (L, B, H), c (L, B, H), z (L, B), then the slope
    and the weights."""
    h_prev, c_prev, z_prev, slope, *weights = args
    L = h_prev.type.shape[0]
    H = h_prev.type.shape[2]
    hs, cs, zs = [], [], []
    below, z_below = None, pt.ones_like(z_prev[0])  # the first layer always reads its input
    for layer in range(L):
        W, U, V, b = weights[4 * layer : 4 * layer + 4]
        s = xp_t if layer == 0 else z_below[:, None] * (below @ W) + b
        s = s + h_prev[layer] @ U
        if layer < L - 1:
            s = s + z_prev[layer][:, None] * (h_prev[layer + 1] @ V)
        i, f, o, g = parts.gates(s, H)
        flush = z_prev[layer][:, None]
        copy = (1 - flush) * (1 - z_below[:, None])
        c = copy * c_prev[layer] + (1 - copy) * ((1 - flush) * f * c_prev[layer] + i * g)
        h = copy * h_prev[layer] + (1 - copy) * o * pt.tanh(c)
        if layer < L - 1:
            soft = pt.clip((slope * s[:, 4 * H] + 1) / 2, 0, 1)  # hard sigmoid
            z = soft + zero_grad(pt.cast(soft > 0.5, "float32") - soft)  # straight through
        else:
            z = pt.zeros_like(z_below)
        hs.append(h)
        cs.append(c)
        zs.append(z)
        below, z_below = h, z
    return pt.stack(hs), pt.stack(cs), pt.stack(zs)


def forward(params: dict, x, state: dict, masks: dict | None = None, schedule: dict | None = None) -> Forward:
    """Logits for a window x (T, B) of codes, from state h, c (L, B, H) and z (L, B)."""
    L, T, B = state["h"].type.shape[0], *x.type.shape
    slope = (schedule or {}).get("slope", pt.constant(np.float32(1.0)))
    xp = params["hm.0.W"][x] + params["hm.0.b"]  # (T, B, 4H+1): an embedding lookup
    weights = []
    for layer in range(L):
        V = params.get(f"hm.{layer}.V", params[f"hm.{layer}.U"])  # unused by the top layer
        weights += [params[f"hm.{layer}.W"], params[f"hm.{layer}.U"], V, params[f"hm.{layer}.b"]]
    hs, cs, zs = pytensor.scan(
        _step,
        sequences=[xp],
        outputs_info=[state["h"], state["c"], state["z"]],
        non_sequences=[pt.as_tensor(slope, dtype="float32"), *weights],
        strict=True,
        return_updates=False,
        name="hmlstm",
    )  # (T, L, B, H), (T, L, B, H), (T, L, B)
    H = params["hm.0.U"].type.shape[0]
    hs = pt.specify_shape(hs, (T, L, B, H))
    flat = hs.dimshuffle(0, 2, 1, 3).reshape((T, B, L * H))
    gates = pt.sigmoid(project(flat, params["out.gate"]))  # (T, B, L)
    e = sum(gates[:, :, layer, None] * project(hs[:, layer], params[f"hm.{layer}.E"]) for layer in range(L))
    e = pt.maximum(e, 0)
    if masks:
        e = e * masks["out.dropout"]
    logits = project(e, params["out.W"]) + params["out.b"]
    internals = {}
    for layer in range(L):
        internals[f"hm.{layer}.h"] = hs[:, layer]
        internals[f"hm.{layer}.c"] = cs[:, layer]
        internals[f"hm.{layer}.z"] = pt.specify_shape(zs, (T, L, B))[:, layer]
    state = {"h": hs[-1], "c": cs[-1], "z": zs[-1]}
    return Forward(logits, state, internals, {})


def describe(cfg: ModelConfig) -> str:
    return f"{cfg.layers} x {cfg.hidden} cells"


def diagram(cfg: ModelConfig) -> Diagram:
    d, L = Diagram(), cfg.layers
    out = d.node("out", "gated sum: relu(sum_l g_l E_l h_l)\ng = sigmoid(out.gate [h_1 ... h_L])")
    below, label = "x", "embedding W[x]"
    for layer in range(L):
        reads = [(below, label)]
        if layer < L - 1:
            reads.append((f"hm.{layer + 1}.h", "top-down: z(t-1) V h above(t-1)", "recurrent"))
        h = d.lstm(f"hm.{layer}", f"layer {layer}: FLUSH if z(t-1), else UPDATE if z below, else COPY",
                   cfg.hidden, reads)
        d.edge(h, out)
        if layer < L - 1:
            z = d.node(f"hm.{layer}.z", "boundary z = [hard_sigmoid(slope * s_z) > 0.5]\n(straight-through "
                       "gradient)", group=f"hm.{layer}")
            d.edge(f"hm.{layer}.gates", z)
            d.edge(z, f"hm.{layer}.gates", "z(t-1): FLUSH", "recurrent")
            d.edge(z, f"hm.{layer + 1}.gates", "z: UPDATE, else COPY")
        below, label = h, "bottom-up: z below * W h below"
    d.to_logits(out, cfg.dropout, "out.W e + out.b")
    return d
