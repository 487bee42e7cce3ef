"""`longmem plot` and `longmem caesar` end to end."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import TINY, run_cli
from longmem import track
from longmem.errors import UserError
from longmem.loop import Loop, TrainState
from longmem.nets import caesar as caesar_net
from longmem.nets import lstm
from longmem.rundir import RunDir


@pytest.fixture
def tracked(tmp_path, small_text, capsys):
    run_dir = tmp_path / "tracked"
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", run_dir, "--steps", 20,
                           "--track", "out.b", "lstm.0.f", "--track-every", 2, *TINY)
    assert code == 0, err
    return run_dir


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_everything_by_default(tracked, capsys):
    code, out, err = run_cli(capsys, "plot", tracked)
    assert code == 0, err
    written = out.split()
    names = {p.rsplit("/", 1)[1] for p in written}
    assert {"learning-curve.png", "loss.png", "out.b.png", "lstm.0.f.png", "grad_norm.png"} <= names
    assert all(_is_png(tracked / "plots" / n) for n in names)


def test_plot_options_and_several_runs(tracked, tmp_path, small_text, capsys):
    other = tmp_path / "other"
    run_cli(capsys, "train", "--text", small_text, "--run-dir", other, "--steps", 20, "--seed", 1,
            "--track", "out.b", "--track-every", 2, *TINY)
    target = tmp_path / "compare.png"
    code, out, err = run_cli(capsys, "plot", tracked, other, "out.b", "--names", "seed0", "seed1",
                             "--select", "0,2", "--smooth", 2, "--crop", "4:20", "--diff", "--out", target)
    assert code == 0, err
    assert out.strip() == str(target) and _is_png(target)


def test_plot_errors(tracked, capsys):
    code, _, err = run_cli(capsys, "plot", tracked, "nothing")
    assert code == 1 and "tracked: grad_norm, loss, lr, lstm.0.f, out.b, update_norm" in err
    (tracked / "tracks" / "out.b.bin").write_bytes(b"")
    code, _, err = run_cli(capsys, "plot", tracked, "out.b")
    assert code == 1 and "has no records yet" in err
    code, _, err = run_cli(capsys, "plot", tracked, "out.b", "--select", "99")
    assert code == 1


def test_caesar_learns_the_cipher_with_the_defaults(tmp_path, capsys):
    code, out, err = run_cli(capsys, "caesar", "--run-dir", tmp_path / "c")
    assert code == 0, err
    assert out.startswith("accuracy 100.0% on the text")
    lines = dict(line.split(None, 1) for line in out.splitlines()[1:4])
    assert lines["output"] == lines["cipher"]
    history = [json.loads(line) for line in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 200 and history[-1]["train_accuracy"] == 1.0 and "bpc" not in history[-1]
    assert [h["epoch"] for h in history] == list(range(1, 201))
    biases = track.load(tmp_path / "c", "hidden.b")
    assert biases.values.shape == (history[-1]["step"], 100) and np.ptp(biases.values[:, 0]) > 0
    # A Caesar run is a run like any other: inspect, eval and resume work on it.
    code, out, _ = run_cli(capsys, "inspect", tmp_path / "c", "--json")
    assert code == 0 and json.loads(out)["params"] == 26 * 100 + 100 + 100 * 26 + 26
    assert run_cli(capsys, "train", "--resume", tmp_path / "c", "--steps", history[-1]["step"] + 10)[0] == 0


def test_caesar_large_initial_scale_shows_the_original_bug(tmp_path, capsys):
    code, out, err = run_cli(capsys, "caesar", "--run-dir", tmp_path / "c", "--optimizer", "sgd",
                             "--init-scale", 10, "--passes", 20)
    assert code == 0, err
    accuracy = float(out.split()[1].rstrip("%"))
    assert accuracy < 10
    assert "whatever they are" in out and "stuck at 0 or 1" in out


def test_caesar_compare_writes_the_figures(tmp_path, capsys):
    plots = tmp_path / "figures"
    code, out, err = run_cli(capsys, "caesar", "--compare", "--run-dir", tmp_path / "c", "--passes", 5,
                             "--plots", plots)
    assert code == 0, err
    assert sorted(p.name for p in plots.iterdir()) == ["caesar-accuracy.png", "caesar-hidden-biases.png"]
    for name in ("sgd", "rmsprop", "rmsprop-global"):
        assert (tmp_path / "c" / name / "tracks" / "hidden.b.bin").stat().st_size > 0
        assert name in err


def test_caesar_bad_text(tmp_path, capsys):
    path = tmp_path / "digits.txt"
    path.write_text("1234 5678\n")
    code, _, err = run_cli(capsys, "caesar", "--text", path, "--run-dir", tmp_path / "c")
    assert code == 1 and "letters" in err and "Traceback" not in err


def test_plot_select_under_track_max_and_an_empty_crop(tmp_path, small_text, capsys):
    run_dir = tmp_path / "capped"
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", run_dir, "--steps", 10,
                           "--track", "out.W", "out.W[:, 3]", "out.W[:,3]", "--track-max", 7, "--track-every", 5,
                           *TINY)
    assert code == 0, err
    assert sorted(p.name for p in (run_dir / "tracks").glob("out.W*")) == [
        "out.W.bin", "out.W.json", "out.W[_,3].bin", "out.W[_,3].json"]
    assert track.load(run_dir, "out.W[:, 3]").values.shape == (2, 7)  # one record per step, not two
    info = json.loads((run_dir / "tracks" / "out.W.json").read_text())
    kept = info["indices"]
    assert len(kept) == 7 and kept[0] == 0 and info["shape"][0] == 16
    assert (run_dir / "tracks" / "out.W.bin").stat().st_size == 2 * (8 + 4 * 7)
    series = track.load(run_dir, "out.W")
    code, out, err = run_cli(capsys, "plot", run_dir, "out.W", "--select", f"{kept[2]},{kept[5]}")
    assert code == 0, err
    code, _, err = run_cli(capsys, "plot", run_dir, "out.W", "--select", kept[1] + 1)
    assert code == 1 and f"--select {kept[1] + 1}: element not kept" in err
    assert series.values.shape == (2, 7)
    code, _, err = run_cli(capsys, "plot", run_dir, "loss", "--crop", "5000:6000")
    assert code == 1 and "no records of loss" in err and "steps 5..10" in err
    code, _, err = run_cli(capsys, "plot", run_dir, "loss", "--crop", "100:20")
    assert code == 1 and "Traceback" not in err


def test_plot_a_caesar_run_draws_what_it_has(tmp_path, capsys):
    run_dir = tmp_path / "c"
    code, _, err = run_cli(capsys, "caesar", "--run-dir", run_dir, "--passes", 2)
    assert code == 0, err
    code, out, err = run_cli(capsys, "plot", run_dir)
    assert code == 0, err
    assert {"learning-curve.png", "hidden.b.png", "out.b.png", "loss.png"} <= {p.rsplit("/", 1)[1] for p in out.split()}
    (run_dir / "metrics.jsonl").write_text("")
    code, out, err = run_cli(capsys, "plot", run_dir)
    assert code == 0 and "skipped learning-curve" in err and "Traceback" not in err
    for path in (run_dir / "tracks").iterdir():
        path.unlink()
    code, _, err = run_cli(capsys, "plot", run_dir)
    assert code == 1 and "nothing to plot" in err


def test_caesar_refuses_to_overwrite_a_run(tmp_path, capsys):
    run_dir = tmp_path / "c"
    assert run_cli(capsys, "caesar", "--run-dir", run_dir, "--passes", 2)[0] == 0
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    code, _, err = run_cli(capsys, "caesar", "--run-dir", run_dir, "--passes", 3, "--optimizer", "sgd")
    assert code == 1 and "already holds a run" in err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    code, _, err = run_cli(capsys, "caesar", "--run-dir", other, "--passes", 2)
    assert code == 1 and "not empty" in err
    assert [p.name for p in other.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("flag, value", [("--lr", -1), ("--hidden", 0), ("--rho", 1.5), ("--eps", -1),
                                         ("--init-scale", -1), ("--lr", "nan")])
def test_caesar_refuses_impossible_settings(tmp_path, capsys, flag, value):
    code, _, err = run_cli(capsys, "caesar", "--run-dir", tmp_path / "c", flag, value)
    assert code == 1 and flag in err and "Traceback" not in err and "init-scale" not in err.replace(flag, "")
    assert not (tmp_path / "c").exists()


def test_caesar_records_its_resolved_settings(tmp_path, capsys):
    code, _, _ = run_cli(capsys, "caesar", "--run-dir", tmp_path / "c", "--passes", 1, "--optimizer", "sgd")
    saved = json.loads((tmp_path / "c" / "config.json").read_text())["config"]
    assert code == 0 and saved["optim"]["lr"] == 1.0 and saved["train"]["backend"] == "jax"
    assert saved["model"]["model"] == "caesar" and saved["data"]["letters"] == 5000


def test_the_explosion_check_is_the_model_s(tmp_path):
    """A squared error may grow from near zero; a cross-entropy that triples has diverged."""
    state = TrainState(first_loss=0.01)
    loop = SimpleNamespace(trainer=SimpleNamespace(net=caesar_net), run_dir=RunDir(tmp_path))
    Loop.check_finite(loop, state, 0.5, 1.0, 1.0)
    with pytest.raises(UserError, match="NaN or infinite"):
        Loop.check_finite(loop, state, float("nan"), 1.0, 1.0)
    loop.trainer.net = lstm
    with pytest.raises(UserError, match="exploded"):
        Loop.check_finite(loop, state, 0.5, 1.0, 1.0)


def test_a_stateless_net_is_evaluated_in_one_window_with_the_same_figures(rng):
    """Caesar carries nothing between letters: its evaluation reads a text in one window
    however short its training window, and scores every letter as the NumPy net does."""
    from longmem import engine
    from longmem.config import ModelConfig
    from longmem.predict import Predictor

    cfg = ModelConfig(model="caesar", hidden=7, init_scale=2.0)
    params = caesar_net.init_params(cfg, caesar_net.LETTERS, rng)
    predictor = Predictor(engine.share_all(params), cfg, "JAX")
    codes = rng.integers(0, caesar_net.LETTERS, 300).astype(np.uint8)
    result = predictor.evaluate(codes, batch=1, seq=32)
    guesses = caesar_net.outputs(params).argmax(axis=1)[codes[:-1]]
    assert result.chars == 299 and list(predictor._windows) == [(299, 1)]
    assert result.accuracy == pytest.approx(np.mean(guesses == (codes[:-1] + 1) % caesar_net.LETTERS))
