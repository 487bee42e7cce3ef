"""`longmem memory --influence`: the gradient of a prediction with respect to each
earlier input, checked against finite differences of the NumPy LSTM, and end to end
for every model."""

import json

import numpy as np
import pytest

from helpers import TINY, run_cli
from longmem import engine
from longmem.config import ModelConfig
from longmem.nets import lstm
from longmem.predict import Predictor
from longmem.study import influence
from reference import lstm_cells

V, H, L, B = 5, 3, 4, 2


def _log_p_last(p, rows, y):
    """log p(y[-1]) of each stream for a one-layer LSTM reading input rows (L, B, 4H)."""
    hs, _ = lstm_cells(rows, p["lstm.0.Wh"], p["lstm.0.b"], np.zeros((B, H)), np.zeros((B, H)))
    z = hs[-1] @ p["out.W"] + p["out.b"]
    lp = z - z.max(axis=-1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(axis=-1, keepdims=True))
    return lp[np.arange(B), y[-1]]


def test_input_gradients_match_finite_differences(rng):
    engine.configure("jax", "cpu")
    params = lstm.init_params(ModelConfig(hidden=H), V, rng)
    params = {k: v + rng.normal(0, 0.3, v.shape).astype(np.float32) for k, v in params.items()}
    x = rng.integers(0, V, (L, B)).astype(np.int32)
    y = rng.integers(0, V, (L, B)).astype(np.int32)
    got = np.asarray(Predictor(engine.share_all(params), ModelConfig(hidden=H), "JAX").input_gradient_fn(L, B)(x, y))
    p = {k: v.astype(np.float64) for k, v in params.items()}
    rows = p["lstm.0.Wx"][x]  # (L, B, 4H): each position's own copy of its row
    eps = 1e-6
    for t in range(L):
        for b in range(B):
            grad = np.zeros(4 * H)
            for j in range(4 * H):
                up, down = rows.copy(), rows.copy()
                up[t, b, j] += eps
                down[t, b, j] -= eps
                grad[j] = (_log_p_last(p, up, y)[b] - _log_p_last(p, down, y)[b]) / (2 * eps)
            assert got[t, b] == pytest.approx(np.linalg.norm(grad), rel=1e-3, abs=1e-6), (t, b)
    assert got.max() > 0  # the check is not of zeros


def test_reach_is_the_longest_lag_with_a_share_of_the_largest():
    class Flat:  # a stand-in predictor whose gradient falls by half per lag
        def input_gradient_fn(self, lags, width):
            return lambda x, y: np.tile((0.5 ** np.arange(lags))[::-1, None], (1, width))

    found = influence.measure(Flat(), np.zeros(100, np.int32), 10, 5, 0)
    assert found.norm[:3] == [1.0, 0.5, 0.25] and found.reach == 7  # 0.5**6 = 1.6% >= 1%, 0.5**7 < 1%


def test_memory_influence_end_to_end(tmp_path, small_text, capsys):
    """The command's own path (store, table, figure) is the same for every model, so it is
    driven here on the LSTM; the other models' tests reach the input gradient through
    `longmem report`'s hover, which reads it by the same protocol."""
    run = tmp_path / "lstm"
    assert run_cli(capsys, "train", "--text", small_text, "--run-dir", run, *TINY, "--steps", 4)[0] == 0
    code, out, err = run_cli(capsys, "memory", run, "--max-context", 8, "--positions", 20, "--influence",
                             "--influence-positions", 6, "--json")
    assert code == 0, err
    found = json.loads(out)["influence"]
    assert found["lags"] == list(range(1, 9)) and found["positions"] == 6 and found["norm"][0] > 0
    assert (run / "plots" / "memory-influence.png").stat().st_size > 0
    assert len(list((run / "influence").glob("*.json"))) == 1
