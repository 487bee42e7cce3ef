"""The waves model (model2) against a NumPy reference, its stop-gradients, and a run."""

import numpy as np
import pytensor
import pytensor.tensor as pt

from helpers import KILL_FLAGS, TINY, killed_equals_whole, run_cli
from longmem import engine
from longmem.config import ModelConfig
from longmem.nets import model2
from reference import check_against_finite_differences, mean_nll, model2_forward

T, B, V = 5, 2, 4
CFG = ModelConfig(model="model2", hidden=3, hidden_b=5, init_scale=0.5)


def _setup(rng):
    params = model2.init_params(CFG, V, rng)
    shared = engine.share_all(params)
    x = pt.tensor("x", dtype="int32", shape=(T, B))
    y = pt.tensor("y", dtype="int32", shape=(T, B))
    zeros = model2.init_state(CFG, B)
    values = {k: rng.normal(0, 0.5, v.shape).astype(np.float32) for k, v in zeros.items()}
    state = engine.inputs(zeros)
    X = rng.integers(0, V, (T, B)).astype(np.int32)
    Y = rng.integers(0, V, (T, B)).astype(np.int32)
    return params, shared, x, y, state, values, X, Y


def _b_loss(u, dc):
    return 0.5 * ((u[:-1] - dc[1:]) ** 2).sum(-1).mean()


def test_forward_matches_numpy(rng):
    params, shared, x, _, state, values, X, _ = _setup(rng)
    fw = model2.forward(shared, x, state)
    fn = engine.compile_function([x, *state.values()], [fw.logits, fw.internals["u"], fw.internals["dc"],
                                                        fw.losses["model2.b_loss"], *fw.state.values()], "JAX")
    logits, u, dc, b_loss, *after = (np.asarray(a) for a in fn(X, *values.values()))
    ref_logits, ref_u, ref_dc = model2_forward(params, X, values)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(u, ref_u, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dc, ref_dc, rtol=1e-4, atol=1e-5)
    assert abs(b_loss - _b_loss(ref_u, ref_dc)) < 1e-5
    np.testing.assert_allclose(after[4][0], ref_u[-1], rtol=1e-4, atol=1e-5)


def test_gradients_stop_where_the_original_stopped_them(rng):
    """A's parameters get the gradient of the cross-entropy with B's outputs held fixed;
    B's get the gradient of B's loss with A's cell changes held fixed; checked against
    central differences of the NumPy reference with those sequences fixed."""
    params, shared, x, y, state, values, X, Y = _setup(rng)
    fw = model2.forward(shared, x, state)
    cost = model2.loss(fw, y) + fw.losses["model2.b_loss"]
    names = sorted(params)
    fn = engine.compile_function([x, y, *state.values()], pytensor.grad(cost, [shared[k] for k in names]), "JAX")
    got = dict(zip(names, (np.asarray(g) for g in fn(X, Y, *values.values()))))
    _, u_rec, dc_rec = model2_forward(params, X, values)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}

    def cost_of(name):
        if name.startswith(("a.", "out.")):  # A: the cross-entropy, B's outputs fixed
            return mean_nll(model2_forward(p64, X, values, fixed_u=u_rec)[0], Y)
        _, u, _ = model2_forward(p64, X, values, fixed_dc=dc_rec)  # B: its loss, A's changes fixed
        return _b_loss(u, dc_rec)

    check_against_finite_differences(got, p64, cost_of)


def test_model2_survives_kills_and_logs_b_loss(tmp_path, small_text, capsys):
    flags = ["--model", "model2", "--hidden-b", 24, *TINY]
    # Samples are the loop's, tested across kills on the LSTM; leaving them out saves compiling.
    whole = killed_equals_whole(capsys, tmp_path, "train",
                                ["--text", small_text, *KILL_FLAGS, *flags, "--sample-every", 0])
    assert (whole / "tracks" / "model2.b_loss.bin").stat().st_size > 0
    for command in (["eval", whole], ["sample", whole, "--length", 20], ["memory", whole, "--max-context", 16,
                                                                         "--positions", 20],
                    ["report", whole, "--chars", 140, "-o", tmp_path / "report.html"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 0, (command, err)
    assert "; leaned on: " in (tmp_path / "report.html").read_text()  # the hover, through the protocol
