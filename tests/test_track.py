import numpy as np
import pytensor
import pytest

from longmem import engine, track
from longmem.config import ModelConfig, RunConfig, TrainConfig
from longmem.errors import UserError
from longmem.nets import lstm
from longmem.train import Trainer

from reference import lstm_forward, mean_nll, sigmoid


def test_parse_names_and_indices():
    assert track.parse("out.b") == ("out.b", None)
    assert track.parse("out.W[:, 3]") == ("out.W", (slice(None), 3))
    assert track.parse("lstm.0.b[256:512:2]") == ("lstm.0.b", (slice(256, 512, 2),))
    with pytest.raises(UserError, match="bad index"):
        track.parse("out.W[a]")


def test_unknown_name_lists_what_exists():
    with pytest.raises(UserError, match="known names: loss, out.b"):
        track.resolve(["nope"], {"loss": 0, "out.b": 1, "out.b.grad": 2})


def test_tracked_values_are_what_the_graph_computes(rng):
    """Every kind of tracked value, from one compiled step, against a direct evaluation."""
    V, T, B = 6, 4, 3
    cfg = RunConfig(model=ModelConfig(hidden=5, vocab_size=V, dropout=0.0),
                    train=TrainConfig(batch=B, seq=T, track=["out.b", "out.b.grad", "out.b.update",
                                                             "out.b.ms", "out.W[:, 2]", "lstm.0.f"]))
    params = lstm.init_params(cfg.model, V, rng)
    trainer = Trainer(cfg, params, "JAX")
    x = rng.integers(0, V, (T, B)).astype(np.int32)
    y = rng.integers(0, V, (T, B)).astype(np.int32)
    h0 = rng.normal(0, 0.3, (1, B, 5)).astype(np.float32)
    c0 = np.zeros_like(h0)
    # Direct evaluation: the gradient of the same loss, compiled on its own.
    shared = engine.share_all(params)
    xs, ys = pytensor.tensor.as_tensor(x), pytensor.tensor.as_tensor(y)
    fw = lstm.forward(shared, xs, pytensor.tensor.as_tensor(h0), pytensor.tensor.as_tensor(c0))
    grad_b = engine.compile_function([], pytensor.grad(-lstm.log_probs(fw.logits, ys).mean(), shared["out.b"]), "JAX")()
    _, _, *values = trainer.step_fn(x, y, h0, c0, np.float32(0.01))
    got = dict(zip(trainer.tracked, (np.asarray(v) for v in values)))
    assert trainer.tracked[:4] == ["loss", "lr", "grad_norm", "update_norm"]
    logits, _, _ = lstm_forward(params, x, h0, c0)
    assert got["loss"] == pytest.approx(mean_nll(logits, y), rel=1e-5)
    assert got["lr"] == pytest.approx(0.01)
    after = np.asarray(trainer.params["out.b"].get_value())
    np.testing.assert_allclose(got["out.b"], after)
    np.testing.assert_allclose(got["out.b.update"], after - params["out.b"], atol=1e-7)
    np.testing.assert_allclose(got["out.b.grad"], np.asarray(grad_b), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(got["out.b.ms"], np.asarray(trainer.optim_state["out.b.ms"].get_value()))
    np.testing.assert_allclose(got["out.W[:, 2]"], np.asarray(trainer.params["out.W"].get_value())[:, 2])
    # The forget gate, averaged over window and batch, from the NumPy reference.
    H = 5
    h, c, f_means = h0[0].astype(np.float64), c0[0].astype(np.float64), []
    for t in range(T):
        z = params["lstm.0.Wx"][x[t]] + params["lstm.0.b"] + h @ params["lstm.0.Wh"]
        i, f, o, g = sigmoid(z[:, :H]), sigmoid(z[:, H:2*H]), sigmoid(z[:, 2*H:3*H]), np.tanh(z[:, 3*H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        f_means.append(f)
    np.testing.assert_allclose(got["lstm.0.f"], np.mean(f_means, axis=(0, 1)), rtol=1e-5)
    updates = [np.asarray(trainer.params[k].get_value()) - params[k] for k in params]
    assert got["update_norm"] == pytest.approx(np.sqrt(sum((u.astype(np.float64) ** 2).sum() for u in updates)), rel=1e-4)


def test_writer_caps_elements_and_survives_a_torn_record(tmp_path):
    w = track.Writer(tmp_path, cap=10)
    for step in (5, 10, 15):
        w.append(step, {"big": np.arange(40, dtype=np.float32) + step, "loss": np.float32(step / 10)})
    big = track.load(tmp_path, "big")
    assert big.indices == [0, 4, 9, 13, 17, 22, 26, 30, 35, 39]
    np.testing.assert_array_equal(big.steps, [5, 10, 15])
    np.testing.assert_array_equal(big.values[1], np.array(big.indices) + 10)
    with (tmp_path / "loss.bin").open("ab") as f:  # a crash in the middle of a record
        f.write(b"\x01\x02\x03")
    loss = track.load(tmp_path, "loss")
    np.testing.assert_array_equal(loss.steps, [5, 10, 15])
    # The documented one-liner reads the same series.
    raw = np.fromfile(tmp_path / "big.bin", dtype=[("step", "<i8"), ("value", "<f4", (10,))])
    np.testing.assert_array_equal(raw["value"], big.values)
    sizes = w.sizes()
    w.append(20, {"loss": np.float32(2.0)})
    w.truncate(sizes)
    assert track.load(tmp_path, "loss").steps.tolist() == [5, 10, 15]
    with pytest.raises(UserError, match="tracked: big, loss"):
        track.load(tmp_path, "nope")
