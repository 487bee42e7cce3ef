"""minLSTM (Feng et al. 2024, "Were RNNs all we needed?"), in the residual blocks of
minrnn.py. From each position's pre-activations k = [k_f, k_i, k_h] (3H), a
forget and an input gate normalised to sum to 1 (the paper's time-independent
form, so the state stays on the scale of g),

    f = sigmoid(k_f), i = sigmoid(k_i),  h_t = f/(f + i) h_(t-1) + i/(f + i) g(k_h),

computed without dividing: f/(f + i) = sigmoid(log f - log i) = sigmoid(-d)
with d = softplus(-k_f) - softplus(-k_i). Parameters and internals are
minrnn.py's (`.f` and `.i` the normalised gates).
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt

from longmem.config import ModelConfig
from longmem.nets import minrnn, parts
from longmem.nets.minrnn import EMBEDDINGS, activations, init_state, noise  # noqa: F401 (the protocol's)
from longmem.nets.parts import BITS, EXPLODES, log_probs  # noqa: F401 (the protocol's)
from longmem.nets.protocol import Diagram, Forward

# A character language model, as parts.py defines one.
target, loss, schedule = parts.next_char, parts.cross_entropy, parts.unscheduled


def cell(k, H: int):
    """a, b and the gates (T, B, H each) from the pre-activations k (T, B, 3H)."""
    kf, ki, kh = k[..., :H], k[..., H : 2 * H], k[..., 2 * H :]
    d = pt.softplus(-kf) - pt.softplus(-ki)
    f, i = pt.sigmoid(-d), pt.sigmoid(d)
    return f, i * minrnn.g(kh), {"f": f, "i": i}


def init_params(cfg: ModelConfig, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return minrnn.init_params(cfg, vocab_size, rng, width=3)


def forward(params: dict, x, state: dict, masks: dict | None = None, schedule: dict | None = None) -> Forward:
    return minrnn.forward(params, x, state, masks, cell)


def describe(cfg: ModelConfig) -> str:
    return minrnn.describe(cfg, "minLSTM")


def diagram(cfg: ModelConfig) -> Diagram:
    return minrnn.diagram(cfg, "minLSTM", "f, i = sigmoid(k_f), sigmoid(k_i), normalised\nh~ = g(k_h) "
                          "(from the input only)", "h = f' h(t-1) + i' h~")
