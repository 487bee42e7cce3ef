"""Stacked character LSTM: parameters and graph, nothing compiled here.

Per layer l the parameters are `lstm.l.Wx` (input, 4H), `lstm.l.Wh` (H, 4H)
and `lstm.l.b` (4H,), the four gates side by side in the order input, forget,
output, candidate; the softmax layer is `out.W` (H, V) and `out.b` (V,).

The input projection of a whole window is computed outside the recurrence
(an embedding lookup for the first layer), so each step does one (B, H) x
(H, 4H) product. Each layer is an inlined OpFromGraph with a hand-written
backward pass: the backward scan reuses the forward's gate activations and
does one product per step, and the recurrent weight gradient is one large
product after it. PyTensor's automatic scan gradient recomputes the gates and
accumulates that gradient step by step, which made training 1.6x slower.
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.builders import OpFromGraph
from pytensor.gradient import DisconnectedType

from longmem.config import ModelConfig
from longmem.nets import parts
from longmem.nets.parts import BITS, EXPLODES, log_probs, project  # noqa: F401 (the protocol's)
from longmem.nets.protocol import Diagram, Forward, probability

# A character language model, as parts.py defines one.
target, loss, schedule = parts.next_char, parts.cross_entropy, parts.unscheduled
OPTIONS = {"weight_drop"}  # the model options (per_net in config.py) it reads
EMBEDDINGS = ("lstm.0.Wx",)  # the parameters indexed by the window's codes


def init_params(cfg: ModelConfig, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights uniform in [-init_scale, init_scale], biases 0, forget-gate biases 1."""
    H, V, uniform = cfg.hidden, vocab_size, parts.uniform(rng, cfg.init_scale)
    params = {}
    for layer in range(cfg.layers):
        params[f"lstm.{layer}.Wx"] = uniform(V if layer == 0 else H, 4 * H)
        params[f"lstm.{layer}.Wh"] = uniform(H, 4 * H)
        params[f"lstm.{layer}.b"] = parts.lstm_bias(H)
    params["out.W"] = uniform(H, V)
    params["out.b"] = np.zeros(V, np.float32)
    return params


GATES = ("i", "f", "o", "g")  # input, forget, output gates and the candidate cell value
OUTPUT_GRADS = ("dh", "dc", "di", "df", "do", "dg")  # the gradients a layer's outputs receive


def _forward_step(xp_t, h_tm1, c_tm1, Wh):
    """One step: returns h_t, c_t and the four gate activations (B, H) each."""
    i, f, o, g = parts.gates(xp_t + h_tm1 @ Wh, Wh.type.shape[0])  # from (B, 4H)
    c = f * c_tm1 + i * g
    return o * pt.tanh(c), c, i, f, o, g


def _backward_gates(dh_out, dc_out, di, df, do, dg, i, f, o, g, c, c_tm1, dh_next, dc_next, WhT):
    """One step of backpropagation through time, from the gradients that reach
    the step's outputs h, c and gates (0 where none does); returns dh_{t-1},
    dc_{t-1} and dz_t, the gradient of the gates' pre-activations."""
    dh = dh_out + dh_next
    tc = pt.tanh(c)
    dc = dc_out + dc_next + dh * o * (1 - tc * tc)
    dz = pt.concatenate(
        [(dc * g + di) * i * (1 - i), (dc * c_tm1 + df) * f * (1 - f), (dh * tc + do) * o * (1 - o),
         (dc * i + dg) * (1 - g * g)],
        axis=1,
    )  # (B, 4H)
    return dz @ WhT, dc * f, dz


def _layer_op(T: int, B: int, H: int) -> OpFromGraph:
    """The recurrence of one layer for windows of shape (T, B): (xp, h0, c0, Wh) -> (hs, cs, i, f, o, g)."""
    xp = pt.tensor("xp", dtype="float32", shape=(T, B, 4 * H))
    h0 = pt.tensor("h0", dtype="float32", shape=(B, H))
    c0 = pt.tensor("c0", dtype="float32", shape=(B, H))
    Wh = pt.tensor("Wh", dtype="float32", shape=(H, 4 * H))
    hs, cs, *gates = pytensor.scan(
        _forward_step,
        sequences=[xp],
        outputs_info=[h0, c0, None, None, None, None],
        non_sequences=[Wh],
        strict=True,
        return_updates=False,
        name="lstm_forward",
    )

    def backward(inputs, outputs, output_grads):
        xp, h0, c0, Wh = inputs
        hs, cs, *gates = outputs
        # Outputs the cost does not depend on (usually cs and the gates: training
        # reads only h) get disconnected gradients, left out of the step as 0.
        grads = {name: g for name, g in zip(OUTPUT_GRADS, output_grads) if not isinstance(g.type, DisconnectedType)}
        # The step reads every sequence at its own index t, walking from T - 1
        # down: scan's go_backwards would first copy each of them reversed.
        reads = {**grads, **dict(zip(GATES, gates)), "c": pt.concatenate([c0[None], cs], axis=0)}

        def step(t, dh_next, dc_next, *values):
            *arrays, WhT = values  # scan's non_sequences: the arrays of `reads`, then Wh.T
            at = dict(zip(reads, arrays))
            given = (at[name][t] if name in at else 0 for name in OUTPUT_GRADS)
            i, f, o, g = (at[gate][t] for gate in GATES)
            return _backward_gates(*given, i, f, o, g, at["c"][t + 1], at["c"][t], dh_next, dc_next, WhT)

        if T == 1:  # one step needs no scan (and a scan of one defeats two of PyTensor's scan rewrites)
            dh0, dc0, dz = step(0, pt.zeros_like(h0), pt.zeros_like(c0), *reads.values(), Wh.T)
            dh0, dc0, dz = dh0[None], dc0[None], dz[None]
        else:
            dh0, dc0, dz = pytensor.scan(
                step,
                sequences=[pt.arange(T - 1, -1, -1)],
                outputs_info=[pt.zeros_like(h0), pt.zeros_like(c0), None],
                non_sequences=[*reads.values(), Wh.T],
                strict=True,
                return_updates=False,
                name="lstm_backward",
            )
        dz = dz[::-1]  # (T, B, 4H), back in time order
        h_prev = pt.concatenate([h0[None], hs[:-1]], axis=0)
        dWh = h_prev.reshape((T * B, H)).T @ dz.reshape((T * B, 4 * H))
        return [dz, dh0[-1], dc0[-1], dWh]

    return OpFromGraph(
        [xp, h0, c0, Wh], [hs, cs, *gates], pullback=backward, inline=True, name="lstm_layer"
    )



def layer(xp, h0, c0, Wh, T: int, B: int):
    """Run one layer over a window: xp (T, B, 4H), h0 and c0 (B, H) -> hs, cs, gates.

    hs, cs and each of the four gate activations are (T, B, H). T and B are
    given because JAX needs static shapes, which do not always survive the
    graph's operations.
    """
    H = Wh.type.shape[0]
    hs, cs, *gates = _layer_op(T, B, H)(pt.specify_shape(xp, (T, B, 4 * H)), h0, c0, Wh)
    hs, cs, *gates = (pt.specify_shape(v, (T, B, H)) for v in (hs, cs, *gates))
    return hs, cs, dict(zip(GATES, gates))


def init_state(cfg: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    """The state a window starts from: h and c of every layer, (L, B, H) each, zero."""
    shape = (cfg.layers, batch, cfg.hidden)
    return {"h": np.zeros(shape, np.float32), "c": np.zeros(shape, np.float32)}


def noise(cfg: ModelConfig, T: int, B: int) -> dict[str, tuple[tuple, str]]:
    """The dropout a training window needs: name -> (mask shape, the option that is its probability)."""
    H, found = cfg.hidden, {}
    if cfg.dropout != 0:
        found |= {f"lstm.{i}.dropout": ((T, B, H), "dropout") for i in range(cfg.layers)}
    if cfg.weight_drop != 0:  # numbered after the outputs' masks, which keep their numbers
        found |= {f"lstm.{i}.Wh.drop": ((H, 4 * H), "weight_drop") for i in range(cfg.layers)}
    return found


def forward(params: dict, x, state: dict, masks: dict | None = None, schedule: dict | None = None) -> Forward:
    """Logits for every position of a window x (T, B) of codes.

    state: h and c, (L, B, H) each, carried from the previous window. masks:
    for dropout, the multipliers named by `noise` (0 for a dropped unit,
    1 / (1 - p) for a kept one), applied to each layer's output before the
    next layer and the softmax, as char-rnn does, and (with --weight-drop) to
    each layer's recurrent weights, the same for every step of the window.
    Internals, per layer (`lstm.l.h`, `.c` and the gates `.i .f .o .g`), are
    (T, B, H).
    """
    layers, T, B = state["h"].type.shape[0], *x.type.shape
    inp, internals, h_last, c_last = None, {}, [], []
    for i in range(layers):
        Wx, Wh, b = (params[f"lstm.{i}.{key}"] for key in ("Wx", "Wh", "b"))
        if masks and f"lstm.{i}.Wh.drop" in masks:  # DropConnect: one mask for the whole window
            Wh = Wh * masks[f"lstm.{i}.Wh.drop"]
        xp = Wx[x] + b if i == 0 else project(inp, Wx) + b  # (T, B, 4H); embedding lookup first
        hs, cs, gates = layer(xp, state["h"][i], state["c"][i], Wh, T, B)
        internals |= {f"lstm.{i}.{key}": value for key, value in {"h": hs, "c": cs, **gates}.items()}
        h_last.append(hs[-1])
        c_last.append(cs[-1])
        inp = hs * masks[f"lstm.{i}.dropout"] if masks and f"lstm.{i}.dropout" in masks else hs
    logits = project(inp, params["out.W"]) + params["out.b"]
    return Forward(logits, {"h": pt.stack(h_last), "c": pt.stack(c_last)}, internals, {})


def sizes(params: dict[str, np.ndarray]) -> tuple[int, int]:
    """The layers and cells per layer of an lstm's parameters."""
    return sum(1 for name in params if name.endswith(".Wh")), params["lstm.0.Wh"].shape[0]


def add_symbol(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same LSTM with one more input symbol (its embedding zero) and one more output,
    which it never predicts (its bias -30): `longmem compress` starts each row with it."""
    out = dict(params)
    out["lstm.0.Wx"] = np.concatenate([params["lstm.0.Wx"], np.zeros_like(params["lstm.0.Wx"][:1])])
    out["out.W"] = np.concatenate([params["out.W"], np.zeros_like(params["out.W"][:, :1])], axis=1)
    out["out.b"] = np.concatenate([params["out.b"], np.full(1, -30.0, params["out.b"].dtype)])
    return out


def describe(cfg: ModelConfig) -> str:
    return f"{cfg.layers} x {cfg.hidden} cells"


def diagram(cfg: ModelConfig) -> Diagram:
    d, source, label = Diagram(), "x", "embedding Wx[x] + b"
    for i in range(cfg.layers):
        note = f"DropConnect {probability(cfg.weight_drop)} on Wh" if cfg.weight_drop != 0 else ""
        h = d.lstm(f"lstm.{i}", f"layer {i}", cfg.hidden, [(source, label)], note)
        source, label = h, "Wx h + b"
        if cfg.dropout != 0:
            source = d.node(f"lstm.{i}.dropout", f"dropout {probability(cfg.dropout)}")
            d.edge(h, source)
    d.edge(source, "logits", "out.W h + out.b")
    return d
