"""minGRU and minLSTM: the linear recurrence (ops.py) and the models against
step-by-step NumPy loops, their gradients, and runs through the CLI."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from helpers import TINY, killed_equals_whole, run_cli
from longmem import engine, ops
from longmem.config import ModelConfig
from longmem.nets import NETS
from reference import check_against_finite_differences, mean_nll, minrnn_forward

B, V, H, L = 3, 5, 4, 2
CELLS = ["mingru", "minlstm"]


def _recur(a, b, h0, reverse=False):
    h, out = h0, np.empty_like(b)
    for t in range(len(b))[::-1] if reverse else range(len(b)):
        h = out[t] = a[t] * h + b[t]
    return out


@pytest.mark.parametrize("parallel", [False, True])  # the CPU's choice, and that of other devices
@pytest.mark.parametrize("reverse", [False, True])
def test_the_linear_recurrence_and_its_gradient_match_numpy(rng, monkeypatch, parallel, reverse):
    monkeypatch.setattr(ops, "PARALLEL", parallel)
    T = 7
    a, b = (pt.tensor(n, dtype="float32", shape=(T, 2, 3)) for n in "ab")
    h0 = pt.tensor("h0", dtype="float32", shape=(2, 3))
    A, Bv = rng.uniform(0, 1, (T, 2, 3)), rng.normal(0, 1, (T, 2, 3))
    H0, W = rng.normal(0, 1, (2, 3)), rng.normal(0, 1, (T, 2, 3))
    h = ops.linear_recurrence(a, b, h0, reverse)
    fn = engine.compile_function([a, b, h0], [h, *pytensor.grad((h * W.astype(np.float32)).sum(), [a, b, h0])],
                                 "JAX")
    got = [np.asarray(v) for v in fn(*(v.astype(np.float32) for v in (A, Bv, H0)))]
    np.testing.assert_allclose(got[0], _recur(A, Bv, H0, reverse), rtol=1e-5, atol=1e-6)
    inputs = {"a": A, "b": Bv, "h0": H0}
    check_against_finite_differences(dict(zip(inputs, got[1:])), inputs,
                                     lambda _: (_recur(inputs["a"], inputs["b"], inputs["h0"], reverse) * W).sum())
    # the other backends run its NumPy loop
    numpy_fn = engine.compile_function([a, b, h0], h, "FAST_COMPILE")
    np.testing.assert_allclose(numpy_fn(*(v.astype(np.float32) for v in (A, Bv, H0))), got[0], rtol=1e-6)


def _model(rng, cell, T):
    cfg = ModelConfig(model=cell, layers=L, hidden=H, init_scale=0.5)
    params = NETS[cell].init_params(cfg, V, rng)
    for name in params:  # norms and biases away from 1 and 0, so the test sees them
        if name.endswith(("norm", ".b", "b1", "b2")):
            params[name] = params[name] + rng.normal(0, 0.3, params[name].shape).astype(np.float32)
    x = pt.tensor("x", dtype="int32", shape=(T, B))
    h0 = pt.tensor("h0", dtype="float32", shape=(L, B, H))
    X = rng.integers(0, V, (T, B)).astype(np.int32)
    H0 = rng.normal(0, 0.5, (L, B, H)).astype(np.float32)  # negative values too
    return cfg, params, x, h0, X, H0


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T", [1, 11])
def test_the_model_matches_the_step_by_step_loop(rng, cell, T):
    cfg, params, x, h0, X, H0 = _model(rng, cell, T)
    net, shared = NETS[cell], engine.share_all(params)
    names = list(net.noise(cfg, T, B))
    masks = {n: pt.tensor(n, dtype="float32", shape=(T, B, H)) for n in names}
    fw = net.forward(shared, x, {"h": h0}, masks)
    fn = engine.compile_function([x, h0, *masks.values()], [fw.logits, fw.state["h"], fw.internals["block.1.f"]],
                                 "JAX")
    M = {n: (rng.random((T, B, H)) > 0.3).astype(np.float32) / 0.7 for n in names}
    logits, h, kept = (np.asarray(a) for a in fn(X, H0, *M.values()))
    ref_logits, ref_h = minrnn_forward(params, X, H0, cell, M)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h, ref_h, rtol=1e-4, atol=1e-5)
    assert ((0 < kept) & (kept < 1)).all()


@pytest.mark.parametrize("cell", CELLS)
def test_the_gradient_matches_finite_differences(rng, cell):
    T = 5
    cfg, params, x, h0, X, H0 = _model(rng, cell, T)
    y = pt.tensor("y", dtype="int32", shape=(T, B))
    Y = rng.integers(0, V, (T, B)).astype(np.int32)
    shared, names = engine.share_all(params), sorted(params)
    fw = NETS[cell].forward(shared, x, {"h": h0})
    cost = -NETS[cell].log_probs(fw.logits, y).mean() + 0.1 * fw.state["h"].sum()
    fn = engine.compile_function([x, y, h0], pytensor.grad(cost, [shared[k] for k in names]), "JAX")
    got = dict(zip(names, (np.asarray(g) for g in fn(X, Y, H0))))
    p64 = {k: v.astype(np.float64) for k, v in params.items()}

    def cost_of(name):
        logits, h = minrnn_forward(p64, X, H0, cell)
        return mean_nll(logits, Y) + 0.1 * h.sum()

    check_against_finite_differences(got, p64, cost_of, atol=2e-4)


SHORT_KILL = ["--steps", 60, "--checkpoint-every-steps", 7]  # a few checkpoints; the kill lands among them


def test_mingru_on_a_probe_survives_kills_and_works_with_every_command(tmp_path, capsys):
    flags = ["--model", "mingru", "--layers", 2, "--corpus", "probe:copy", "--probe-distance", "6:12",
             "--probe-length", 3, *TINY, "--eval-chars", 500, "--track", "block.0.f", *SHORT_KILL]
    whole = killed_equals_whole(capsys, tmp_path, "train", flags)
    # sampling: the run sampled every 10 steps (TINY), through the predictor `sample` uses
    for command in (["eval", whole], ["memory", whole, "--max-context", 4, "--positions", 20],
                    ["probe", whole, "--distances", 6, 24, "--episodes", 4],
                    ["report", whole, "--chars", 140, "-o", tmp_path / "report.html"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 0, (command, err)
    assert "; leaned on: " in (tmp_path / "report.html").read_text()
    code, out, err = run_cli(capsys, "guess", whole, "--chars", 30, "--width", 15, "--show", "block.1.f[0]")
    assert code == 0 and "block.1.f[0]" in out, err


def test_minlstm_survives_kills(tmp_path, capsys, small_text):
    whole = killed_equals_whole(capsys, tmp_path, "train", ["--model", "minlstm", "--text", small_text, *TINY,
                                                           "--sample-every", 0, "--track", "block.0.i", *SHORT_KILL])
    code, out, err = run_cli(capsys, "eval", whole)
    assert code == 0 and "bits/char" in out, err
