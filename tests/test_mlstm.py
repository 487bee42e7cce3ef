"""mLSTM: the matrix memory against a NumPy loop over steps, streams and heads, its
gradient, and a run through the CLI."""

import numpy as np
import pytensor.tensor as pt
import pytest

from helpers import TINY, gradient_matches_finite_differences, killed_equals_whole, run_cli
from longmem import engine
from longmem.config import ModelConfig
from longmem.nets import mlstm
from reference import mlstm_forward

B, V, H, L, HEADS = 2, 5, 8, 2, 2


def _model(rng, T):
    cfg = ModelConfig(model="mlstm", layers=L, hidden=H, heads=HEADS, init_scale=0.5)
    params = mlstm.init_params(cfg, V, rng)
    for name in params:  # gains and biases away from their start, so the test sees them
        if name.endswith(("norm", "Wg", "bg", "bo", "b1", "b2", ".b")):
            params[name] = params[name] + rng.normal(0, 0.3, params[name].shape).astype(np.float32)
    shapes = mlstm.init_state(cfg, B)
    state = {k: pt.tensor(k, dtype="float32", shape=v.shape) for k, v in shapes.items()}
    carried = {"C": rng.normal(0, 1, shapes["C"].shape), "n": rng.normal(0, 1, shapes["n"].shape),
               "m": rng.normal(0, 1, shapes["m"].shape)}
    x = pt.tensor("x", dtype="int32", shape=(T, B))
    X = rng.integers(0, V, (T, B)).astype(np.int32)
    return cfg, params, x, state, {k: v.astype(np.float32) for k, v in carried.items()}, X


@pytest.mark.parametrize("T, chunk", [(1, 32), (5, 32), (4, 2), (5, 2)])
def test_the_memory_matches_a_loop_over_steps_streams_and_heads(rng, monkeypatch, T, chunk):
    """Read in one chunk, and in chunks of 2 (with one left over) that carry the memories on."""
    monkeypatch.setattr(mlstm, "CHUNK", chunk)
    cfg, params, x, state, carried, X = _model(rng, T)
    names = list(mlstm.noise(cfg, T, B))
    masks = {n: pt.tensor(n, dtype="float32", shape=(T, B, H)) for n in names}
    fw = mlstm.forward(engine.share_all(params), x, state, masks)
    outputs = [fw.logits, fw.state["C"], fw.state["n"], fw.state["m"], fw.internals["block.1.f"]]
    fn = engine.compile_function([x, *state.values(), *masks.values()], outputs, "JAX")
    M = {n: (rng.random((T, B, H)) > 0.3).astype(np.float32) / 0.7 for n in names}
    logits, C, n, m, kept = (np.asarray(a) for a in fn(X, *carried.values(), *M.values()))
    want = mlstm_forward(params, X, *carried.values(), M)
    for got, ref in zip((logits, C, n, m), want):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert kept.shape == (T, B, HEADS) and (kept > 0).all()


def test_the_gradient_matches_finite_differences(rng, monkeypatch):
    T = 3
    monkeypatch.setattr(mlstm, "CHUNK", 2)
    cfg, params, x, state, carried, X = _model(rng, T)
    Y = rng.integers(0, V, (T, B)).astype(np.int32)
    gradient_matches_finite_differences(mlstm, params, x, state, carried, X, Y, "n",
                                        lambda p, X: mlstm_forward(p, X, *carried.values())[::2])


def test_a_run_survives_kills_and_works_with_every_command(tmp_path, capsys):
    flags = ["--model", "mlstm", "--layers", 1, "--heads", 2, "--corpus", "probe:recall", "--probe-distance", "17:24",
             *TINY, "--eval-chars", 500, "--track", "block.0.f", "--steps", 30, "--checkpoint-every-steps", 7]
    whole = killed_equals_whole(capsys, tmp_path, "train", flags)
    # sampling: the run sampled every 10 steps (TINY), through the predictor `sample` uses; `guess --show`
    # reads internals by name as report does, and is run on the LSTM, hmlstm and mingru
    for command in (["eval", whole], ["memory", whole, "--max-context", 4, "--positions", 20],
                    ["probe", whole, "--distances", 17, 40, "--episodes", 4],
                    ["report", whole, "--chars", 140, "-o", tmp_path / "report.html"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 0, (command, err)
