"""What several test modules share: tiny training flags, running the CLI in this
process, starting and killing it in another, and comparing runs bit for bit."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from longmem.cli import main

TINY = ["--hidden", "16", "--batch", "4", "--seq", "8", "--log-every", "5", "--eval-every", "10",
        "--sample-every", "10", "--sample-length", "20"]
TIMING = {"chars_per_s", "elapsed", "train_seconds"}


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


KILL_FLAGS = ["--steps", 100, "--checkpoint-every-steps", 7]  # for killed_equals_whole


def spawn(args, wrapper=(), stdout=None):
    """Start `longmem` (or a wrapper script around it); its stderr goes to a file, its
    standard output to the file `stdout` (none: nowhere)."""
    cmd = [sys.executable, *map(str, wrapper)] if wrapper else [sys.executable, "-m", "longmem"]
    log = open(Path(args[args.index("--run-dir") + 1] if "--run-dir" in args else args[-1]).parent / "stderr.log", "a+")
    out = open(stdout, "w") if stdout else subprocess.DEVNULL
    proc = subprocess.Popen([*cmd, *map(str, args)], stdout=out, stderr=log, text=True)
    proc.log = log
    return proc


def finish(proc, timeout=300):
    """Wait for the process; return its stderr since it started."""
    proc.wait(timeout=timeout)
    proc.log.seek(0)
    return proc.log.read()


def last_step(run_dir) -> int:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    for line in reversed(lines):  # the last line may be half written
        try:
            return json.loads(line)["step"]
        except ValueError:
            continue
    return 0


def wait_for(predicate, proc, timeout=120, allow_exit=False):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert allow_exit or proc.poll() is None, finish(proc)
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def killed_equals_whole(capsys, tmp_path, start, flags, kills=1, seed=7, gap=(10, 30), spawn_whole=False):
    """Run `longmem <start> <flags>` uninterrupted (in this process, or in another with
    `spawn_whole`, for flags this process's JAX cannot follow such as --devices), and
    again killed (SIGKILL) `kills` times at random moments, after some checkpoints, and
    resumed each time with `longmem train --resume` (in another process, but the last
    time in this one, unless `spawn_whole`);
    assert both end alike (parameters, metrics, every tracked record bit for bit).
    Return the uninterrupted run."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    if spawn_whole:
        proc = spawn([start, "--run-dir", whole, *flags])
        code, err = proc.wait(timeout=300), finish(proc)
    else:
        code, _, err = run_cli(capsys, start, "--run-dir", whole, *flags)
    assert code == 0, err
    rnd = random.Random(seed)
    proc = spawn([start, "--run-dir", killed, *flags])
    for kill in range(kills):
        target = last_step(killed) + rnd.randint(*gap)
        wait_for(lambda target=target: last_step(killed) >= target, proc)
        time.sleep(rnd.uniform(0.0, 0.05))
        assert proc.poll() is None, "every kill should land before the run ends"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if kill < kills - 1 or spawn_whole:
            proc = spawn(["train", "--resume", killed])
    if proc.returncode == -signal.SIGKILL:
        # The last resume runs here, where the uninterrupted run compiled the same
        # graphs (engine.compile_function copies them): a fresh process wrote the
        # checkpoint, and the copies must go on from it exactly as the originals went.
        code, _, err = run_cli(capsys, "train", "--resume", killed)
    else:
        err = finish(proc)
        code = proc.returncode
    assert code == 0, err
    assert digest(capsys, killed)["digest"] == digest(capsys, whole)["digest"]
    assert metrics(killed) == metrics(whole)
    tracks = sorted(p.name for p in (whole / "tracks").iterdir())
    assert tracks and sorted(p.name for p in (killed / "tracks").iterdir()) == tracks
    for name in tracks:
        assert (killed / "tracks" / name).read_bytes() == (whole / "tracks" / name).read_bytes(), name
    return whole


def gradient_matches_finite_differences(net, params, x, state, carried, X, Y, carried_term, reference):
    """The gradient of a model's mean cross-entropy plus 0.1 x the sum of its new state
    `carried_term`, with respect to every parameter, against central differences of
    the same cost from `reference(float64 params, X)` -> (logits, that state)."""
    import numpy as np
    import pytensor
    import pytensor.tensor as pt

    from longmem import engine
    from reference import check_against_finite_differences, mean_nll

    y = pt.tensor("y", dtype="int32", shape=Y.shape)
    shared, names = engine.share_all(params), sorted(params)
    fw = net.forward(shared, x, state)
    cost = -net.log_probs(fw.logits, y).mean() + 0.1 * fw.state[carried_term].sum()
    fn = engine.compile_function([x, y, *state.values()], pytensor.grad(cost, [shared[k] for k in names]), "JAX")
    got = dict(zip(names, (np.asarray(g) for g in fn(X, Y, *carried.values()))))
    p64 = {k: v.astype(np.float64) for k, v in params.items()}

    def cost_of(name):
        logits, term = reference(p64, X)
        return mean_nll(logits, Y) + 0.1 * term.sum()

    check_against_finite_differences(got, p64, cost_of, atol=2e-4)
