import math

import numpy as np
import pytest

from longmem import engine
from longmem.config import ModelConfig
from longmem.corpus import Vocab
from longmem.errors import UserError
from longmem.nets import lstm
from longmem.predict import STREAM_CHARS, Predictor, sample_code, streams
from longmem.study.guess import guess_view
from reference import lstm_forward


@pytest.fixture
def net(rng):
    cfg = ModelConfig(layers=2, hidden=6, init_scale=0.5)
    params = lstm.init_params(cfg, 5, rng)
    return params, Predictor(engine.share_all(params), cfg, "JAX")


def test_evaluate_matches_numpy_over_streams_and_a_short_last_window(net, rng):
    params, predictor = net
    codes = rng.integers(0, 5, 48).astype(np.uint8)
    result = predictor.evaluate(codes, batch=2, seq=5, guesses=True)
    # Two streams of 23 characters each, read from a zero state.
    length = 47 // 2
    x = np.stack([codes[b * length : (b + 1) * length] for b in range(2)], axis=1)
    y = np.stack([codes[b * length + 1 : (b + 1) * length + 1] for b in range(2)], axis=1)
    zeros = np.zeros((2, 2, 6))
    logits, _, _ = lstm_forward(params, x, zeros, zeros)
    z = logits - logits.max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -np.take_along_axis(lp, y[..., None], -1).sum()
    assert result.chars == 46
    assert result.bpc == pytest.approx(nll / 46 / math.log(2), rel=1e-5)
    guesses = logits.argmax(-1)
    assert result.accuracy == pytest.approx((guesses == y).mean())
    np.testing.assert_array_equal(result.guesses, guesses.T.reshape(-1))
    assert list(predictor._windows) == [(5, 2)]  # the short last window was padded: one compiled shape


def test_generate_is_seeded_and_checks_its_prime(net):
    _, predictor = net
    vocab = Vocab("abcde")
    one = predictor.generate(vocab, "abc", 20, np.random.default_rng(3))
    two = predictor.generate(vocab, "abc", 20, np.random.default_rng(3))
    assert one == two and len(one) == 20 and set(one) <= set("abcde")
    with pytest.raises(UserError, match="outside the vocabulary: 'xz'"):
        predictor.generate(vocab, "axz", 5, np.random.default_rng(0))
    with pytest.raises(UserError, match="temperature"):
        predictor.generate(vocab, "a", 5, np.random.default_rng(0), temperature=0)


def test_sample_code_temperature_and_top_k():
    logits = np.array([0.0, 1.0, 3.0, 2.0])
    rng = np.random.default_rng(0)
    assert {sample_code(logits, rng, 1.0, 1) for _ in range(50)} == {2}
    assert {sample_code(logits, rng, 1.0, 2) for _ in range(200)} == {2, 3}
    cold = [sample_code(logits, rng, 0.05, None) for _ in range(200)]
    assert cold.count(2) == 200


def test_guess_view_puts_each_guess_under_its_character():
    view = guess_view("ab\ncd", "xy zw", width=3)
    assert view == "ab↵\nxy \n\ncd\nzw"


def test_held_out_text_is_read_as_few_long_streams():
    assert streams(100, 128) == 1
    assert streams(2 * STREAM_CHARS - 1, 128) == 1
    assert streams(28_000, 128) == 28_000 // STREAM_CHARS
    assert streams(10**7, 128) == 128
