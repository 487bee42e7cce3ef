"""Bad input on the newer commands (issue 25): one line, exit 1, no traceback, nothing
lost and nothing silently wrong. Each test names the items of the issue it holds."""

import os
import subprocess
import sys

import pytest
from conftest import write_small_text

from helpers import TINY
from longmem.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny lstm run and a tiny Caesar run, trained once for the module."""
    folder = tmp_path_factory.mktemp("runs")
    text = write_small_text(folder)
    assert main(["train", "--text", str(text), "--run-dir", str(folder / "lstm"), *TINY, "--steps", "10"]) == 0
    assert main(["caesar", "--run-dir", str(folder / "caesar"), "--passes", "1", "--letters", "200"]) == 0
    return folder


def one_line(capsys, *argv, code=1):
    """Run the command; assert it failed with `code` in one line and no traceback; the line."""
    got = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert got == code and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def shell(command: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=os.environ | {"LONGMEM": f"{sys.executable} -m longmem"})


@pytest.mark.parametrize("command", ["$LONGMEM compress - -o x.lmz <&-", "$LONGMEM decompress - -o x.out <&-",
                                     "echo hi | $LONGMEM compress - -o - --quiet >&-"])
def test_closed_standard_streams_are_one_line(tmp_path, command):
    """Items 1 and 2: standard input or output closed."""
    done = shell(command, tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert ("standard input is closed" if "<&-" in command else "standard output is closed") in done.stderr
    assert not list(tmp_path.iterdir())


def test_sample_refuses_non_finite_temperatures_and_top_k_below_one(runs, capsys):
    """Items 4 and 14."""
    for value in ("nan", "inf", "-inf"):
        assert "--temperature must be a finite number above 0" in one_line(
            capsys, "sample", runs / "lstm", f"--temperature={value}")
    for k in (0, -3):
        assert "--top-k must be at least 1" in one_line(capsys, "sample", runs / "lstm", "--top-k", k)


def test_train_refuses_a_model_larger_than_the_machine(tmp_path, small_text, capsys):
    """Item 5: the memory is estimated before anything is allocated; nothing is made."""
    err = one_line(capsys, "train", "--text", small_text, *TINY, "--hidden", 200000,
                   "--run-dir", tmp_path / "big")
    assert "needs about" in err and "TB of memory" in err and "more than this machine's" in err
    assert not (tmp_path / "big").exists()


def test_negative_seeds_and_probe_sizes_are_one_line(tmp_path, small_text, capsys):
    """numpy's generators take no negative seed: it was a traceback."""
    assert "--seed must be at least 0" in one_line(capsys, "train", "--text", small_text, "--seed", -1,
                                                   "--run-dir", tmp_path / "r")
    assert "--probe-length must be at least 1" in one_line(capsys, "train", "--corpus", "probe:copy",
                                                           "--probe-length", 0, "--run-dir", tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_the_estimate_counts_the_parameters_exactly():
    """Item 5: the count extended from 1, 2 and 3 cells is the count at 256 (lstm, 2 layers)."""
    import numpy as np

    from longmem import checkpoint
    from longmem.config import ModelConfig
    from longmem.nets import NETS

    for name in ("lstm", "hmlstm", "model2", "mingru"):
        sizes = [checkpoint.count(NETS[name].init_params(ModelConfig(model=name, hidden=h, layers=2), 50,
                                                         np.random.default_rng(0))) for h in (1, 2, 3, 256)]
        a = (sizes[2] - 2 * sizes[1] + sizes[0]) / 2
        b = sizes[1] - sizes[0] - 3 * a
        assert a * 256**2 + b * 256 + (sizes[0] - a - b) == sizes[3], name


def test_a_one_step_window_trains_without_tracebacks(tmp_path, small_text):
    """Item 6: --seq 1 used to print six PyTensor rewrite-failure tracebacks."""
    done = subprocess.run([sys.executable, "-m", "longmem", "train", "--text", str(small_text), "--run-dir",
                           str(tmp_path / "run"), *TINY, "--seq", "1", "--steps", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Rewrite failure" not in done.stderr


@pytest.mark.parametrize("line", ['{"step": "twenty", "bpc": 2.0}', '{"step": 5, "bpc": null}', "[1, 2]"])
def test_a_damaged_metrics_line_is_skipped_with_one_warning_everywhere(runs, tmp_path, capsys, line):
    """Item 7: compare, plot and report read metrics.jsonl through one reader."""
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(runs / "lstm"), str(run)], check=True)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], line, *lines[1:]]) + "\n")
    for argv in (["plot", run, "--out", tmp_path / "plots"], ["compare", run, "--out", tmp_path / "cmp",
                                                              "--max-context", 4, "--positions", 20]):
        assert main([str(a) for a in argv]) == 0
        err = capsys.readouterr().err
        assert err.count(f"{run / 'metrics.jsonl'}: line 2 is damaged") == 1, err


def test_folders_and_fifos_are_not_files(runs, tmp_path, capsys):
    """Item 8."""
    folder = tmp_path / "folder"
    folder.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert f"{folder} is a folder, not a file" in one_line(capsys, "compress", folder, "-o", tmp_path / "x.lmz")
    assert f"{folder} is a folder, not a file" in one_line(capsys, "train", "--text", folder, "--run-dir",
                                                           tmp_path / "r")
    assert f"{fifo} is a FIFO" in one_line(capsys, "memory", runs / "lstm", "--text", fifo)
    assert f"{fifo} is a FIFO" in one_line(capsys, "compress", fifo, "-o", tmp_path / "y.lmz")


def test_outputs_are_checked_before_the_work_and_never_overwrite_the_users_files(runs, tmp_path, capsys):
    """Items 9 and 13: a folder as -o/--out, or a file of the user's, is refused first
    (the files longmem writes in the run directory may be written again)."""
    folder = tmp_path / "folder"
    folder.mkdir()
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"keep me")
    run = runs / "lstm"
    for command in (["memory", run, "--max-context", 4, "--positions", 20, "--out"], ["report", run, "-o"],
                    ["graph", run, "-o"]):
        assert f"{folder} is a folder; give a file name" in one_line(capsys, *command, folder)
        assert f"{mine} exists" in one_line(capsys, *command, mine)
    assert mine.read_bytes() == b"keep me"
    (folder / "memory.png").write_bytes(b"keep me too")
    assert "holds memory.png, not written by longmem compare" in one_line(capsys, "compare", run, "--out", folder)
    assert (folder / "memory.png").read_bytes() == b"keep me too"
    # Inside the run, longmem's own files are written again.
    args = ["memory", run, "--max-context", 4, "--positions", 20, "--out", run / "plots" / "m.png"]
    assert main([str(a) for a in args]) == 0 and main([str(a) for a in args]) == 0


def test_a_caesar_run_is_refused_in_one_sentence_by_every_study(runs, capsys):
    """Item 10: memory, compare and report say the same of a run that is not of text."""
    caesar = runs / "caesar"
    for command, made in ((["memory", caesar], "memory curve"), (["compare", caesar, "--out", runs / "cmp"],
                          "comparison"), (["report", caesar], "report")):
        assert f"{caesar} is a caesar run; a {made} reads models of text" in one_line(capsys, *command)


def test_a_damaged_vocabulary_is_called_damaged(runs, tmp_path, capsys):
    """Item 11: not "the text has changed; use --text PATH"."""
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(runs / "lstm"), str(run)], check=True)
    (run / "vocab.json").write_text("42\n")
    err = one_line(capsys, "train", "--resume", run)
    assert f"{run / 'vocab.json'}: damaged" in err and "has changed" not in err


def test_plot_refuses_negative_element_numbers_and_one_png_for_several_figures(runs, tmp_path, capsys):
    """Item 15, and --out x.png with several names."""
    for select in ("-1", "-100", "0,-2"):
        assert "--select takes element numbers from 0" in one_line(capsys, "plot", runs / "lstm", "loss",
                                                                     f"--select={select}")
    err = one_line(capsys, "plot", runs / "lstm", "lr", "loss", "--out", tmp_path / "x.png")
    assert "names one figure, and there are 2: give a folder" in err and not (tmp_path / "x.png").exists()


def test_a_run_that_cannot_be_written_is_measured_and_said_so(runs, capsys, monkeypatch):
    """The issue's "also": memory on a read-only run prints its result and says it could
    not store it, instead of computing everything and then failing."""
    from longmem import lock

    def read_only(run_path):  # as creating RUN/.lock fails on a read-only file system
        raise OSError(30, "Read-only file system")  # EROFS

    monkeypatch.setattr(lock, "hold", read_only)
    stored = sorted((runs / "lstm" / "memory").glob("*.json")) if (runs / "lstm" / "memory").exists() else []
    code = main(["memory", str(runs / "lstm"), "--max-context", "4", "--positions", "30", "--seed", "9"])
    out, err = capsys.readouterr()
    assert code == 0 and "unlimited" in out and "figure: not written" in out
    assert "cannot be written (Read-only file system); results are not stored in it" in err
    assert sorted((runs / "lstm" / "memory").glob("*.json")) == stored


def test_compare_says_when_runs_trained_on_different_texts(runs, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text("a different text entirely, " * 400)
    assert main(["train", "--text", str(other), "--run-dir", str(tmp_path / "b"), *TINY, "--steps", "10"]) == 0
    capsys.readouterr()
    assert main(["compare", str(runs / "lstm"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp"),
                 "--max-context", "4", "--positions", "20"]) == 0
    note = "These runs trained on 2 different texts: their bits per character do not compare."
    assert note in capsys.readouterr().err and note in (tmp_path / "cmp" / "compare.md").read_text()
