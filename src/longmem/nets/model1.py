"""The original's model 1: an LSTM that learns what another LSTM does.

- Stage 1 is a finished one-layer `lstm` run (`--base RUN`), its parameters
  copied in as `stage1.*` and frozen (no gradient reaches them).
- Its cell state over the text is turned into per-step changes
  delta(t) = c1(t) - c1(t-1) (c1 before a stream's first character is 0).
- Stage 2 (`--hidden-b` cells) reads the text and stage 1's deltas and is
  trained with squared error to predict the next delta: p(t) ~ delta(t+1).
- Stage 3 (`--hidden` cells) reads the text and stage 2's predictions, as
  fixed inputs, and is trained on the next character.

The stages train in the original's order in one run: for the first
`--stage2-steps` steps only stage 2 learns, then only stage 3 (the
`schedule` scales each stage's gradient by 1 or 0; the loss values are
logged throughout: `loss` is stage 3's cross-entropy, `model1.stage2` stage
2's error). Parameters: `stage1.Wx/Wh/b` (the base run's `lstm.0.*`),
`stage2.Wx` (V, 4H2), `stage2.Wd` (H1, 4H2), `stage2.Wh`, `stage2.b`,
`stage2.P` (H2, H1), `stage2.p` (H1,); `stage3.Wx` (V, 4H3), `stage3.Wp`
(H1, 4H3), `stage3.Wh`, `stage3.b`; `out.W` (H3, V), `out.b`.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import zero_grad

from longmem.config import ModelConfig
from longmem.errors import UserError
from longmem.nets import parts
from longmem.nets.lstm import layer
from longmem.nets.parts import BITS, EXPLODES, log_probs, project  # noqa: F401 (the protocol's)
from longmem.nets.protocol import Diagram, Forward

BASE = True  # built on a finished run (--base)
STAGES = ("stage1", "stage2", "stage3")
EMBEDDINGS = ("stage1.Wx", "stage2.Wx", "stage3.Wx")  # the parameters indexed by the window's codes

# A character language model (stage 3's cross-entropy), as parts.py defines one.
target, loss = parts.next_char, parts.cross_entropy


def sizes(cfg: ModelConfig) -> tuple[int, int, int]:
    """Cells of stages 1 (the base run's), 2 and 3."""
    return cfg.base_hidden, cfg.hidden_b or 2 * cfg.hidden, cfg.hidden


def init_params(cfg: ModelConfig, vocab_size: int, rng: np.random.Generator,
                base: dict | None = None) -> dict[str, np.ndarray]:
    """Stage 1 from `base` (a one-layer lstm's parameters; random of the recorded
    size when only shapes matter), stages 2 and 3 uniform in [-init_scale,
    init_scale] with forget-gate biases 1."""
    H1, H2, H3 = sizes(cfg)
    V, uniform, bias = vocab_size, parts.uniform(rng, cfg.init_scale), parts.lstm_bias
    if base is not None:
        if set(base) != {"lstm.0.Wx", "lstm.0.Wh", "lstm.0.b", "out.W", "out.b"} or base["lstm.0.Wx"].shape[0] != V:
            raise UserError("model1's --base must be a one-layer lstm run on the same text")
        stage1 = {f"stage1.{k}": base[f"lstm.0.{k}"].astype(np.float32) for k in ("Wx", "Wh", "b")}
    else:
        stage1 = {"stage1.Wx": uniform(V, 4 * H1), "stage1.Wh": uniform(H1, 4 * H1), "stage1.b": bias(H1)}
    return stage1 | {
        "stage2.Wx": uniform(V, 4 * H2), "stage2.Wd": uniform(H1, 4 * H2), "stage2.Wh": uniform(H2, 4 * H2),
        "stage2.b": bias(H2), "stage2.P": uniform(H2, H1), "stage2.p": np.zeros(H1, np.float32),
        "stage3.Wx": uniform(V, 4 * H3), "stage3.Wp": uniform(H1, 4 * H3), "stage3.Wh": uniform(H3, 4 * H3),
        "stage3.b": bias(H3), "out.W": uniform(H3, V), "out.b": np.zeros(V, np.float32),
    }


def init_state(cfg: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    """h and c of each stage, (1, B, H) each."""
    state = {}
    for stage, n in zip(STAGES, sizes(cfg)):
        state |= {f"{stage}.h": np.zeros((1, batch, n), np.float32), f"{stage}.c": np.zeros((1, batch, n), np.float32)}
    return state


def noise(cfg: ModelConfig, T: int, B: int) -> dict[str, tuple[tuple, str]]:
    """Dropout on stage 3's output, before the softmax."""
    return {"stage3.dropout": ((T, B, cfg.hidden), "dropout")} if cfg.dropout != 0 else {}


def schedule(cfg: ModelConfig, step: int) -> dict[str, float]:
    """Which stage learns: stage 2 first, then stage 3."""
    second = float(step < cfg.stage2_steps)
    return {"stage2.learns": second, "stage3.learns": 1.0 - second}


def _scaled(value, weight):
    """`value` itself, with its gradient multiplied by `weight` (0 or 1)."""
    return weight * value + (1 - weight) * zero_grad(value)


def forward(params: dict, x, state: dict, masks: dict | None = None, schedule: dict | None = None) -> Forward:
    """Logits for a window x (T, B) of codes; stage 2's error as an extra loss."""
    T, B = x.type.shape
    one = pt.constant(np.float32(1.0))
    learns = {k: (schedule or {}).get(f"{k}.learns", one) for k in ("stage2", "stage3")}
    p = params
    hs1, cs1, _ = layer(p["stage1.Wx"][x] + p["stage1.b"], state["stage1.h"][0], state["stage1.c"][0],
                        p["stage1.Wh"], T, B)
    cs1 = zero_grad(cs1)  # stage 1 is frozen
    delta = cs1 - pt.concatenate([state["stage1.c"][0][None], cs1[:-1]], axis=0)  # (T, B, H1)
    xp2 = p["stage2.Wx"][x] + project(delta, p["stage2.Wd"]) + p["stage2.b"]
    hs2, cs2, _ = layer(xp2, state["stage2.h"][0], state["stage2.c"][0], p["stage2.Wh"], T, B)
    pred = project(hs2, p["stage2.P"]) + p["stage2.p"]  # (T, B, H1): predicts delta(t + 1)
    err = parts.next_step_error(pred, delta, T)
    xp3 = p["stage3.Wx"][x] + project(zero_grad(pred), p["stage3.Wp"]) + p["stage3.b"]
    hs3, cs3, _ = layer(xp3, state["stage3.h"][0], state["stage3.c"][0], p["stage3.Wh"], T, B)
    out = hs3 * masks["stage3.dropout"] if masks else hs3
    logits = _scaled(project(out, p["out.W"]) + p["out.b"], learns["stage3"])
    new = {}
    for stage, hs, cs in zip(STAGES, (hs1, hs2, hs3), (cs1, cs2, cs3)):
        new |= {f"{stage}.h": hs[-1][None], f"{stage}.c": cs[-1][None]}
    internals = {"stage1.c": cs1, "delta": delta, "stage2.h": hs2, "prediction": pred, "stage3.h": hs3}
    return Forward(logits, new, internals, {"model1.stage2": _scaled(err, learns["stage2"])})


def describe(cfg: ModelConfig) -> str:
    return "stages of {} + {} + {} cells".format(*sizes(cfg))


def diagram(cfg: ModelConfig) -> Diagram:
    H1, H2, H3 = sizes(cfg)
    d = Diagram()
    h1 = d.lstm("stage1", "stage 1 (the --base run, frozen)", H1, [("x", "embedding")])
    delta = d.node("delta", "delta(t) = c1(t) - c1(t-1)")
    d.edge("stage1.c", delta, "", "fixed")
    d.nodes[h1] = ("h = o * tanh(c) (not used)", "op")
    h2 = d.lstm("stage2", f"stage 2 (learns for the first {cfg.stage2_steps} steps)", H2,
                [("x", "embedding"), (delta, "Wd delta")])
    pred = d.node("prediction", "prediction p(t) = P h2 + p")
    d.edge(h2, pred)
    err = d.node("model1.stage2", "squared error of p(t) against delta(t+1)", "loss")
    d.edge(pred, err)
    d.edge(delta, err, "delta(t+1)")
    h3 = d.lstm("stage3", "stage 3 (learns after stage 2)", H3, [("x", "embedding"), (pred, "Wp p", "fixed")])
    d.to_logits(h3, cfg.dropout, "out.W h3 + out.b")
    return d
