"""What every model in `nets/` offers; nothing outside `nets/` looks behind it.

A model module has:

    init_params(cfg, vocab_size, rng) -> dict[str, ndarray]
        its parameters, plain NumPy, dotted names (`lstm.0.Wh`)
    init_state(cfg, batch) -> dict[str, ndarray]
        the recurrent state a stream starts from, any number of named arrays
        whose second axis is the stream (checkpointed as `state/NAME`)
    noise(cfg, T, B) -> dict[str, (shape, p)]
        the dropout masks a training window needs; the loop draws them
        (reproducibly, from the checkpointed generator) and passes
        multipliers (0, or 1 / (1 - p)) to `forward`
    schedule(cfg, step) -> dict[str, float]
        values that change with the training step (hmlstm's slope); the loop
        passes them to `forward` as symbolic scalars (none: plain defaults)
    forward(params, x, state, masks=None, schedule=None) -> Forward
        over a window x (T, B) of codes
    target(x, y) -> (T, B)
        what the model learns to output at each position, from the window's
        inputs x and the text's next characters y (for a language model, y)
    loss(fw, target) -> scalar
        the loss it trains on (the sum of `Forward.losses` is added to it)
    log_probs(logits, target) -> (T, B)
        log p of the targets, for evaluation in bits per character
    BITS: bool
        whether that loss is a cross-entropy in nats (metrics then show it in
        bits per character too)
    BASE: bool (optional, default False)
        built on a finished run: `init_params` then also takes `base`, that
        run's parameters (launch loads them from --base and checks its text)
    EXPLODES: float | None
        stop a run whose loss exceeds this many times its first loss (None:
        only a NaN or infinite value stops it, for losses that start near 0)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Forward:
    logits: object  # (T, B, V)
    state: dict  # the state after the window, named as init_state names it
    internals: dict  # named values at full resolution, (T, B, ...)
    losses: dict  # extra loss terms (scalars) the model trains on, by name
