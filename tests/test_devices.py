"""Data parallel training (--devices N): the streams split over 2 host CPU devices
train as on one, a run moves between device counts, and a killed 2-device run
resumes bit for bit. Each run is its own process: JAX fixes its number of CPU
devices when it starts."""

import json
import socket
import subprocess
import sys

import numpy as np
import pytest

from helpers import KILL_FLAGS, TINY, killed_equals_whole
from longmem.rundir import RunDir, load

FLAGS = [*TINY, "--steps", 30, "--checkpoint-every-steps", 10, "--sample-every", 0]


def train(*args):
    proc = subprocess.run([sys.executable, "-m", "longmem", "train", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


def assert_close(run_dir, reference):
    """The same training within float tolerance: the devices sum the gradient in
    another order than one device does."""
    got, want = load(RunDir(run_dir)), load(RunDir(reference))
    assert got.meta["state"]["step"] == want.meta["state"]["step"] == 30
    for name, value in want.params.items():
        np.testing.assert_allclose(got.params[name], value, rtol=2e-4, atol=2e-6, err_msg=name)
    for name, value in want.state.items():
        np.testing.assert_allclose(got.state[name], value, rtol=2e-4, atol=2e-6, err_msg=name)
    mine, theirs = losses(run_dir), losses(reference)
    assert mine[30] == pytest.approx(theirs[30], rel=1e-5)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    from conftest import write_small_text

    folder = tmp_path_factory.mktemp("devices")
    text = write_small_text(folder)
    train("--text", text, "--run-dir", folder / "one", *FLAGS)
    return text, folder / "one"


def test_two_devices_train_as_one(tmp_path, one_device):
    text, one = one_device
    err = train("--text", text, "--run-dir", tmp_path / "two", *FLAGS, "--devices", 2)
    assert "Traceback" not in err
    assert json.loads((tmp_path / "two" / "config.json").read_text())["config"]["train"]["devices"] == "2"
    assert_close(tmp_path / "two", one)
    mine, theirs = losses(tmp_path / "two"), losses(one)
    assert mine.keys() == theirs.keys()
    for step in theirs:
        assert mine[step] == pytest.approx(theirs[step], rel=1e-5)


def test_a_run_moves_between_device_counts(tmp_path, one_device):
    """From 2 devices to 1 and back: checkpoints do not depend on the device count."""
    text, one = one_device
    run = tmp_path / "moved"
    train("--text", text, "--run-dir", run, *FLAGS, "--steps", 10, "--devices", 2)
    for steps, devices in ((20, 1), (30, 2)):
        err = train("--resume", run, "--steps", steps, "--devices", devices)
        assert "resuming" in err
    assert json.loads((run / "config.json").read_text())["config"]["train"]["devices"] == "2"
    assert_close(run, one)


def test_an_uneven_split_is_refused(tmp_path, one_device):
    text, _ = one_device
    proc = subprocess.run([sys.executable, "-m", "longmem", "train", "--text", str(text), "--run-dir",
                           str(tmp_path / "r"), *map(str, FLAGS), "--devices", "3"], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "longmem: error: --batch 4 cannot be split evenly over 3 devices"
    assert not (tmp_path / "r").exists()


def test_a_killed_two_device_run_resumes_exactly(tmp_path, capsys, small_text):
    killed_equals_whole(capsys, tmp_path, "train", ["--text", small_text, *TINY, *KILL_FLAGS, "--devices", 2],
                        spawn_whole=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def processes(*args, count=2):
    """`longmem train ARGS` as `count` processes of one run (JAX's CPU collectives over
    localhost); returns process 0's stderr."""
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "longmem", "train", *map(str, args), "--coordinator",
                               f"localhost:{port}", "--num-processes", str(count), "--process-id", str(i)],
                              stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(count)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
    return results[0][1]


def test_two_processes_train_and_resume_as_two_devices(tmp_path, one_device):
    """Process 0 writes the run; both resume it; the result is the single-process run's."""
    text, one = one_device
    run = tmp_path / "run"
    processes("--text", text, "--run-dir", run, *FLAGS, "--steps", 20)
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in one.iterdir())
    err = processes("--resume", run, "--steps", 30)
    assert "resuming" in err
    assert_close(run, one)
    assert losses(run).keys() == losses(one).keys()
