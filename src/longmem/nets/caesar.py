"""The original's first net: 26 one-hot inputs, logistic hidden and output units.

Parameters: `hidden.W` (26, H), `hidden.b` (H,), `out.W` (H, 26), `out.b` (26,).
The one-hot input times `hidden.W` is a row lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt

LETTERS = 26


def init_params(hidden: int, init_scale: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights uniform in [-init_scale, init_scale], biases 0."""
    s = init_scale
    return {
        "hidden.W": rng.uniform(-s, s, (LETTERS, hidden)).astype(np.float32),
        "hidden.b": np.zeros(hidden, np.float32),
        "out.W": rng.uniform(-s, s, (hidden, LETTERS)).astype(np.float32),
        "out.b": np.zeros(LETTERS, np.float32),
    }


@dataclass
class Forward:
    hidden: pt.TensorVariable  # (B, H)
    out: pt.TensorVariable  # (B, 26), each in (0, 1)


def forward(params: dict, x) -> Forward:
    """Activations for letters x (B,) given as codes 0..25."""
    hidden = pt.sigmoid(params["hidden.W"][x] + params["hidden.b"])
    return Forward(hidden, pt.sigmoid(hidden @ params["out.W"] + params["out.b"]))


def squared_error(out, y):
    """Half the squared distance to the one-hot target, summed over outputs, mean over the batch."""
    target = pt.eq(y[:, None], pt.arange(LETTERS)[None, :])
    return 0.5 * ((out - target) ** 2).sum(axis=1).mean()
