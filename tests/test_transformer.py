"""The transformer: its attention over carried keys and values against a NumPy loop
over queries, its gradient, the bound on how far back it reads, and a run through
the CLI."""

import numpy as np
import pytensor.tensor as pt
import pytest

from helpers import TINY, gradient_matches_finite_differences, killed_equals_whole, run_cli
from longmem import engine
from longmem.config import ModelConfig
from longmem.nets import transformer
from reference import transformer_forward

B, V, H, L, HEADS, C = 2, 5, 8, 2, 2, 4


def _model(rng, T):
    cfg = ModelConfig(model="transformer", layers=L, hidden=H, heads=HEADS, context=C, init_scale=0.5)
    params = transformer.init_params(cfg, V, rng)
    for name in params:  # gains and biases away from 1 and 0, so the test sees them
        if name.endswith(("norm", "scale", "b1", "b2", ".b")):
            params[name] = params[name] * (1 + rng.normal(0, 0.3, params[name].shape)).astype(np.float32)
    state = transformer.init_state(cfg, B)
    symbolic = {k: pt.tensor(k, dtype="float32", shape=v.shape) for k, v in state.items()}
    carried = {"k": rng.normal(0, 1, state["k"].shape), "v": rng.normal(0, 1, state["v"].shape),
               "seen": (rng.random(state["seen"].shape) > 0.4)}  # some slots not yet read
    x = pt.tensor("x", dtype="int32", shape=(T, B))
    X = rng.integers(0, V, (T, B)).astype(np.int32)
    return cfg, params, x, symbolic, {k: v.astype(np.float32) for k, v in carried.items()}, X


@pytest.mark.parametrize("T, piece", [(1, 128), (7, 128), (7, 1)])  # windows shorter and longer than the
def test_attention_matches_a_loop_over_queries(rng, monkeypatch, T, piece):  # context; attended in two pieces
    monkeypatch.setattr(transformer, "PIECE", piece)
    cfg, params, x, state, carried, X = _model(rng, T)
    names = list(transformer.noise(cfg, T, B))
    masks = {n: pt.tensor(n, dtype="float32", shape=(T, B, H)) for n in names}
    fw = transformer.forward(engine.share_all(params), x, state, masks)
    outputs = [fw.logits, fw.state["k"], fw.state["v"], fw.state["seen"], fw.internals["block.1.lag"]]
    fn = engine.compile_function([x, *state.values(), *masks.values()], outputs, "JAX")
    M = {n: (rng.random((T, B, H)) > 0.3).astype(np.float32) / 0.7 for n in names}
    logits, k, v, seen, lag = (np.asarray(a) for a in fn(X, *carried.values(), *M.values()))
    ref_logits, ref_k, ref_v = transformer_forward(params, X, carried["k"], carried["v"], carried["seen"], M)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(k, ref_k, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v, ref_v, rtol=1e-5, atol=1e-5)
    want_seen = np.concatenate([carried["seen"][0], np.ones((B, T))], 1)[None, :, T:]
    np.testing.assert_array_equal(seen, want_seen)
    assert lag.shape == (T, B, HEADS) and ((0 <= lag) & (lag <= C)).all()


def test_the_gradient_matches_finite_differences(rng):
    T = 3
    cfg, params, x, state, carried, X = _model(rng, T)
    Y = rng.integers(0, V, (T, B)).astype(np.int32)
    def reference(p, X):  # logits and the new values
        return transformer_forward(p, X, carried["k"], carried["v"], carried["seen"])[::2]

    gradient_matches_finite_differences(transformer, params, x, state, carried, X, Y, "v", reference)


def test_it_reads_at_most_layers_times_context_back(rng):
    """From an empty state, a character changes the predictions L x C positions on and
    no further."""
    T = L * C + 3
    cfg, params, x, state, _, X = _model(rng, T)
    fw = transformer.forward(engine.share_all(params), x, state)
    fn = engine.compile_function([x, *state.values()], fw.logits, "JAX")
    empty = transformer.init_state(cfg, B)
    changed = X.copy()
    changed[0] = (X[0] + 1) % V
    moved = np.abs(np.asarray(fn(changed, *empty.values())) - np.asarray(fn(X, *empty.values()))).max(axis=(1, 2))
    assert (moved[: L * C + 1] > 1e-6).all() and (moved[L * C + 1 :] == 0).all(), moved


def test_a_run_survives_kills_and_works_with_every_command(tmp_path, capsys):
    flags = ["--model", "transformer", "--layers", 1, "--heads", 2, "--context", 6, "--corpus", "probe:copy",
             "--probe-distance", "4:6", "--probe-length", 3, *TINY, "--eval-chars", 500, "--track", "block.0.lag",
             "--steps", 40, "--checkpoint-every-steps", 7]
    whole = killed_equals_whole(capsys, tmp_path, "train", flags)
    # sampling: the run sampled every 10 steps (TINY), through the predictor `sample` uses; `guess --show`
    # reads internals by name as report does, and is run on the LSTM, hmlstm and mingru
    for command in (["eval", whole], ["memory", whole, "--max-context", 4, "--positions", 20],
                    ["probe", whole, "--distances", 5, 24, "--episodes", 4],
                    ["report", whole, "--chars", 140, "-o", tmp_path / "report.html"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 0, (command, err)
    code, out, _ = run_cli(capsys, "inspect", whole)
    assert "heads=2" in out and "context=6" in out


def test_options_of_the_transformer_are_refused_elsewhere_and_checked(tmp_path, capsys, small_text):
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--heads", 2, "--run-dir", tmp_path / "a")
    assert code == 1 and "--heads is for --model mlstm, slstm, transformer, not lstm" in err
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--model", "transformer", *TINY, "--hidden", 12,
                           "--heads", 4, "--run-dir", tmp_path / "b")
    assert code == 1 and "multiple of twice --heads" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()
