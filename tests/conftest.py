import os
import shutil
import tempfile
from pathlib import Path

# One JAX compilation cache for the whole test session, shared with the `longmem`
# processes the tests start (they inherit the environment): the tests compile the
# same small graphs many times, and reading them back is about a quarter faster.
# Set before JAX is imported; removed when the session ends.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="longmem-jax-cache-")
# The same for PyTensor's rewritten graphs (engine.compile_function): one folder for the
# session, its workers and their `longmem` processes, apart from the user's.
_OWN_GRAPHS = "LONGMEM_GRAPHS_DIR" not in os.environ
if _OWN_GRAPHS:
    os.environ["LONGMEM_GRAPHS_DIR"] = tempfile.mkdtemp(prefix="longmem-graphs-")
# No test reads or writes the user's download cache (a test that damages a cached text
# must not damage theirs): one of the session's own, which the `cache` fixture narrows.
_DOWNLOADS = tempfile.mkdtemp(prefix="longmem-cache-")
os.environ["LONGMEM_CACHE_DIR"] = _DOWNLOADS
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import numpy as np  # noqa: E402 (after the environment above)
import pytest  # noqa: E402

from longmem import engine  # noqa: E402

SHARED_BOOK = Path(__file__).resolve().parents[2] / "shared" / "data" / "huck_fin.txt"


@pytest.fixture(scope="session", autouse=True)
def _configure():
    """Every test builds float32 graphs on the JAX CPU backend."""
    engine.configure("jax", "cpu")


def pytest_sessionfinish(session, exitstatus):
    """Remove the folders this process made. Under pytest-xdist the caches are the
    controller's, which runs no test (so no session fixture) and ends last."""
    shutil.rmtree(_DOWNLOADS, ignore_errors=True)
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
    if _OWN_GRAPHS:
        shutil.rmtree(os.environ["LONGMEM_GRAPHS_DIR"], ignore_errors=True)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty download cache, so no test sees the user's."""
    monkeypatch.setenv("LONGMEM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_small_text(folder: Path) -> Path:
    """A few KB of English-like text in a file."""
    words = "the quick brown fox jumps over a lazy dog while huck and jim float down the river".split()
    r = np.random.default_rng(7)
    text = "\n".join(" ".join(r.choice(words, 12)) + "." for _ in range(120)) + "\n"
    path = folder / "small.txt"
    path.write_text(text)
    return path


@pytest.fixture
def small_text(tmp_path):
    return write_small_text(tmp_path)
