import json
import re
from pathlib import Path

import numpy as np
import pytensor
import pytest

from helpers import TINY, run_cli
from longmem import checkpoint, engine, track
from longmem.config import ModelConfig, RunConfig, TrainConfig
from longmem.errors import UserError
from longmem.nets import lstm
from longmem.step import Trainer
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
    cfg = RunConfig(model=ModelConfig(hidden=5, dropout=0.0, weight_drop=0.0),
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
    fw = lstm.forward(shared, xs, {"h": pytensor.tensor.as_tensor(h0), "c": pytensor.tensor.as_tensor(c0)})
    grad_b = engine.compile_function([], pytensor.grad(-lstm.log_probs(fw.logits, ys).mean(), shared["out.b"]), "JAX")()
    _, _, *values = trainer.step_fn(x, y, h0, c0, np.float32(0.01), np.uint32(0))
    got = dict(zip(trainer.tracked, (np.asarray(v) for v in values)))
    assert trainer.tracked[:4] == ["loss", "lr", "grad_norm", "update_norm"]
    logits, _, _ = lstm_forward(params, x, h0, c0)
    assert got["loss"] == pytest.approx(mean_nll(logits, y), rel=1e-5)
    assert got["lr"] == pytest.approx(0.01)
    after = np.asarray(trainer.params["out.b"].get_value())
    np.testing.assert_allclose(got["out.b"], after)
    np.testing.assert_allclose(got["out.b.update"], after - params["out.b"], atol=1e-7)
    np.testing.assert_allclose(got["out.b.grad"], np.asarray(grad_b), rtol=1e-5, atol=1e-8)
    # RMSprop's running average after one step from zero, as the NumPy optimizer loop has it
    # (the gradient norm is far below --clip, so the gradient is not scaled).
    rho = cfg.optim.rho
    np.testing.assert_allclose(got["out.b.ms"], (1 - rho) * np.asarray(grad_b, np.float64) ** 2, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(got["out.W[:,2]"], np.asarray(trainer.params["out.W"].get_value())[:, 2])
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
    norm = np.sqrt(sum((u.astype(np.float64) ** 2).sum() for u in updates))
    assert got["update_norm"] == pytest.approx(norm, rel=1e-4)


def test_names_have_one_spelling(tmp_path):
    assert track.canonical("out.W[:, 3]") == track.canonical("out.W[:,3]") == "out.W[:,3]"
    assert track.names(["loss", "out.W[:, 3]", "out.W[ :,3 ]", "out.b"]) == ["loss", "out.W[:,3]", "out.b"]
    w = track.Writer(tmp_path / "tracks", cap=10)
    w.kept["a:b"] = None
    with pytest.raises(UserError, match="share one file"):
        w._start("a_b", np.zeros(2))


@pytest.mark.parametrize("name, message", [
    ("out.b[500]", "index outside the value (shape (7,); valid indices 0..6)"),
    ("out.b[-8]", "index outside"),
    ("out.W[0, 0, 0]", "index outside"),
    ("loss[0]", "valid indices none: it is a scalar"),
    ("out.b[5:2]", "selects nothing"),
])
def test_an_index_outside_the_value_is_refused(name, message):
    sources = {"out.b": pytensor.shared(np.zeros(7, np.float32), shape=(7,)),
               "out.W": pytensor.shared(np.zeros((3, 7), np.float32), shape=(3, 7)),
               "loss": pytensor.tensor.as_tensor(np.float32(1.0))}
    with pytest.raises(UserError, match=re.escape(message)):
        track.resolve([name], sources)
    assert list(track.resolve(["out.b[-7]", "out.W[2, :]"], sources)) == ["out.b[-7]", "out.W[2,:]"]


def test_writer_caps_elements_and_survives_a_torn_record(tmp_path):
    w = track.Writer(tmp_path / "tracks", cap=10)
    for step in (5, 10, 15):
        w.append(step, {"big": np.arange(40, dtype=np.float32) + step, "loss": np.float32(step / 10)})
    w.flush()
    big = track.load(tmp_path, "big")
    assert big.indices == [0, 4, 9, 13, 17, 22, 26, 30, 35, 39]
    np.testing.assert_array_equal(big.steps, [5, 10, 15])
    np.testing.assert_array_equal(big.values[1], np.array(big.indices) + 10)
    with (tmp_path / "tracks" / "loss.bin").open("ab") as f:  # a crash in the middle of a record
        f.write(b"\x01\x02\x03")
    loss = track.load(tmp_path, "loss")
    np.testing.assert_array_equal(loss.steps, [5, 10, 15])
    assert big.shape == (40,) and big.size == 40
    # The raw layout that NAME.json describes reads the same series.
    info = json.loads((tmp_path / "tracks" / "big.json").read_text())
    raw = np.fromfile(tmp_path / "tracks" / "big.bin", dtype=track.record_dtype(info))
    np.testing.assert_array_equal(raw["value"], big.values)
    sizes = w.sizes()
    w.append(20, {"loss": np.float32(2.0)})
    w.close()
    w.truncate(sizes)
    assert track.load(tmp_path, "loss").steps.tolist() == [5, 10, 15]
    with pytest.raises(UserError, match="tracked: big, loss"):
        track.load(tmp_path, "nope")


def test_truncate_never_pads_a_track_that_lost_its_end(tmp_path):
    """After a power failure a track can be shorter than its checkpoint says: whole
    records are kept, nothing is added."""
    w = track.Writer(tmp_path / "tracks", cap=10)
    for step in (1, 2, 3):
        w.append(step, {"v": np.full(4, step, np.float32)})
    w.close()
    recorded = w.sizes()  # 3 records of 8 + 16 bytes
    path = tmp_path / "tracks" / "v.bin"
    path.write_bytes(path.read_bytes()[:-5])  # the end of the third record is lost
    kept = w.truncate(recorded)
    assert kept == {"v.bin": 48} and path.stat().st_size == 48
    assert track.load(tmp_path, "v").steps.tolist() == [1, 2]


def test_the_readme_snippet_reads_a_capped_track(tmp_path, small_text, capsys):
    """The README's way of loading a track, run as written on a value of which
    --track-max kept only some elements."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    snippet = re.search(r"```python\n(from longmem import track\n.*?)```", readme, re.S)[1]
    run_dir = tmp_path / "RUN"
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", run_dir, "--steps", 20,
                           "--track", "out.b", "--track-max", 10, "--track-every", 5, *TINY)
    assert code == 0, err
    namespace = {}
    exec(snippet.replace("runs/RUN", str(run_dir)), namespace)
    s = namespace["s"]
    vocab = len(json.loads((run_dir / "vocab.json").read_text()))
    assert s.steps.tolist() == [5, 10, 15, 20] and s.shape == (vocab,) and s.values.shape == (4, 10)
    arrays, _ = checkpoint.read(sorted((run_dir / "checkpoint").glob("*.lmc"))[-1])
    np.testing.assert_array_equal(s.values[-1], arrays["param/out.b"][s.indices])
