"""`longmem plot` and `longmem caesar` end to end."""

import json

import numpy as np
import pytest

from test_cli import TINY, run_cli


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
    assert len(history) == 200 and history[-1]["accuracy"] == 1.0
    biases = np.fromfile(tmp_path / "c" / "tracks" / "hidden.b.bin", dtype=[("step", "<i8"), ("value", "<f4", (100,))])
    assert len(biases) == history[-1]["step"] and np.ptp(biases["value"][:, 0]) > 0


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
