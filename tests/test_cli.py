"""The commands end to end, on tiny data, through the real command line."""

import json
import math
import subprocess
import sys
from collections import Counter

import pytest

from longmem.cli import main

TINY = ["--hidden", "16", "--batch", "4", "--seq", "8", "--log-every", "5", "--eval-every", "10",
        "--sample-every", "10", "--sample-length", "20"]
TIMING = {"chars_per_s", "elapsed"}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def metrics(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def digest(capsys, run_dir):
    code, out, _ = run_cli(capsys, "inspect", run_dir, "--json")
    assert code == 0
    return json.loads(out)


@pytest.fixture
def trained(tmp_path, small_text, capsys):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", run_dir, "--steps", 20, *TINY)
    assert code == 0, err
    return run_dir


def test_python_dash_m_entry_point(tmp_path, small_text):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "longmem", "train", "--text", str(small_text), "--run-dir", str(run_dir),
         "--steps", "5", *TINY], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "longmem sample" in done.stdout
    for name in ("config.json", "vocab.json", "metrics.jsonl"):
        assert (run_dir / name).is_file()


def test_train_writes_the_run_directory(trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["config"]["model"]["hidden"] == 16
    assert set(config["split"]) == {"train", "val", "test"}
    assert {"pytensor", "jax", "numpy"} <= set(config["versions"])
    assert "".join(json.loads((trained / "vocab.json").read_text())) == json.loads((trained / "vocab.json").read_text())
    lines = metrics(trained)
    assert [m["step"] for m in lines] == [5, 10, 15, 20]
    assert "val_bpc" in lines[1] and "val_bpc" not in lines[0]
    assert all(math.isclose(m["bpc"], m["loss"] / math.log(2)) for m in lines)
    assert (trained / "samples.txt").read_text().count("--- step") == 2
    assert len(list((trained / "checkpoint").glob("ckpt-*.lmc"))) == 1


def test_sample_eval_guess_inspect(trained, capsys):
    code, out, _ = run_cli(capsys, "sample", trained, "--prime", "the ", "--length", 30, "--top-k", 3)
    assert code == 0 and out.startswith("the ") and len(out.rstrip("\n")) >= 30
    code, out, _ = run_cli(capsys, "eval", trained, "--json")
    result = json.loads(out)
    assert {"bpc", "accuracy", "chars"} <= set(result) and result["chars"] > 0
    code, out, _ = run_cli(capsys, "guess", trained, "--chars", 40, "--width", 20)
    blocks = out.split("\n\n")
    assert code == 0 and "accuracy" in blocks[-1]
    assert all(len(b.split("\n")[0]) == len(b.split("\n")[1]) for b in blocks[:-1])
    report = digest(capsys, trained)
    assert report["step"] == 20 and len(report["digest"]) == 64 and report["params"] > 0


def test_same_seed_same_parameters(trained, tmp_path, small_text, capsys):
    again = tmp_path / "again"
    run_cli(capsys, "train", "--text", small_text, "--run-dir", again, "--steps", 20, *TINY)
    assert digest(capsys, again)["digest"] == digest(capsys, trained)["digest"]
    assert metrics(again) == metrics(trained)


def test_resume_continues_exactly(trained, tmp_path, small_text, capsys):
    whole = tmp_path / "whole"
    run_cli(capsys, "train", "--text", small_text, "--run-dir", whole, "--steps", 40, *TINY)
    code, _, err = run_cli(capsys, "train", "--resume", trained, "--steps", 40)
    assert code == 0, err
    assert digest(capsys, trained)["digest"] == digest(capsys, whole)["digest"]
    assert metrics(trained) == metrics(whole)
    assert (trained / "samples.txt").read_text() == (whole / "samples.txt").read_text()


def test_resume_refuses_a_new_shape_and_records_a_new_lr(trained, capsys):
    code, _, err = run_cli(capsys, "train", "--resume", trained, "--hidden", 32)
    assert code == 1 and "cannot change --hidden" in err
    code, _, err = run_cli(capsys, "train", "--resume", trained, "--steps", 25, "--lr", 0.001)
    assert code == 0, err
    config = json.loads((trained / "config.json").read_text())
    assert config["resumes"] == [{"step": 20, "changes": {"optim.lr": [0.005, 0.001], "train.steps": [20, 25]}}]
    assert config["config"]["optim"]["lr"] == 0.001


def test_learns_below_the_unigram_entropy(tmp_path, small_text, capsys):
    run_dir = tmp_path / "learn"
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", run_dir, "--steps", 150,
                           "--hidden", 32, "--batch", 8, "--seq", 16, "--eval-every", 150, "--lr", 0.01)
    assert code == 0, err
    text = small_text.read_text()
    counts = Counter(text)
    unigram = -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())
    assert metrics(run_dir)[-1]["val_bpc"] < unigram - 1.0


def _one_line_error(code, err, *expected):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("longmem: error:"), err
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0]


@pytest.mark.parametrize(
    "content, expected",
    [(None, "no such file"), (b"", "empty"), (b"caf\xe9 latin-1", "not UTF-8"), (b"tiny", "too short")],
)
def test_bad_training_text(tmp_path, capsys, content, expected):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    code, _, err = run_cli(capsys, "train", "--text", path, "--run-dir", tmp_path / "r", *TINY)
    _one_line_error(code, err, expected)


def test_bad_uses_of_a_run(trained, tmp_path, small_text, capsys):
    _one_line_error(*run_cli(capsys, "sample", trained, "--prime", "Zebra€")[::2], "outside the vocabulary", "€")
    _one_line_error(*run_cli(capsys, "eval", tmp_path / "nowhere")[::2], "no such run directory")
    _one_line_error(*run_cli(capsys, "train", "--text", small_text, "--run-dir", trained, *TINY)[::2],
                    "already holds a run", "--resume")
    small_text.write_text(small_text.read_text() + "more text.\n")
    _one_line_error(*run_cli(capsys, "eval", trained)[::2], "has changed since it was trained")
    for ckpt in (trained / "checkpoint").glob("*.lmc"):
        ckpt.write_bytes(ckpt.read_bytes()[:100])
    code, _, err = run_cli(capsys, "inspect", trained)
    assert code == 1 and "no valid checkpoint" in err and "Traceback" not in err


def test_exploding_loss_stops_with_a_clear_message(tmp_path, small_text, capsys):
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", tmp_path / "boom",
                           "--optimizer", "sgd", "--lr", 1e6, "--clip", 0, "--init-scale", 1, *TINY)
    assert code == 1
    assert "training loss" in err and "lower --lr" in err and "Traceback" not in err
    assert len(err.strip().splitlines()[-1]) > 0 and err.strip().splitlines()[-1].startswith("longmem: error:")


@pytest.mark.parametrize("flag, value", [("--log-every", 0), ("--batch", 0), ("--dropout", 1.5), ("--lr", -1)])
def test_impossible_settings_are_refused(tmp_path, small_text, capsys, flag, value):
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", tmp_path / "r", flag, value)
    _one_line_error(code, err, flag)
    assert not (tmp_path / "r").exists()
