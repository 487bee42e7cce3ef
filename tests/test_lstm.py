import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from longmem import engine
from longmem.config import ModelConfig
from longmem.nets import lstm
from reference import lstm_forward, mean_nll

T, B, V = 5, 3, 7


def _build(cfg, rng):
    params = lstm.init_params(cfg, V, rng)
    # Non-zero biases so the test sees them used.
    for k in params:
        if k.endswith(".b"):
            params[k] = params[k] + rng.normal(0, 0.1, params[k].shape).astype(np.float32)
    shared = engine.share_all(params)
    x = pt.tensor("x", dtype="int32", shape=(T, B))
    y = pt.tensor("y", dtype="int32", shape=(T, B))
    L, H = cfg.layers, cfg.hidden
    h0 = pt.tensor("h0", dtype="float32", shape=(L, B, H))
    c0 = pt.tensor("c0", dtype="float32", shape=(L, B, H))
    return params, shared, x, y, h0, c0


def _inputs(cfg, rng):
    x = rng.integers(0, V, (T, B)).astype(np.int32)
    y = rng.integers(0, V, (T, B)).astype(np.int32)
    h0 = rng.normal(0, 0.5, (cfg.layers, B, cfg.hidden)).astype(np.float32)
    c0 = rng.normal(0, 0.5, (cfg.layers, B, cfg.hidden)).astype(np.float32)
    return x, y, h0, c0


def test_init_params_shapes_scale_and_forget_bias(rng):
    cfg = ModelConfig(layers=2, hidden=8, init_scale=0.3)
    p = lstm.init_params(cfg, V, rng)
    assert p["lstm.0.Wx"].shape == (V, 32) and p["lstm.1.Wx"].shape == (8, 32)
    assert p["lstm.1.Wh"].shape == (8, 32) and p["out.W"].shape == (8, V)
    assert np.abs(p["lstm.0.Wh"]).max() <= 0.3 and np.abs(p["lstm.0.Wh"]).max() > 0.2
    b = p["lstm.0.b"]
    assert (b[8:16] == 1).all() and (b[:8] == 0).all() and (b[16:] == 0).all()


@pytest.mark.parametrize("layers", [1, 2])
def test_forward_matches_numpy(rng, layers):
    cfg = ModelConfig(layers=layers, hidden=6)
    params, shared, x, y, h0, c0 = _build(cfg, rng)
    fw = lstm.forward(shared, x, {"h": h0, "c": c0})
    fn = engine.compile_function([x, h0, c0], [fw.logits, fw.state["h"], fw.state["c"]], "JAX")
    X, _, H0, C0 = _inputs(cfg, rng)
    logits, h, c = (np.asarray(a) for a in fn(X, H0, C0))
    ref_logits, ref_h, ref_c = lstm_forward(params, X, H0, C0)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h, ref_h, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c, ref_c, rtol=1e-4, atol=1e-5)


# Weights of the gate sums in the second cost: gradients that flow into the gates.
GATE_WEIGHTS = {"lstm.0.i": 0.05, "lstm.0.f": 0.1, "lstm.1.o": -0.07, "lstm.1.g": 0.03}


@pytest.mark.parametrize("through_gates", [False, True])
def test_hand_written_backward_matches_finite_differences(rng, through_gates):
    """The custom BPTT gradient, for every parameter and the initial state,
    against central differences of the float64 NumPy reference; the second
    cost also reads the gates themselves, as a regulariser would."""
    cfg = ModelConfig(layers=2, hidden=4)
    params, shared, x, y, h0, c0 = _build(cfg, rng)
    fw = lstm.forward(shared, x, {"h": h0, "c": c0})
    # The cost uses the final cell state too, so its gradient path is checked.
    cost = -lstm.log_probs(fw.logits, y).mean() + 0.1 * fw.state["c"].sum()
    weights = GATE_WEIGHTS if through_gates else {}
    cost += sum(w * fw.internals[name].sum() for name, w in weights.items())
    names = sorted(params)
    grads = pytensor.grad(cost, [shared[k] for k in names] + [h0, c0])
    fn = engine.compile_function([x, y, h0, c0], grads, "JAX")
    X, Y, H0, C0 = _inputs(cfg, rng)
    got = [np.asarray(g) for g in fn(X, Y, H0, C0)]

    def ref_cost(p, h, c):
        sums = {}
        logits, _, c_final = lstm_forward(p, X, h, c, gate_sums=sums)
        return mean_nll(logits, Y) + 0.1 * c_final.sum() + sum(w * sums[name] for name, w in weights.items())
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    targets = [(p64, k) for k in names] + [("h0", None), ("c0", None)]
    state = {"h0": H0.astype(np.float64), "c0": C0.astype(np.float64)}
    eps = 1e-5
    for (where, key), g in zip(targets, got):
        arr = p64[key] if key else state[where]
        for idx in list(np.ndindex(arr.shape))[:: max(1, arr.size // 12)]:
            old = arr[idx]
            arr[idx] = old + eps
            up = ref_cost(p64, state["h0"], state["c0"])
            arr[idx] = old - eps
            down = ref_cost(p64, state["h0"], state["c0"])
            arr[idx] = old
            numeric = (up - down) / (2 * eps)
            assert abs(g[idx] - numeric) < 1e-3 + 1e-2 * abs(numeric), (key or where, idx, g[idx], numeric)


@pytest.mark.parametrize("steps", [T, 1])
def test_hand_written_backward_matches_scan_autodiff(rng, monkeypatch, steps):
    """Same gradients as PyTensor's automatic scan gradient of a plain LSTM scan, also for
    a window of one step (which the backward pass computes without a scan)."""
    monkeypatch.setitem(globals(), "T", steps)
    cfg = ModelConfig(layers=1, hidden=5)
    params, shared, x, y, h0, c0 = _build(cfg, rng)
    fw = lstm.forward(shared, x, {"h": h0, "c": c0})
    cost = -lstm.log_probs(fw.logits, y).mean()
    xp = shared["lstm.0.Wx"][x] + shared["lstm.0.b"]
    hs, *_ = pytensor.scan(
        lstm._forward_step, sequences=[xp], outputs_info=[h0[0], c0[0], None, None, None, None],
        non_sequences=[shared["lstm.0.Wh"]], strict=True, return_updates=False,
    )
    ref_cost = -lstm.log_probs(hs @ shared["out.W"] + shared["out.b"], y).mean()
    wrt = [shared[k] for k in sorted(params)]
    fn = engine.compile_function(
        [x, y, h0, c0], pytensor.grad(cost, wrt) + pytensor.grad(ref_cost, wrt), "JAX"
    )
    out = fn(*_inputs(cfg, rng))
    for mine, ref in zip(out[: len(wrt)], out[len(wrt):]):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(ref), rtol=1e-4, atol=1e-6)


def test_dropout_masks_multiply_each_layer_output(rng):
    cfg = ModelConfig(layers=2, hidden=6)
    params, shared, x, y, h0, c0 = _build(cfg, rng)
    masks = [pt.tensor(f"m{i}", dtype="float32", shape=(T, B, 6)) for i in range(2)]
    fw = lstm.forward(shared, x, {"h": h0, "c": c0}, {f"lstm.{i}.dropout": m for i, m in enumerate(masks)})
    fn = engine.compile_function([x, h0, c0, *masks], fw.logits, "JAX")
    X, _, H0, C0 = _inputs(cfg, rng)
    M = [((rng.random((T, B, 6)) > 0.5) * 2).astype(np.float32) for _ in range(2)]
    ref, _, _ = lstm_forward(params, X, H0, C0, M)
    np.testing.assert_allclose(np.asarray(fn(X, H0, C0, *M)), ref, rtol=1e-4, atol=1e-5)
