"""The original's "waves" model: two LSTMs that feed each other.

LSTM A (`--hidden` cells) reads the current character and B's output from the
previous step and predicts the next character. LSTM B (`--hidden-b` cells)
reads the change in A's cell state at each step, dc(t) = c_A(t) - c_A(t-1),
and through a tanh layer (H_B -> H_A) outputs a vector u(t) that A reads at
the next step. B is trained to predict A's next cell-state change with
squared error (u(t) against dc(t+1)); A is trained on the next character.
Each treats what comes from the other as a fixed input (no gradient crosses),
as the original did; one compiled step updates both.

Parameters: `a.Wx` (V, 4H_A; an embedding), `a.Wu` (H_A, 4H_A), `a.Wh`
(H_A, 4H_A), `a.b`; `b.Wx` (H_A, 4H_B), `b.Wh` (H_B, 4H_B), `b.b`; `u.W`
(H_B, H_A), `u.b`; `out.W` (H_A, V), `out.b`. Gates in the order input,
forget, output, candidate. State (1, B, .): `a.h`, `a.c`, `b.h`, `b.c`, `u`.
Internals (T, B, .): `a.h`, `a.c`, `b.h`, `b.c`, `u`, `dc`. Extra loss:
`model2.b_loss`.
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

STATE = ("a.h", "a.c", "b.h", "b.c", "u")
EMBEDDINGS = ("a.Wx",)  # the parameters indexed by the window's codes

# A character language model (A's cross-entropy), as parts.py defines one.
target, loss, schedule = parts.next_char, parts.cross_entropy, parts.unscheduled


def sizes(cfg: ModelConfig) -> tuple[int, int]:
    """Cells of A and of B (twice A's unless --hidden-b says)."""
    return cfg.hidden, cfg.hidden_b or 2 * cfg.hidden


def init_params(cfg: ModelConfig, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights uniform in [-init_scale, init_scale], biases 0, forget-gate biases 1."""
    V, uniform, bias = vocab_size, parts.uniform(rng, cfg.init_scale), parts.lstm_bias
    A, B = sizes(cfg)
    return {
        "a.Wx": uniform(V, 4 * A), "a.Wu": uniform(A, 4 * A), "a.Wh": uniform(A, 4 * A), "a.b": bias(A),
        "b.Wx": uniform(A, 4 * B), "b.Wh": uniform(B, 4 * B), "b.b": bias(B),
        "u.W": uniform(B, A), "u.b": np.zeros(A, np.float32),
        "out.W": uniform(A, V), "out.b": np.zeros(V, np.float32),
    }


def init_state(cfg: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    A, B = sizes(cfg)
    widths = {"a.h": A, "a.c": A, "b.h": B, "b.c": B, "u": A}
    return {name: np.zeros((1, batch, widths[name]), np.float32) for name in STATE}


def noise(cfg: ModelConfig, T: int, B: int) -> dict[str, tuple[tuple, str]]:
    """Dropout on A's output, before the softmax."""
    return {"a.dropout": ((T, B, cfg.hidden), "dropout")} if cfg.dropout != 0 else {}


def _cell(z, c_prev, n):
    """The LSTM update from the pre-activations z (B, 4n)."""
    i, f, o, g = parts.gates(z, n)
    c = f * c_prev + i * g
    return o * pt.tanh(c), c


def _step(xa_t, ha, ca, hb, cb, u, a_Wu, a_Wh, b_Wx, b_b, b_Wh, u_W, u_b):
    """One step of A, then of B on A's cell change; returns the new state and dc."""
    A, B = a_Wh.type.shape[0], b_Wh.type.shape[0]
    ha, ca_new = _cell(xa_t + zero_grad(u) @ a_Wu + ha @ a_Wh, ca, A)  # u: a fixed input to A
    dc = zero_grad(ca_new - ca)  # a fixed input to B
    hb, cb = _cell(dc @ b_Wx + b_b + hb @ b_Wh, cb, B)
    return ha, ca_new, hb, cb, pt.tanh(hb @ u_W + u_b), dc


def forward(params: dict, x, state: dict, masks: dict | None = None, schedule: dict | None = None) -> Forward:
    """Logits for a window x (T, B) of codes, and B's loss on A's cell changes."""
    T, B = x.type.shape
    xa = params["a.Wx"][x] + params["a.b"]  # (T, B, 4A): an embedding lookup
    weights = [params[k] for k in ("a.Wu", "a.Wh", "b.Wx", "b.b", "b.Wh", "u.W", "u.b")]
    ha, ca, hb, cb, u, dc = pytensor.scan(
        _step,
        sequences=[xa],
        outputs_info=[state[name][0] for name in STATE] + [None],
        non_sequences=weights,
        strict=True,
        return_updates=False,
        name="model2",
    )
    A, Bc = params["a.Wh"].type.shape[0], params["b.Wh"].type.shape[0]
    ha, ca, u, dc = (pt.specify_shape(v, (T, B, A)) for v in (ha, ca, u, dc))
    hb, cb = (pt.specify_shape(v, (T, B, Bc)) for v in (hb, cb))
    out = ha * masks["a.dropout"] if masks else ha
    logits = project(out, params["out.W"]) + params["out.b"]
    # u(t) predicts dc(t + 1): the window's last u has no target yet.
    b_loss = parts.next_step_error(u, dc, T)
    new = {name: v[-1][None] for name, v in zip(STATE, (ha, ca, hb, cb, u))}
    internals = {"a.h": ha, "a.c": ca, "b.h": hb, "b.c": cb, "u": u, "dc": dc}
    return Forward(logits, new, internals, {"model2.b_loss": b_loss})


def describe(cfg: ModelConfig) -> str:
    return "A {} + B {} cells".format(*sizes(cfg))


def diagram(cfg: ModelConfig) -> Diagram:
    A, B = sizes(cfg)
    d = Diagram()
    ha = d.lstm("a", "LSTM A", A, [("x", "embedding")])
    dc = d.node("dc", "dc(t) = c_A(t) - c_A(t-1)")
    d.edge("a.c", dc, "", "fixed")
    hb = d.lstm("b", "LSTM B", B, [(dc, "Wx dc")])
    u = d.node("u", f"u(t) = tanh(u.W h_B + u.b): {A} values")
    d.edge(hb, u)
    d.edge(u, "a.gates", "u(t-1), Wu u", "fixed")
    err = d.node("model2.b_loss", "squared error of u(t) against dc(t+1)", "loss")
    d.edge(u, err)
    d.edge(dc, err, "dc(t+1)")
    d.to_logits(ha, cfg.dropout, "out.W h_A + out.b")
    return d
