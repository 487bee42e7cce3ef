"""`longmem memory`: checked against a NumPy reference, and on a text whose answer is known."""

import json
import math

import numpy as np
import pytest

from helpers import run_cli
from longmem import engine
from longmem.config import ModelConfig
from longmem.errors import UserError
from longmem.nets import lstm
from longmem.predict import Predictor
from longmem.study import memory
from reference import lstm_forward


def _bits(params, x, y):
    """Bits of each target y (B,) after reading x (k, B) from a zero state (NumPy, float64)."""
    zeros = np.zeros((len([k for k in params if k.endswith(".Wh")]), x.shape[1], params["lstm.0.Wh"].shape[0]))
    logits, _, _ = lstm_forward(params, x, zeros, zeros)
    z = logits[-1] - logits[-1].max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -lp[np.arange(len(y)), y] / math.log(2), logits[-1].argmax(-1)


def test_every_row_matches_numpy(rng, monkeypatch):
    monkeypatch.setattr(memory, "CHUNK", 4)  # several chunks, the last one padded
    cfg = ModelConfig(layers=2, hidden=6, init_scale=0.5)
    params = lstm.init_params(cfg, 5, rng)
    predictor = Predictor(engine.share_all(params), cfg, "JAX")
    codes = rng.integers(0, 5, 40).astype(np.uint8)
    curve = memory.measure(predictor, codes, [1, 2, 4, 5], positions=10, seed=3, seq=7)
    chosen = np.sort(np.random.default_rng(3).choice(np.arange(5, 40), size=10, replace=False))
    for k, bpc, accuracy in zip(curve.contexts, curve.bpc, curve.accuracy):
        x = np.stack([codes[p - k : p] for p in chosen], axis=1)
        bits, guess = _bits(params, x, codes[chosen])
        assert bpc == pytest.approx(bits.mean(), rel=1e-5), k
        assert accuracy == pytest.approx((guess == codes[chosen]).mean()), k
    unlimited = [_bits(params, codes[:p, None], codes[[p]]) for p in chosen]
    assert curve.unlimited_bpc == pytest.approx(np.mean([b[0][0] for b in unlimited]), rel=1e-5)
    assert curve.positions == 10 and curve.long_context_gain is None
    assert sorted(predictor._windows) == [(7, 1), (7, 4)]  # every k through one window shape, unlimited another
    excess = bits - np.array([b[0][0] for b in unlimited])  # at the longest context, k = 5
    assert (curve.lost, curve.lost_gap) == pytest.approx(memory.lost(excess))


def test_lost_starts_and_the_warning():
    share, gap = memory.lost(np.array([9.0, 0.5, -0.5, 0.0]))
    assert share == 0.25 and gap == pytest.approx(1.0)
    assert memory.lost(np.array([-1.0, 0.5])) == (0.0, 0.0)
    fields = dict(contexts=[1, 64], bpc=[5.0, 4.9], accuracy=[0.1, 0.2], unlimited_bpc=2.8, unlimited_accuracy=0.5,
                  positions=100, seed=0, memory_length=None, long_context_gain=2.1)
    trapped = memory.Curve(**fields, lost=0.17, lost_gap=1.0)
    assert "17.0% of positions" in memory.table(trapped) and "warning" in memory.table(trapped)
    healthy = memory.Curve(**fields, lost=0.002, lost_gap=0.05)
    assert "0.2% of positions" in memory.table(healthy) and "warning" not in memory.table(healthy)
    assert "lost" not in memory.table(memory.Curve(**fields))  # stored before the check
    assert memory.Curve.of(trapped.to_dict()) == trapped


def test_summary_figures():
    assert memory.summary([1, 2, 64, 128], [3.0, 2.5, 2.03, 2.01], 2.0) == (128, pytest.approx(0.03))
    assert memory.summary([1, 2, 64, 128], [3.0, 2.5, 2.021, 2.021], 2.0) == (None, pytest.approx(0.021))
    assert memory.summary([1, 8], [2.3, 1.99], 2.0) == (8, None)  # below unlimited counts as near
    assert memory.contexts(1024) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert memory.contexts(100)[-2:] == [64, 100]
    with pytest.raises(UserError, match="--max-context"):
        memory.contexts(0)


def _copy_text(path, lines=3000):
    """Lines of three random letters, '=', the same three letters: each copied letter
    is exactly four characters after its original, and unpredictable without it."""
    r = np.random.default_rng(3)
    words = ["".join(r.choice(list("abcd"), 3)) for _ in range(lines)]
    path.write_text("\n".join(f"{w}={w}" for w in words) + "\n")
    return path


def test_a_model_that_learned_to_copy_shows_the_step(tmp_path, capsys):
    text = _copy_text(tmp_path / "copy.txt")
    flags = ["--text", text, "--hidden", 32, "--batch", 16, "--seq", 16, "--lr", 0.01, "--dropout", 0,
             "--weight-drop", 0, "--eval-every", 300, "--sample-every", 0]
    for name, steps in (("trained", 300), ("untrained", 0)):
        code, _, err = run_cli(capsys, "train", "--run-dir", tmp_path / name, "--steps", steps, *flags)
        assert code == 0, err
    code, out, err = run_cli(capsys, "memory", tmp_path / "trained", "--max-context", 16, "--positions", 400,
                             "--json")
    assert code == 0, err
    trained = json.loads(out)
    bpc = dict(zip(trained["contexts"], trained["bpc"]))
    assert abs(bpc[1] - bpc[2]) < 0.2  # fewer than four characters back: the copy is a guess
    assert bpc[2] - bpc[16] > 1.0  # the copied letters become predictable
    assert trained["memory_length"] in (None, 16) and trained["unlimited_bpc"] < 1.2
    assert (tmp_path / "trained" / "plots" / "memory.png").read_bytes()[:4] == b"\x89PNG"
    code, out, err = run_cli(capsys, "memory", tmp_path / "untrained", "--max-context", 16, "--positions", 400,
                             "--json")
    untrained = json.loads(out)
    assert max(untrained["bpc"]) - min(untrained["bpc"]) < 0.05
    # The curve is kept in the run, keyed by its step and settings; the table reads it.
    stored = list((tmp_path / "trained" / "memory").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["step"] == 300
    code, out, _ = run_cli(capsys, "memory", tmp_path / "trained", "--max-context", 16, "--positions", 400)
    assert code == 0 and f"{trained['unlimited_bpc']:6.3f}" in out and "memory length" in out


def test_too_short_a_text_is_one_line(tmp_path, capsys):
    text = _copy_text(tmp_path / "copy.txt", lines=40)
    assert run_cli(capsys, "train", "--text", text, "--run-dir", tmp_path / "r", "--steps", 2, "--hidden", 8,
                   "--batch", 2, "--seq", 8)[0] == 0
    code, _, err = run_cli(capsys, "memory", tmp_path / "r", "--max-context", 1024)
    assert code == 1 and "--max-context 1024 needs more" in err and "Traceback" not in err
