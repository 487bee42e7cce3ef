"""The original's first net: 26 one-hot inputs, logistic hidden and output units,
trained on squared error to answer each letter with the next one of the
alphabet (a -> b, ..., z -> a).

Parameters: `hidden.W` (26, H), `hidden.b` (H,), `out.W` (H, 26), `out.b` (26,).
The one-hot input times `hidden.W` is a row lookup. The net has no recurrent
state and no dropout; it reads a window of letters as independent inputs.
For evaluation its outputs are read as a distribution (each output over their
sum), so its "logits" are their logarithms.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt

from longmem.config import ModelConfig
from longmem.errors import UserError
from longmem.nets import parts
from longmem.nets.protocol import Diagram, Forward

LETTERS = 26
EMBEDDINGS = ("hidden.W",)  # the parameters indexed by the window's codes (a one-hot product)
EXPLODES = None  # squared error can start near zero: only NaN or infinity stops a run
BITS = False  # the loss is a squared error, not bits
schedule = parts.unscheduled


def init_params(cfg: ModelConfig, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights uniform in [-init_scale, init_scale], biases 0."""
    if vocab_size != LETTERS:
        raise UserError(
            f"the caesar model reads the 26 letters, but the text has {vocab_size} symbols; "
            "train it with `longmem caesar` (or give --letters N)"
        )
    s, H = cfg.init_scale, cfg.hidden
    return {
        "hidden.W": rng.uniform(-s, s, (LETTERS, H)).astype(np.float32),
        "hidden.b": np.zeros(H, np.float32),
        "out.W": rng.uniform(-s, s, (H, LETTERS)).astype(np.float32),
        "out.b": np.zeros(LETTERS, np.float32),
    }


def init_state(cfg: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    return {}


def noise(cfg: ModelConfig, T: int, B: int) -> dict:
    return {}


def forward(params: dict, x, state: dict, masks: dict | None = None, schedule: dict | None = None) -> Forward:
    """Activations for a window x (T, B) of letters; internals `hidden` (T, B, H)
    and `out` (T, B, 26), each in (0, 1)."""
    hidden = pt.sigmoid(params["hidden.W"][x] + params["hidden.b"])
    out = pt.sigmoid(hidden @ params["out.W"] + params["out.b"])
    return Forward(pt.log(out), {}, {"hidden": hidden, "out": out}, {})


def outputs(params: dict[str, np.ndarray]) -> np.ndarray:
    """The output activations (26, 26) for each input letter a..z, in NumPy."""
    hidden = _sigmoid(params["hidden.W"].astype(np.float64) + params["hidden.b"])
    return _sigmoid(hidden @ params["out.W"] + params["out.b"])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def target(x, y):
    """The cipher of each letter: the next one of the alphabet."""
    return (x + 1) % LETTERS


def loss(fw: Forward, target):
    """Half the squared distance to the one-hot target, summed over outputs, mean over letters."""
    out = fw.internals["out"]
    onehot = pt.eq(target[..., None], pt.arange(LETTERS))
    return 0.5 * ((out - onehot) ** 2).sum(axis=-1).mean()


def log_probs(logits, target):
    """log of the target's output over the sum of the outputs: (T, B)."""
    lp = logits - pt.log(pt.exp(logits).sum(axis=-1, keepdims=True))
    return pt.take_along_axis(lp, target[..., None], axis=-1)[..., 0]


def describe(cfg: ModelConfig) -> str:
    return f"{LETTERS}-{cfg.hidden}-{LETTERS} logistic units"


def diagram(cfg: ModelConfig) -> Diagram:
    d = Diagram()
    hidden = d.node("hidden", f"hidden = sigmoid(hidden.W[x] + hidden.b): {cfg.hidden} logistic units")
    d.edge("x", hidden, "one-hot letter")
    d.edge(hidden, "logits", f"out = sigmoid(out.W hidden + out.b): {LETTERS} logistic units")
    return d
