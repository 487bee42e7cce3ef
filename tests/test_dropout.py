"""Dropout masks drawn inside the compiled step: against NumPy, on every backend."""

import types

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from longmem import dropout, engine
from longmem.config import ModelConfig, RunConfig, TrainConfig
from longmem.loop import TrainState, expected_passes
from longmem.nets import lstm
from longmem.step import Trainer
from reference import lstm_forward, mean_nll


def test_hash_is_lowbias32():
    # Values of Wellons' lowbias32, computed with Python's unbounded integers.
    def reference(x):
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    xs = [0, 1, 2, 12345, 2**31, 2**32 - 1]
    assert dropout.hash32(np.array(xs, np.uint32)).tolist() == [reference(x) for x in xs]


def test_masks_keep_the_right_share_and_differ_by_step_mask_and_seed():
    shape, p = (16, 32, 64), 0.3
    a = dropout.keep_numpy(shape, p, seed=0, step=5, number=0)
    assert a.shape == shape and a.dtype == bool
    assert abs(a.mean() - 0.7) < 0.01
    assert (a == dropout.keep_numpy(shape, p, seed=0, step=5, number=0)).all()
    for other in (dict(seed=0, step=6, number=0), dict(seed=0, step=5, number=1), dict(seed=1, step=5, number=0)):
        b = dropout.keep_numpy(shape, p, **other)
        # Independent masks agree on p^2 + (1 - p)^2 = 58% of units.
        assert abs((a == b).mean() - 0.58) < 0.01
    assert dropout.keep_numpy(shape, 0.0, 0, 0, 0).all()


@pytest.mark.parametrize("mode", ["JAX", "CVM", "NUMBA"])
def test_compiled_masks_equal_numpy_on_every_backend(mode):
    engine.configure("jax", "cpu")
    step, below = pt.scalar("step", dtype="uint32"), pt.scalar("below", dtype="uint32")
    fn = pytensor.function([step, below], dropout.keep_graph((3, 4, 50), below, 9, step, 2), mode=mode)
    for s, p in ((0, 0.25), (1, 0.25), (2**31 + 7, 0.25), (1, 0.6), (1, 0.0)):
        np.testing.assert_array_equal(np.asarray(fn(np.uint32(s), dropout.threshold(p))),
                                      dropout.keep_numpy((3, 4, 50), p, 9, s, 2))


def test_training_step_applies_the_masks_of_its_step_number(rng):
    """The loss a training step reports equals NumPy's forward pass with the masks
    keep_numpy gives for that step: each layer's output dropped and scaled."""
    V, T, B, H, p = 7, 5, 3, 6, 0.4
    cfg = RunConfig(model=ModelConfig(layers=2, hidden=H, dropout=p, weight_drop=0.0),
                    train=TrainConfig(batch=B, seq=T, seed=3))
    params = {k: v * 10 for k, v in lstm.init_params(cfg.model, V, rng).items()}  # so that masks matter
    x = rng.integers(0, V, (T, B)).astype(np.int32)
    y = rng.integers(0, V, (T, B)).astype(np.int32)
    h0 = rng.normal(0, 0.3, (2, B, H)).astype(np.float32)
    # The probability is an input of the step: the configured one, then another given to the same step.
    for step, q in ((0, p), (41, p), (41, 0.15)):
        trainer = Trainer(cfg, params, "JAX")
        _, values = trainer.step(x, y, {"h": h0, "c": h0}, step, 0.01, {"dropout": q, "weight_drop": 0.0})
        masks = [dropout.keep_numpy((T, B, H), q, 3, step, i) / (1 - q) for i in range(2)]
        logits, _, _ = lstm_forward(params, x, h0, h0, masks)
        assert float(values["loss"]) == pytest.approx(mean_nll(logits, y), rel=1e-5)
        assert float(values["loss"]) != pytest.approx(mean_nll(lstm_forward(params, x, h0, h0)[0], y), rel=1e-3)


def test_weight_drop_masks_the_recurrent_weights_of_its_step(rng):
    """With --weight-drop (and no output dropout) the loss is NumPy's forward pass with
    each layer's Wh multiplied by the mask of that step, numbered after the outputs'."""
    V, T, B, H, p = 7, 5, 3, 6, 0.5
    cfg = RunConfig(model=ModelConfig(layers=2, hidden=H, dropout=0.0, weight_drop=p),
                    train=TrainConfig(batch=B, seq=T, seed=3))
    params = {k: v * 10 for k, v in lstm.init_params(cfg.model, V, rng).items()}
    x = rng.integers(0, V, (T, B)).astype(np.int32)
    y = rng.integers(0, V, (T, B)).astype(np.int32)
    h0 = rng.normal(0, 0.3, (2, B, H)).astype(np.float32)
    trainer = Trainer(cfg, params, "JAX")
    for step in (0, 9):
        _, _, loss, *_ = trainer.step_fn(x, y, h0, h0, np.float32(0.0), np.uint32(step), dropout.threshold(p),
                                         dropout.scale(p))
        dropped = dict(params)
        for i in range(2):
            dropped[f"lstm.{i}.Wh"] = params[f"lstm.{i}.Wh"] * dropout.keep_numpy((H, 4 * H), p, 3, step, i) / (1 - p)
        assert float(loss) == pytest.approx(mean_nll(lstm_forward(dropped, x, h0, h0)[0], y), rel=1e-5)
        assert float(loss) != pytest.approx(mean_nll(lstm_forward(params, x, h0, h0)[0], y), rel=1e-3)


def test_auto_chooses_by_the_passes_the_run_is_expected_to_make():
    """None up to 2 passes, then 0.1; the passes come from --steps, from
    --minutes at the speed of the steps timed so far, the fewer of the two, and endless text
    is never passed over twice."""
    assert [dropout.auto_level(n) for n in (0.5, 2, 2.5, 111)] == [0, 0, 1, 1]
    cfg = ModelConfig(dropout=None, weight_drop=0.05)
    assert dropout.auto(cfg) == ["dropout"]
    assert dropout.rates(cfg, 1) == {"dropout": 0.1, "weight_drop": 0.05}  # what is given wins
    streams = types.SimpleNamespace(ENDLESS=False, windows=50)
    state = TrainState(step=100, elapsed=60.0, timed_steps=99, train_seconds=9.9)  # 10 steps a second
    assert expected_passes(TrainConfig(steps=1000), streams, TrainState()) == 20
    assert expected_passes(TrainConfig(minutes=2), streams, TrainState()) is None  # no speed yet
    assert expected_passes(TrainConfig(minutes=2), streams, state) == pytest.approx((100 + 60 * 10) / 50)
    assert expected_passes(TrainConfig(minutes=2, steps=300), streams, state) == 6
    endless = types.SimpleNamespace(ENDLESS=True, windows=50)
    assert expected_passes(TrainConfig(minutes=2), endless, TrainState()) == 0
