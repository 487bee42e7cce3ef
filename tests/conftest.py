from pathlib import Path

import numpy as np
import pytest

from longmem import engine

SHARED_BOOK = Path(__file__).resolve().parents[2] / "shared" / "data" / "huck_fin.txt"


@pytest.fixture(scope="session", autouse=True)
def _configure():
    """Every test builds float32 graphs on the JAX CPU backend."""
    engine.configure("jax", "cpu")


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
