import numpy as np
import pytensor.tensor as pt
import pytest

from longmem import engine, optim
from longmem.config import OptimConfig

STEPS = 4


def _numpy_run(name, p0, a, lr, cfg):
    """The optimizer as a plain NumPy loop on cost = sum(a * p) + sum(p^2) / 2 (grad a + p)."""
    ps = [p.astype(np.float64).copy() for p in p0]
    ms = [np.zeros_like(p) for p in ps]
    vs = [np.zeros_like(p) for p in ps]
    ms_global = 0.0
    for t in range(1, STEPS + 1):
        gs = [ai + p for ai, p in zip(a, ps)]
        if name == "rmsprop-global":
            ms_global = cfg.rho * ms_global + (1 - cfg.rho) * sum((g * g).sum() for g in gs)
        for i, g in enumerate(gs):
            if name == "sgd":
                ps[i] -= lr * g
            elif name == "rmsprop":
                ms[i] = cfg.rho * ms[i] + (1 - cfg.rho) * g * g
                ps[i] -= lr * g / np.sqrt(ms[i] + cfg.eps)
            elif name == "rmsprop-global":
                ps[i] -= lr * g / np.sqrt(ms_global + cfg.eps)
            elif name == "adam":
                ms[i] = cfg.beta1 * ms[i] + (1 - cfg.beta1) * g
                vs[i] = cfg.beta2 * vs[i] + (1 - cfg.beta2) * g * g
                step = lr * np.sqrt(1 - cfg.beta2**t) / (1 - cfg.beta1**t)
                ps[i] -= step * ms[i] / (np.sqrt(vs[i]) + cfg.eps)
    return ps


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "rmsprop-global", "adam"])
def test_optimizer_matches_numpy_loop(name, rng):
    cfg = OptimConfig(rho=0.9, eps=1e-6, beta1=0.8, beta2=0.95)
    p0 = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=5).astype(np.float32)]
    a = [rng.normal(size=p.shape).astype(np.float32) for p in p0]
    params = [engine.shared(p, f"p{i}") for i, p in enumerate(p0)]
    grads = [ai + p for ai, p in zip(a, params)]
    lr = pt.scalar("lr", dtype="float32")
    updates = optim.build(name, params, grads, lr, cfg)
    state_names = sorted(v.name for v, _ in updates if v not in params)
    expected = {"sgd": [], "rmsprop": ["p0.ms", "p1.ms"], "rmsprop-global": ["rmsprop-global.ms"],
                "adam": ["adam.t", "p0.m", "p0.v", "p1.m", "p1.v"]}[name]
    assert state_names == expected
    fn = engine.compile_function([lr], [], "JAX", updates)
    for _ in range(STEPS):
        fn(np.float32(0.05))
    for p, ref in zip(params, _numpy_run(name, p0, a, 0.05, cfg)):
        np.testing.assert_allclose(np.asarray(p.get_value()), ref, rtol=2e-5, atol=2e-6)


def test_rmsprop_global_differs_from_per_parameter(rng):
    """The original's variant scales every direction alike; per-parameter does not."""
    cfg = OptimConfig()
    g = np.array([10.0, 0.1], np.float32)
    moved = {}
    for name in ("rmsprop", "rmsprop-global"):
        p = engine.shared(np.zeros(2, np.float32), "p")
        fn = engine.compile_function([], [], "JAX", optim.build(name, [p], [pt.as_tensor(g)], 0.01, cfg))
        fn()
        moved[name] = -np.asarray(p.get_value())
    assert moved["rmsprop"][0] == pytest.approx(moved["rmsprop"][1], rel=1e-4)
    assert moved["rmsprop-global"][0] / moved["rmsprop-global"][1] == pytest.approx(100, rel=1e-4)


@pytest.mark.parametrize("max_norm", [0.0, 0.5, 100.0])
def test_clip_by_norm(max_norm, rng):
    gs = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=6).astype(np.float32)]
    clipped, norm = optim.clip_by_norm([pt.as_tensor(g) for g in gs], max_norm)
    fn = engine.compile_function([], clipped + [norm], "JAX")
    *out, got_norm = fn()
    true_norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in gs))
    assert float(got_norm) == pytest.approx(true_norm, rel=1e-5)
    scale = 1.0 if not max_norm or true_norm <= max_norm else max_norm / true_norm
    for g, o in zip(gs, out):
        np.testing.assert_allclose(np.asarray(o), g * scale, rtol=1e-5)
