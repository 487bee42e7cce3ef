"""A run killed at any moment resumes exactly as if nothing had happened."""

import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import KILL_FLAGS, TINY, digest, finish, killed_equals_whole, last_step, metrics, run_cli, spawn, wait_for
from longmem import checkpoint, track

HERE = Path(__file__).parent
STEPS = 200
FLAGS = ["--steps", STEPS, "--checkpoint-every-steps", 7, "--track", "out.b", "lstm.0.f", "--track-every", 3, *TINY,
         "--dropout", 0.3, "--weight-drop", 0.3]  # masks in every step


@pytest.fixture
def reference(tmp_path, small_text, capsys):
    """The same run, never interrupted."""
    run_dir = tmp_path / "reference"
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", run_dir, *FLAGS)
    assert code == 0, err
    return run_dir


def _same_run(capsys, run_dir, reference):
    assert digest(capsys, run_dir)["digest"] == digest(capsys, reference)["digest"]
    assert digest(capsys, run_dir)["step"] == STEPS and digest(capsys, run_dir)["finished"]
    assert metrics(run_dir) == metrics(reference)
    assert (run_dir / "samples.txt").read_text() == (reference / "samples.txt").read_text()
    tracks = sorted(p.name for p in (reference / "tracks").iterdir())
    assert "out.b.bin" in tracks and sorted(p.name for p in (run_dir / "tracks").iterdir()) == tracks
    for name in tracks:  # every record once, none missing, bit for bit
        assert (run_dir / "tracks" / name).read_bytes() == (reference / "tracks" / name).read_bytes()


def test_sigkill_at_random_moments_and_during_a_checkpoint_write(tmp_path, small_text, reference, capsys):
    run_dir = tmp_path / "killed"
    rnd = random.Random(20261128)
    marker = tmp_path / "in-checkpoint-write"
    kills = 0
    # 1: killed while writing its second checkpoint (temporary file written, not yet renamed).
    proc = spawn(["train", "--text", small_text, "--run-dir", run_dir, *FLAGS],
                  wrapper=[str(HERE / "hang_in_checkpoint.py"), marker, 2])
    wait_for(marker.exists, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kills += 1
    assert list((run_dir / "checkpoint").glob(".ckpt-*.tmp")), "the kill should leave a partial write"
    # 2, 3, 4: killed at random moments once training is under way: after a
    # random number of further steps, plus a random fraction of a step.
    for _ in range(3):
        before = last_step(run_dir)
        target = before + rnd.randint(3, 40)
        proc = spawn(["train", "--resume", run_dir])
        wait_for(lambda target=target, proc=proc: last_step(run_dir) >= target or proc.poll() is not None, proc,
                 allow_exit=True)
        time.sleep(rnd.uniform(0.0, 0.05))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    proc = spawn(["train", "--resume", run_dir])
    err = finish(proc)
    assert proc.returncode == 0, err
    assert kills == 4, "every kill should land before the run ends"
    assert not list((run_dir / "checkpoint").glob(".ckpt-*.tmp"))
    _same_run(capsys, run_dir, reference)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_saves_and_exits_cleanly(tmp_path, small_text, reference, capsys, sig):
    run_dir = tmp_path / "stopped"
    proc = spawn(["train", "--text", small_text, "--run-dir", run_dir, *FLAGS])
    wait_for(lambda: last_step(run_dir) >= 20, proc)
    proc.send_signal(sig)
    err = finish(proc)
    assert proc.returncode == 0, err
    assert f"stopped by {sig.name}" in err and f"--resume {run_dir}" in err
    stopped_at = digest(capsys, run_dir)["step"]
    assert 0 < stopped_at < STEPS and not digest(capsys, run_dir)["finished"]
    code, _, err = run_cli(capsys, "train", "--resume", run_dir)
    assert code == 0, err
    _same_run(capsys, run_dir, reference)


def test_killed_before_its_first_checkpoint_starts_again(tmp_path, small_text, reference, capsys):
    run_dir = tmp_path / "early"
    marker = tmp_path / "marker"
    proc = spawn(["train", "--text", small_text, "--run-dir", run_dir, *FLAGS],
                  wrapper=[str(HERE / "hang_in_checkpoint.py"), marker, 1])
    wait_for(marker.exists, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, _, err = run_cli(capsys, "train", "--resume", run_dir)
    assert code == 0 and "starting it again" in err
    _same_run(capsys, run_dir, reference)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_newest_checkpoint_resumes_from_the_previous(tmp_path, small_text, reference, capsys, damage):
    run_dir = tmp_path / "damaged"
    code, _, _ = run_cli(capsys, "train", "--text", small_text, "--run-dir", run_dir,
                         *[a if a != STEPS else 30 for a in FLAGS])
    assert code == 0
    newest = sorted((run_dir / "checkpoint").glob("ckpt-*.lmc"))[-1]
    data = newest.read_bytes()
    flipped = data[:-50] + bytes([data[-50] ^ 4]) + data[-49:]
    newest.write_bytes(data[: len(data) // 3] if damage == "truncate" else flipped)
    code, _, err = run_cli(capsys, "train", "--resume", run_dir, "--steps", STEPS)
    assert code == 0
    assert "warning" in err and newest.name in err and "resuming" in err
    _same_run(capsys, run_dir, reference)




def test_logs_reach_the_disk_before_the_checkpoint_that_records_them(tmp_path, small_text, capsys, monkeypatch):
    """After a power failure a log must not be shorter than the checkpoint says: each log
    is fsynced before the checkpoint file is."""
    import os

    synced = []
    real = os.fsync

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    run_dir = tmp_path / "synced"
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", run_dir, "--steps", 10,
                           "--checkpoint-every-steps", 5, "--track", "out.b", *TINY)
    assert code == 0, err
    checkpoints = [i for i, p in enumerate(synced) if "/checkpoint/.ckpt-" in p]
    assert len(checkpoints) == 2
    for logged in ("metrics.jsonl", "samples.txt", "tracks/out.b.bin"):
        before = [i for i, p in enumerate(synced) if p.endswith(logged)]
        assert before and before[0] < checkpoints[-1], logged
    assert any(p.endswith("metrics.jsonl") for p in synced[: checkpoints[0]])


def test_logs_shorter_than_the_checkpoint_says_are_never_padded(tmp_path, small_text, reference, capsys):
    """A power failure took the end of the logs after the checkpoint was written."""
    run_dir = tmp_path / "power"
    code, _, _ = run_cli(capsys, "train", "--text", small_text, "--run-dir", run_dir,
                         *[a if a != STEPS else 28 for a in FLAGS])
    assert code == 0
    for name, cut in (("metrics.jsonl", 30), ("samples.txt", 3), ("tracks/out.b.bin", 5)):
        path = run_dir / name
        path.write_bytes(path.read_bytes()[:-cut])
    code, _, err = run_cli(capsys, "train", "--resume", run_dir, "--steps", 40)
    assert code == 0, err
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "metrics.jsonl" in warning[0] and "tracks/out.b.bin" in warning[0]
    for name in ("metrics.jsonl", "samples.txt"):
        assert b"\0" not in (run_dir / name).read_bytes(), name
    steps = [m["step"] for m in metrics(run_dir)]
    assert steps == [5, 10, 15, 20, 25, 30, 35, 40]  # the line of step 28 was lost, and stays lost
    recorded = track.load(run_dir, "out.b").steps
    assert recorded[0] == 3 and np.all(np.diff(recorded) > 0) and recorded[-1] == 39
    # The next resume finds the logs as long as its checkpoint says: no second warning.
    code, _, err = run_cli(capsys, "train", "--resume", run_dir, "--steps", 45)
    assert code == 0 and "warning" not in err


def test_resume_refuses_another_optimizer_missing_optimizer_state_and_other_parameters(tmp_path, small_text, capsys):
    run_dir = tmp_path / "opt"
    assert run_cli(capsys, "train", "--text", small_text, "--run-dir", run_dir, "--steps", 10, *TINY)[0] == 0
    code, _, err = run_cli(capsys, "train", "--resume", run_dir, "--optimizer", "adam")
    assert code == 1 and "cannot change --optimizer" in err
    ckpt = sorted((run_dir / "checkpoint").glob("ckpt-*.lmc"))[-1]
    arrays, meta = checkpoint.read(ckpt)
    del arrays["optim/out.b.ms"]
    checkpoint.save(ckpt.parent, 10, arrays, meta)
    code, _, err = run_cli(capsys, "train", "--resume", run_dir, "--steps", 20)
    assert code == 1 and "no optimizer state 'out.b.ms'" in err and "Traceback" not in err
    # A run of a model whose parameters have since changed (an older longmem's) is one
    # sentence for every command that reads it, not a KeyError deep in a graph.
    arrays["param/out.b"] = arrays["param/out.b"][:-1]
    checkpoint.save(ckpt.parent, 10, arrays, meta)
    for command in (["eval", run_dir], ["sample", run_dir], ["train", "--resume", run_dir]):
        code, _, err = run_cli(capsys, *command)
        assert code == 1 and "parameter 'out.b' does not match the model" in err, (command, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_adam_resumes_exactly(tmp_path, small_text, capsys):
    flags = ["--optimizer", "adam", "--track", "adam.t", "--track-every", 5, *TINY]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run_cli(capsys, "train", "--text", small_text, "--run-dir", whole, "--steps", 30, *flags)[0] == 0
    assert run_cli(capsys, "train", "--text", small_text, "--run-dir", part, "--steps", 20, *flags)[0] == 0
    code, _, err = run_cli(capsys, "train", "--resume", part, "--steps", 30)
    assert code == 0, err
    assert digest(capsys, part)["digest"] == digest(capsys, whole)["digest"]
    assert metrics(part) == metrics(whole)
    assert track.load(part, "adam.t").values.tolist() == list(range(5, 31, 5))



def test_a_killed_caesar_run_resumes_exactly(tmp_path, capsys):
    """The Caesar net goes through the same loop: killed twice at random moments and
    resumed with `longmem train --resume`, it ends as the uninterrupted run."""
    flags = ["--passes", 8, "--letters", 2000, "--track", "hidden.W[3]", "--track-every", 2]
    killed_equals_whole(capsys, tmp_path, "caesar", flags, kills=2, gap=(62, 150))


def test_a_killed_run_goes_on_with_the_dropout_it_chose(tmp_path, small_text, capsys):
    """A run that chose its drop probabilities (about 8 passes: 0.1) resumes with them exactly."""
    flags = ["--text", small_text, *TINY, "--batch", 32, "--sample-every", 0, *KILL_FLAGS[2:], "--steps", 200]
    whole = killed_equals_whole(capsys, tmp_path, "train", flags, kills=2)
    assert {(m["dropout"], m["weight_drop"]) for m in metrics(whole)} == {(0.1, 0.1)}
