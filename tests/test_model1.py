"""Model 1 (stage 3 reads what stage 2 learned of stage 1) against NumPy, its
stop-gradients and stage order, and runs built on a base run."""

import json

import numpy as np
import pytensor
import pytensor.tensor as pt

from helpers import KILL_FLAGS, TINY, killed_equals_whole, run_cli
from longmem import checkpoint, engine, track
from longmem.config import ModelConfig
from longmem.nets import lstm, model1
from reference import check_against_finite_differences, mean_nll, model1_forward

T, B, V = 5, 2, 4
CFG = ModelConfig(model="model1", hidden=3, hidden_b=5, base_hidden=4, init_scale=0.5)


def _setup(rng):
    base = lstm.init_params(ModelConfig(hidden=4, init_scale=0.5), V, rng)
    params = model1.init_params(CFG, V, rng, base=base)
    shared = engine.share_all(params)
    x = pt.tensor("x", dtype="int32", shape=(T, B))
    y = pt.tensor("y", dtype="int32", shape=(T, B))
    zeros = model1.init_state(CFG, B)
    values = {k: rng.normal(0, 0.5, v.shape).astype(np.float32) for k, v in zeros.items()}
    X = rng.integers(0, V, (T, B)).astype(np.int32)
    Y = rng.integers(0, V, (T, B)).astype(np.int32)
    return base, params, shared, x, y, engine.inputs(zeros), values, X, Y


def _error(pred, delta):
    return 0.5 * ((pred[:-1] - delta[1:]) ** 2).sum(-1).mean()


def test_forward_matches_numpy_and_stage1_is_the_base(rng):
    base, params, shared, x, _, state, values, X, _ = _setup(rng)
    assert all((params[f"stage1.{k}"] == base[f"lstm.0.{k}"]).all() for k in ("Wx", "Wh", "b"))
    fw = model1.forward(shared, x, state)
    fn = engine.compile_function([x, *state.values()], [fw.logits, fw.internals["delta"],
                                                        fw.internals["prediction"], fw.losses["model1.stage2"]], "JAX")
    logits, delta, pred, err = (np.asarray(a) for a in fn(X, *values.values()))
    ref_logits, ref_delta, ref_pred = model1_forward(params, X, values)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(delta, ref_delta, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pred, ref_pred, rtol=1e-4, atol=1e-5)
    assert abs(err - _error(ref_pred, ref_delta)) < 1e-5


def test_gradients_follow_the_stages(rng):
    """Stage 1 gets no gradient; stage 2 the gradient of its error; stage 3 that of the
    cross-entropy with stage 2's predictions fixed; and the schedule silences a stage."""
    _, params, shared, x, y, state, values, X, Y = _setup(rng)
    learns = {k: pt.scalar(k, dtype="float32") for k in ("stage2.learns", "stage3.learns")}
    fw = model1.forward(shared, x, state, schedule=learns)
    cost = model1.loss(fw, y) + fw.losses["model1.stage2"]
    names = sorted(params)
    fn = engine.compile_function([x, y, *state.values(), *learns.values()],
                                 pytensor.grad(cost, [shared[k] for k in names]), "JAX")
    got = dict(zip(names, (np.asarray(g) for g in fn(X, Y, *values.values(), np.float32(1), np.float32(1)))))
    _, _, pred_rec = model1_forward(params, X, values)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}

    def cost_of(name):
        if name.startswith("stage2."):
            _, delta, pred = model1_forward(p64, X, values)
            return _error(pred, delta)
        return mean_nll(model1_forward(p64, X, values, fixed_pred=pred_rec)[0], Y)

    assert not any(got[k].any() for k in names if k.startswith("stage1."))
    check_against_finite_differences({k: g for k, g in got.items() if not k.startswith("stage1.")}, p64, cost_of)
    first = dict(zip(names, fn(X, Y, *values.values(), np.float32(1), np.float32(0))))
    assert not any(np.asarray(first[k]).any() for k in names if k.startswith(("stage3.", "out.")))
    assert np.asarray(first["stage2.P"]).any()


def test_model1_runs_on_a_base_run_in_the_original_order_and_survives_kills(tmp_path, small_text, capsys):
    base = tmp_path / "base"
    assert run_cli(capsys, "train", "--text", small_text, "--run-dir", base, "--steps", 10, *TINY)[0] == 0
    flags = ["--text", small_text, "--model", "model1", "--base", base, "--stage2-steps", 40,
             "--track", "out.b", "stage2.p", "--track-every", 1, *KILL_FLAGS, *TINY, "--sample-every", 0]
    whole = killed_equals_whole(capsys, tmp_path, "train", flags)
    # Stage 1 is the base run's LSTM, untouched; the base's digest is recorded.
    saved = json.loads((whole / "config.json").read_text())["config"]["model"]
    arrays, _ = checkpoint.read(sorted((base / "checkpoint").glob("*.lmc"))[-1])
    base_params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
    assert saved["base_digest"] == checkpoint.digest(base_params) and saved["base_hidden"] == 16
    final, _ = checkpoint.read(sorted((whole / "checkpoint").glob("*.lmc"))[-1])
    assert (final["param/stage1.Wh"] == base_params["lstm.0.Wh"]).all()
    # Stage 2 learns for the first 40 steps and stage 3 after them, never both.
    out_b, stage2_p = (track.load(whole, name).values for name in ("out.b", "stage2.p"))
    assert not out_b[:40].any() and out_b[40:].any()
    assert (np.diff(stage2_p[:40], axis=0) != 0).any() and (stage2_p[40:] == stage2_p[39]).all()
    assert (whole / "tracks" / "model1.stage2.bin").stat().st_size > 0
    for command in (["eval", whole], ["sample", whole, "--length", 10], ["memory", whole, "--max-context", 8,
                                                                          "--positions", 10],
                    ["report", whole, "--chars", 140, "-o", tmp_path / "report.html"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 0, (command, err)
    assert "; leaned on: " in (tmp_path / "report.html").read_text()  # the hover, through the protocol


def test_model1_refuses_a_base_from_another_text_and_needs_one(tmp_path, small_text, capsys):
    other = tmp_path / "other.txt"
    other.write_text(small_text.read_text().upper())
    base = tmp_path / "base"
    assert run_cli(capsys, "train", "--text", other, "--run-dir", base, "--steps", 2, *TINY)[0] == 0
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", tmp_path / "m", "--model", "model1",
                           "--base", base, *TINY)
    assert code == 1 and "trained on another text" in err and not (tmp_path / "m").exists()
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", tmp_path / "m", "--model", "model1",
                           *TINY)
    assert code == 1 and "give --base RUN" in err
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", tmp_path / "m", "--base", base, *TINY)
    assert code == 1 and "--base RUN goes with" in err
