"""Optimizers written as PyTensor updates.

Each takes the parameters (shared variables), their gradients and a learning
rate (a symbolic scalar, so a schedule needs no recompilation) and returns a
list of (shared variable, new value) pairs. Optimizer state lives in shared
variables named after their parameter (`lstm.0.Wh.ms`), which is how checkpoints
find and name it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytensor
import pytensor.tensor as pt

from longmem.engine import shared

Updates = list[tuple]


def _zeros_like(p, suffix: str):
    return shared(np.zeros_like(p.get_value()), f"{p.name}.{suffix}")


def sgd(params, grads, lr) -> Updates:
    """p <- p - lr * g."""
    return [(p, p - lr * g) for p, g in zip(params, grads)]


def rmsprop(params, grads, lr, rho=0.95, eps=1e-8) -> Updates:
    """Per parameter: ms <- rho * ms + (1 - rho) * g^2;  p <- p - lr * g / sqrt(ms + eps)."""
    updates = []
    for p, g in zip(params, grads):
        ms = _zeros_like(p, "ms")
        new_ms = rho * ms + (1 - rho) * g * g
        updates += [(ms, new_ms), (p, p - lr * g / pt.sqrt(new_ms + eps))]
    return updates


def rmsprop_global(params, grads, lr, rho=0.95, eps=1e-8) -> Updates:
    """The original's variant: one running average of the total squared gradient.

    ms <- rho * ms + (1 - rho) * sum over all parameters of g^2; every
    parameter then moves by lr * g / sqrt(ms + eps), so the step shrinks when
    the whole gradient is large, but no direction is rescaled on its own.
    """
    ms = shared(np.float32(0.0), "rmsprop-global.ms")
    total = sum((g * g).sum() for g in grads)
    new_ms = rho * ms + (1 - rho) * total
    scale = lr / pt.sqrt(new_ms + eps)
    return [(ms, new_ms)] + [(p, p - scale * g) for p, g in zip(params, grads)]


def adam(params, grads, lr, beta1=0.9, beta2=0.999, eps=1e-8) -> Updates:
    """Adam with bias correction (Kingma & Ba, 2015), as a reference."""
    t = shared(np.float32(0.0), "adam.t")
    new_t = t + 1
    correction = pt.sqrt(1 - beta2**new_t) / (1 - beta1**new_t)
    updates = [(t, new_t)]
    for p, g in zip(params, grads):
        m, v = _zeros_like(p, "m"), _zeros_like(p, "v")
        new_m = beta1 * m + (1 - beta1) * g
        new_v = beta2 * v + (1 - beta2) * g * g
        updates += [(m, new_m), (v, new_v), (p, p - lr * correction * new_m / (pt.sqrt(new_v) + eps))]
    return updates


def clip_by_norm(grads, max_norm: float):
    """Scale all gradients together so their global L2 norm is at most max_norm.

    Returns the clipped gradients and the norm before clipping.
    """
    norm = pt.sqrt(sum((g * g).sum() for g in grads))
    if not max_norm:
        return list(grads), norm
    scale = pt.minimum(1.0, max_norm / (norm + 1e-6))
    return [g * scale for g in grads], norm


# The update rules by name (--optimizer), each with the constants it takes from an OptimConfig.
RULES = {
    "sgd": lambda params, grads, lr, cfg: sgd(params, grads, lr),
    "rmsprop": lambda params, grads, lr, cfg: rmsprop(params, grads, lr, rho=cfg.rho, eps=cfg.eps),
    "rmsprop-global": lambda params, grads, lr, cfg: rmsprop_global(params, grads, lr, rho=cfg.rho, eps=cfg.eps),
    "adam": lambda params, grads, lr, cfg: adam(params, grads, lr, beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.eps),
}


def build(name: str, params, grads, lr, cfg) -> Updates:
    """Updates for the optimizer `name` with the constants of an OptimConfig."""
    if name not in RULES:
        raise ValueError(f"unknown optimizer {name!r}")
    return RULES[name](params, grads, lr, cfg)


@dataclass
class Minimize:
    """The updates that minimize a loss, and what a step can report about itself."""

    updates: Updates
    state: dict  # optimizer state variables by name
    sources: dict  # trackable symbolic values by name (see track.py)


def minimize(loss, params: dict, lr, cfg) -> Minimize:
    """Gradients, global-norm clipping and the optimizer of an OptimConfig.

    `sources` holds the loss, lr, gradient and update norms, and for each
    parameter NAME its value after the step (NAME), its gradient before
    clipping (NAME.grad) and the change the step made (NAME.update), plus the
    optimizer's state after the step.
    """
    names = list(params)
    raw = pytensor.grad(loss, [params[k] for k in names])
    grads, grad_norm = clip_by_norm(raw, cfg.clip)
    updates = build(cfg.optimizer, [params[k] for k in names], grads, lr, cfg)
    new = {var.name: value for var, value in updates}
    deltas = {k: new[k] - params[k] for k in names}
    sources = {"loss": loss, "lr": lr, "grad_norm": grad_norm}
    sources["update_norm"] = pt.sqrt(sum((d * d).sum() for d in deltas.values()))
    for k, g in zip(names, raw):
        sources |= {k: new[k], f"{k}.grad": g, f"{k}.update": deltas[k]}
    state = {var.name: var for var, _ in updates if var.name not in params}
    sources |= {name: new[name] for name in state}
    return Minimize(updates, state, sources)
