"""Backends, devices and the compiled-program cache."""

import os
import subprocess
import sys

import jax
import pytest

from helpers import TINY, run_cli
from longmem import engine
from longmem.errors import UserError


@pytest.mark.parametrize("flags, message", [
    (["--devices", "0"], "--devices must be a positive number or all, not '0'"),
    (["--devices", "two"], "--devices must be a positive number or all, not 'two'"),
    (["--devices", "2", "--backend", "c"], "--devices needs --backend jax"),
])
def test_bad_device_counts_are_refused_in_one_line(tmp_path, capsys, small_text, flags, message):
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", tmp_path / "r", *TINY, *flags)
    assert code == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_devices_cannot_change_once_jax_has_started():
    jax.devices()  # JAX has started (with one CPU device) in this process
    with pytest.raises(UserError, match="JAX has already started with 1 CPU device"):
        engine.configure("jax", "cpu", "2")


def test_compiled_programs_are_kept_between_commands(tmp_path, small_text):
    """Without JAX's own setting, XLA's programs go to longmem's cache folder, every one
    of them: the step, the evaluation's window and the sampler's step of a tiny model
    each compile in well under JAX's default threshold of a second."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT"))}
    env["LONGMEM_CACHE_DIR"] = str(tmp_path / "cache")
    subprocess.run([sys.executable, "-m", "longmem", "train", "--text", str(small_text), "--run-dir",
                    str(tmp_path / "r"), *map(str, TINY), "--steps", "3"], env=env, check=True,
                   capture_output=True)
    assert len(list((tmp_path / "cache" / "jax").glob("*-cache"))) >= 3  # 1 with the default threshold


TEMPORARIES = """
import resource, sys
if sys.argv[1] == "configured":
    from longmem import engine
    engine.configure("jax", "cpu")
import jax, jax.numpy as jnp
# a recurrence whose 64 outputs (64 MB) are stacked and summed: XLA's temporaries
f = jax.jit(lambda a, b: jax.lax.scan(lambda c, x: (c, jnp.tanh(x @ b)), 0.0, a)[1].sum(0))
a, b = jnp.ones((64, 64, 64)), jnp.ones((64, 4096))
faults = []
for _ in range(6):  # the fewest page faults of a call after the first two
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(a, b).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[2:]))
"""


@pytest.mark.skipif(not hasattr(os, "confstr") or "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""),
                    reason="glibc's malloc")
@pytest.mark.parametrize("how, user, reused", [
    ("configured", {}, True),
    ("plain", {}, False),  # the faults the setting saves: without it every call maps the block afresh
    ("configured", {"MALLOC_ARENA_MAX": "8"}, False),  # the user's own malloc settings win
])
def test_large_temporaries_are_reused_between_calls(how, user, reused):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", TEMPORARIES, how], env={**env, **user}, check=True,
                         capture_output=True, text=True).stdout
    faults = int(out.split()[-1])  # a fresh 64 MB block faults in 16,384 pages of 4 KB
    assert faults < 2000 if reused else faults > 10000, faults


def test_a_graph_compiled_again_is_copied_with_its_own_shared_variables(monkeypatch):
    import numpy as np
    import pytensor
    import pytensor.tensor as pt

    rewrites = []
    real = pytensor.function
    monkeypatch.setattr(pytensor, "function", lambda *a, **k: rewrites.append(1) or real(*a, **k))
    monkeypatch.setattr(engine, "_COMPILED", {})
    monkeypatch.setattr(engine, "_stored", lambda key: None)  # this process's memory only

    def compiled(start, scale=2.0, mode="JAX"):
        w, x = engine.shared(np.full(3, start, np.float32), "w"), pt.vector("x", shape=(3,))
        fn = engine.compile_function([x], (w * x).sum() * scale, mode, updates=[(w, w + x)])
        return w, fn

    w1, f1 = compiled(1.0)
    w2, f2 = compiled(10.0)  # the same graph on other values: copied, not compiled
    assert len(rewrites) == 1
    ones = np.ones(3, np.float32)
    assert float(f2(ones)) == 60.0 and float(f1(ones)) == 6.0  # each reads and updates its own w
    assert w1.get_value().tolist() == [2.0] * 3 and w2.get_value().tolist() == [11.0] * 3
    compiled(1.0, scale=3.0)  # another constant
    monkeypatch.setattr(engine, "COMPILED_KEPT", 1)
    compiled(1.0, mode=engine.step_mode("JAX"))  # another mode; only it is kept
    assert len(rewrites) == 3 and len(engine._COMPILED) == 1
    compiled(1.0)
    assert len(rewrites) == 4
    monkeypatch.setattr(engine, "COMPILED_BYTES", 11)  # less than a w of 3 float32s: nothing kept
    compiled(1.0, scale=5.0)
    compiled(1.0, scale=5.0)
    assert len(rewrites) == 6 and not engine._COMPILED


# Two functions of one shared vector w (operations with inner graphs: a softmax, and an
# OpFromGraph with a gradient of its own, a lambda; and a step that updates w), compiled
# in the process this runs in; argv[1] is w's value.
STORED = """
import sys
import numpy as np
from longmem import engine
engine.configure("jax", "cpu")
engine.GRAPHS_SECONDS = 0  # these small graphs are stored too
import pytensor.tensor as pt
from pytensor.compile.builders import OpFromGraph
w, x = engine.shared(np.full(3, float(sys.argv[1]), np.float32), "w"), pt.vector("x", shape=(3,))
v = pt.vector("v", shape=(3,))
twice = OpFromGraph([v], [v * 2], pullback=lambda i, o, g: [g[0] * 2], inline=True)
read = engine.compile_function([x], (pt.special.softmax(w) * x).sum() + twice(w).sum() / 2, "JAX")
step = engine.compile_function([x], (w * x).sum(), engine.step_mode("JAX"), updates=[(w, w + x)])
"""


def test_a_graph_another_process_compiled_is_read_back_bound_to_this_ones_variables(tmp_path, monkeypatch):
    import numpy as np
    import pytensor

    graphs = tmp_path / "graphs"
    monkeypatch.setenv(engine.GRAPHS_ENV, str(graphs))
    monkeypatch.setattr(engine, "GRAPHS_SECONDS", 0)  # these small graphs are stored too
    subprocess.run([sys.executable, "-c", STORED, "1"], check=True)  # another process, another hash seed
    stored = sorted(graphs.glob("*.pkl"))
    assert len(stored) == 2

    rewrites = []
    real = pytensor.function
    monkeypatch.setattr(pytensor, "function", lambda *a, **k: rewrites.append(1) or real(*a, **k))

    def here(value):
        monkeypatch.setattr(engine, "_COMPILED", {})  # nothing compiled in this process
        monkeypatch.setattr(sys, "argv", ["", value])
        found = {}
        exec(STORED, found)
        return found

    fns = here("10")
    assert rewrites == [] and sorted(graphs.glob("*.pkl")) == stored
    ones, w = np.ones(3, np.float32), fns["w"]
    assert float(fns["read"](ones)) == pytest.approx(31.0)
    assert float(fns["step"](ones)) == 30.0 and w.get_value().tolist() == [11.0] * 3  # updates this w
    assert float(fns["read"](ones)) == pytest.approx(34.0)  # and the other function reads it
    w.set_value(np.array([0.0, 0.0, 1.0], np.float32))
    assert float(fns["read"](ones)) == pytest.approx(2.0)

    for path in stored:  # damaged (cut short): compiled afresh and stored whole again
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    fns = here("10")
    assert len(rewrites) == 2 and float(fns["step"](ones)) == 30.0
    fns = here("10")
    assert len(rewrites) == 2 and float(fns["step"](ones)) == 30.0

    monkeypatch.setattr(engine, "GRAPHS_BYTES", 1)  # less than any: only the one just stored is kept
    engine.compile_function([], engine.shared(np.zeros(4, np.float32), "v").sum(), "JAX")
    assert len(list(graphs.glob("*.pkl"))) == 1 and not set(graphs.glob("*.pkl")) & set(stored)
    monkeypatch.setenv(engine.GRAPHS_ENV, "off")  # none kept
    engine.compile_function([], engine.shared(np.zeros(5, np.float32), "v").sum(), "JAX")
    assert len(list(graphs.glob("*.pkl"))) == 1
