"""The hierarchical multiscale LSTM against a NumPy reference, its gradient, and a run."""

import numpy as np
import pytensor
import pytensor.tensor as pt

from helpers import KILL_FLAGS, TINY, killed_equals_whole, run_cli
from longmem import engine
from longmem.config import ModelConfig
from longmem.nets import hmlstm
from longmem.predict import Predictor
from longmem.study.guess import marks
from reference import hmlstm_forward, mean_nll

T, B, V, H, L = 6, 3, 5, 4, 3


def _model(rng, boundary_scale=3.0):
    """A tiny model whose boundary units depend strongly on the input and the state,
    so that COPY, UPDATE and FLUSH all happen within the window."""
    cfg = ModelConfig(layers=L, hidden=H, init_scale=0.6)
    params = hmlstm.init_params(cfg, V, rng)
    for l in range(L):
        params[f"hm.{l}.W"][:, 4 * H] = rng.normal(0, boundary_scale, params[f"hm.{l}.W"].shape[0])
        params[f"hm.{l}.U"][:, 4 * H] = rng.normal(0, boundary_scale, H)
    shared = engine.share_all(params)
    x = pt.tensor("x", dtype="int32", shape=(T, B))
    y = pt.tensor("y", dtype="int32", shape=(T, B))
    state = {"h": pt.tensor("h", dtype="float32", shape=(L, B, H)),
             "c": pt.tensor("c", dtype="float32", shape=(L, B, H)),
             "z": pt.tensor("z", dtype="float32", shape=(L, B))}
    X = rng.integers(0, V, (T, B)).astype(np.int32)
    Y = rng.integers(0, V, (T, B)).astype(np.int32)
    H0 = rng.normal(0, 0.5, (L, B, H)).astype(np.float32)
    C0 = rng.normal(0, 0.5, (L, B, H)).astype(np.float32)
    Z0 = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]], np.float32)
    return params, shared, x, y, state, (X, Y, H0, C0, Z0)


def test_forward_matches_numpy_and_uses_every_operation(rng):
    params, shared, x, _, state, (X, _, H0, C0, Z0) = _model(rng)
    fw = hmlstm.forward(shared, x, state)
    zs = [fw.internals[f"hm.{l}.z"] for l in range(L)]
    fn = engine.compile_function([x, *state.values()], [fw.logits, *fw.state.values(), *zs], "JAX")
    logits, h, c, z, *boundaries = (np.asarray(a) for a in fn(X, H0, C0, Z0))
    ref_logits, ref_h, ref_c, ref_z, ref_boundaries = hmlstm_forward(params, X, H0, C0, Z0)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h, ref_h, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c, ref_c, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(z, ref_z)
    np.testing.assert_array_equal(np.stack(boundaries, axis=1), ref_boundaries)
    lower = ref_boundaries[:, :2]
    assert 0 < lower.mean() < 1, "the lower layers should fire sometimes, not always"
    assert (ref_boundaries[:, 2] == 0).all(), "the top layer has no boundary detector"


def test_gradient_matches_finite_differences_where_boundaries_are_fixed(rng):
    """With a steep hard sigmoid every boundary unit is clipped, so the boundaries are
    locally constant, the straight-through term adds nothing, and the gradient must
    be the exact one: checked against central differences of the NumPy reference."""
    params, shared, x, y, state, (X, Y, H0, C0, Z0) = _model(rng)
    fw = hmlstm.forward(shared, x, state, schedule={"slope": pt.constant(np.float32(1e4))})
    cost = -hmlstm.log_probs(fw.logits, y).mean() + 0.1 * fw.state["c"].sum()
    names = sorted(params)
    fn = engine.compile_function([x, y, *state.values()], pytensor.grad(cost, [shared[k] for k in names]), "JAX")
    got = dict(zip(names, (np.asarray(g) for g in fn(X, Y, H0, C0, Z0))))
    p64 = {k: v.astype(np.float64) for k, v in params.items()}

    def ref_cost():
        logits, _, c, _, _ = hmlstm_forward(p64, X, H0, C0, Z0)
        return mean_nll(logits, Y) + 0.1 * c.sum()

    eps = 1e-5
    for name in names:
        arr = p64[name]
        for idx in list(np.ndindex(arr.shape))[:: max(1, arr.size // 10)]:
            old = arr[idx]
            arr[idx] = old + eps
            up = ref_cost()
            arr[idx] = old - eps
            down = ref_cost()
            arr[idx] = old
            numeric = (up - down) / (2 * eps)
            assert abs(got[name][idx] - numeric) < 1e-3 + 1e-2 * abs(numeric), (name, idx, got[name][idx], numeric)


def test_boundaries_learn_through_the_straight_through_estimator(rng):
    """Away from saturation the boundary units get a gradient (straight through the threshold)."""
    params, shared, x, y, state, (X, Y, H0, C0, Z0) = _model(rng, boundary_scale=0.1)
    slope = pt.scalar("slope", dtype="float32")
    fw = hmlstm.forward(shared, x, state, schedule={"slope": slope})
    cost = -hmlstm.log_probs(fw.logits, y).mean()
    grad = pytensor.grad(cost, shared["hm.0.U"])[:, 4 * H]
    fn = engine.compile_function([x, y, *state.values(), slope], grad, "JAX")
    gentle, steep = (np.abs(np.asarray(fn(X, Y, H0, C0, Z0, np.float32(s)))).sum() for s in (1.0, 3.0))
    assert gentle > 0 and steep > 0
    cfg = ModelConfig(slope_rate=0.001)
    assert hmlstm.schedule(cfg, 0) == {"slope": 1.0} and hmlstm.schedule(cfg, 10_000) == {"slope": 5.0}


def test_hmlstm_survives_kills_and_is_measured(tmp_path, small_text, capsys):
    flags = ["--model", "hmlstm", "--layers", 2, "--slope-rate", 0.05, "--track", "hm.0.z", *TINY]
    # Samples are the loop's, tested across kills on the LSTM; leaving them out saves compiling.
    whole = killed_equals_whole(capsys, tmp_path, "train",
                                ["--text", small_text, *KILL_FLAGS, *flags, "--sample-every", 0])
    for command in (["eval", whole], ["sample", whole, "--length", 20],
                    ["memory", whole, "--max-context", 4, "--positions", 20],
                    ["report", whole, "--chars", 140, "-o", tmp_path / "report.html"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 0, (command, err)
    assert "; leaned on: " in (tmp_path / "report.html").read_text()  # the hover, through the protocol
    code, out, err = run_cli(capsys, "guess", whole, "--chars", 30, "--width", 15, "--show", "hm.0.z", "hm.1.c[0]")
    assert code == 0, err
    blocks = out.split("\n\n")
    assert len(blocks) == 4 and all(len(b.split("\n")) == 4 for b in blocks[:2])
    assert set(blocks[0].split("\n")[2]) <= {"|", " "} and "hm.0.z, hm.1.c[0]" in blocks[2]


def test_trace_reads_the_boundaries_over_a_text_in_windows(rng):
    """Predictor.trace carries the state across windows (13 characters in windows of 5)."""
    cfg = ModelConfig(model="hmlstm", layers=L, hidden=H, init_scale=0.6)
    params, *_ = _model(rng)
    predictor = Predictor(engine.share_all(params), cfg, "JAX")
    codes = rng.integers(0, V, 13).astype(np.uint8)
    traced = predictor.trace(codes, 5, ["hm.0.z", "hm.1.z", "hm.1.c[2]"])
    assert [key[0] for key in predictor._internals] == [5]  # the last window padded: one compiled shape
    zeros = hmlstm.init_state(cfg, 1)
    _, _, _, _, boundaries = hmlstm_forward(params, codes[:, None].astype(np.int32), zeros["h"], zeros["c"], zeros["z"])
    np.testing.assert_array_equal(traced["hm.0.z"], boundaries[:, 0, 0])
    np.testing.assert_array_equal(traced["hm.1.z"], boundaries[:, 1, 0])
    assert traced["hm.1.c[2]"].shape == (13,)
    assert set(marks(traced["hm.0.z"])) <= {"|", " "} and len(marks(traced["hm.1.c[2]"])) == 13
