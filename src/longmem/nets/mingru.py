"""minGRU (Feng et al. 2024, "Were RNNs all we needed?"), in the residual blocks of
minrnn.py. From each position's pre-activations k = [k_z, k_h] (2H),

    z_t = sigmoid(k_z),  h_t = (1 - z_t) h_(t-1) + z_t g(k_h),

so a = 1 - z and b = z g(k_h). Parameters and internals are minrnn.py's (`.f`
is 1 - z, `.i` is z).
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt

from longmem.config import ModelConfig
from longmem.nets import minrnn, parts
from longmem.nets.minrnn import EMBEDDINGS, activations, init_state, noise  # noqa: F401 (the protocol's)
from longmem.nets.parts import BITS, EXPLODES, log_probs  # noqa: F401 (the protocol's)
from longmem.nets.protocol import Diagram, Forward

# Trained at 0.002 where --lr is not given: against the 0.005 the other nets use, it won on four of the
# five texts and probes measured and lost the fifth by 0.012 (docs/memory.md, "mingru's learning rate").
LR = 2e-3

# A character language model, as parts.py defines one.
target, loss, schedule = parts.next_char, parts.cross_entropy, parts.unscheduled


def cell(k, H: int):
    """a, b and the gates (T, B, H each) from the pre-activations k (T, B, 2H)."""
    kz, kh = k[..., :H], k[..., H:]
    a, z = pt.sigmoid(-kz), pt.sigmoid(kz)
    return a, z * minrnn.g(kh), {"f": a, "i": z}


def init_params(cfg: ModelConfig, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return minrnn.init_params(cfg, vocab_size, rng, width=2)


def forward(params: dict, x, state: dict, masks: dict | None = None, schedule: dict | None = None) -> Forward:
    return minrnn.forward(params, x, state, masks, cell)


def describe(cfg: ModelConfig) -> str:
    return minrnn.describe(cfg, "minGRU")


def diagram(cfg: ModelConfig) -> Diagram:
    return minrnn.diagram(cfg, "minGRU", "z = sigmoid(k_z), h~ = g(k_h)\n(from the input only)",
                          "h = (1 - z) h(t-1) + z h~")
