"""One writer per run: a second writer is refused in one line and changes nothing;
readers work while a run trains; the lock dies with its process."""

import errno
import json
import signal

from helpers import TINY, digest, finish, metrics, run_cli, spawn, wait_for
from longmem import checkpoint, lock

FLAGS = ["--steps", 300, "--checkpoint-every-steps", 25, "--track", "out.b", "--track-every", 5, *TINY]


def _checkpointed(run_dir):
    return bool(checkpoint.checkpoints(run_dir / "checkpoint"))


def test_a_second_writer_is_refused_and_the_first_ends_as_if_alone(tmp_path, small_text, capsys):
    whole, run = tmp_path / "whole", tmp_path / "run"
    assert run_cli(capsys, "train", "--text", small_text, "--run-dir", whole, *FLAGS)[0] == 0
    proc = spawn(["train", "--text", small_text, "--run-dir", run, *FLAGS])
    wait_for(lambda: (run / "config.json").exists(), proc)
    # Before the first checkpoint: the run is not started again under the first one's feet.
    code, _, err = run_cli(capsys, "train", "--resume", run)
    assert not _checkpointed(run), "the refusal must come before the first checkpoint"
    assert code == 1 and err.count("\n") == 1
    assert f"{run} is being written by process {proc.pid} on host " in err and "wait for it or stop it" in err
    wait_for(lambda: _checkpointed(run), proc)
    # With a checkpoint: a second resume is refused too; a reader works meanwhile.
    code, _, err = run_cli(capsys, "train", "--resume", run, "--steps", 300)
    assert code == 1 and f"process {proc.pid}" in err
    assert proc.poll() is None, "the run should still be training while the others try"
    code, out, err = run_cli(capsys, "eval", run, "--json")
    assert code == 0, err
    err = finish(proc)
    assert proc.returncode == 0, err
    assert digest(capsys, run)["digest"] == digest(capsys, whole)["digest"]
    assert metrics(run) == metrics(whole)
    assert (run / "samples.txt").read_text() == (whole / "samples.txt").read_text()
    tracks = sorted(p.name for p in (whole / "tracks").iterdir())
    assert tracks and sorted(p.name for p in (run / "tracks").iterdir()) == tracks
    for name in tracks:
        assert (run / "tracks" / name).read_bytes() == (whole / "tracks" / name).read_bytes(), name


def test_the_lock_dies_with_its_process(tmp_path, small_text, capsys):
    run = tmp_path / "run"
    proc = spawn(["train", "--text", small_text, "--run-dir", run, *FLAGS, "--steps", 2000])
    wait_for(lambda: _checkpointed(run), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finish(proc)
    code, out, err = run_cli(capsys, "train", "--resume", run, "--steps", 60)
    assert code == 0, err
    assert "step 60 saved" in out


def test_two_memory_commands_at_once_store_one_good_result(tmp_path, small_text, capsys):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--text", small_text, "--run-dir", run, *TINY, "--steps", 20)[0] == 0
    args = ["memory", run, "--max-context", 8, "--positions", 40, "--json"]
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    procs = [spawn([*args, "--out", tmp_path / f"{k}.png"], stdout=out) for k, out in zip("ab", outs)]
    for proc in procs:
        err = finish(proc)
        assert proc.returncode == 0, err
    stored = list((run / "memory").glob("*.json"))
    assert len(stored) == 1
    curve = json.loads(stored[0].read_text())
    for out in outs:
        printed = json.loads(out.read_text())
        assert printed["bpc"] == curve["bpc"] and printed["contexts"] == curve["contexts"]


def test_without_locks_a_writer_needs_no_lock(tmp_path, small_text, capsys, monkeypatch):
    def no_locks(fd, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", no_locks)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", run, *TINY, "--steps", 2)
    assert code == 1 and err.count("\n") == 1 and "does not support locks" in err and "--no-lock" in err
    assert not (run / "config.json").exists()
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", run, *TINY, "--steps", 2, "--no-lock")
    assert code == 0 and "no lock" in err
