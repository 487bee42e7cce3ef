"""Backend and device selection, and the one place where graphs become shared
variables and compiled functions.

PyTensor compiles a graph through a *mode*. longmem uses JAX by default (the
fastest here, see ARCHITECTURE.md), and PyTensor's C ("CVM") and Numba linkers
for comparison and for machines without JAX.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from longmem.errors import UserError

BACKENDS = ("jax", "c", "numba")
DEVICES = ("cpu", "gpu")

_MODES = {"jax": "JAX", "c": "CVM", "numba": "NUMBA"}


def configure(backend: str = "jax", device: str = "cpu") -> str:
    """Prepare PyTensor (and JAX) for `backend` on `device`; return the mode name.

    Must run before any graph is built: it sets float32 as PyTensor's float
    type, so that Python constants in expressions do not upcast to float64.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}; choose cpu or gpu")
    if device == "gpu" and backend != "jax":
        raise UserError("--device gpu needs --backend jax (JAX's CUDA build runs the GPU)")
    import pytensor

    pytensor.config.floatX = "float32"
    # PyTensor's JAX reductions ask for a float64 accumulator, which JAX (32-bit
    # by default) truncates to float32 with a warning on every compile.
    warnings.filterwarnings("ignore", message="Explicitly requested dtype")
    if backend == "jax":
        _select_jax_device(device)
    return _MODES[backend]


def _select_jax_device(device: str) -> None:
    import jax

    if device == "cpu":
        # Keep JAX off any GPU that happens to be present: results on CPU must
        # not depend on the machine having a GPU.
        if "JAX_PLATFORMS" not in os.environ:
            jax.config.update("jax_platforms", "cpu")
        return
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if not gpus:
        raise UserError(
            "--device gpu: JAX sees no GPU (install the CUDA build: pip install 'longmem[gpu]')"
        )
    jax.config.update("jax_default_device", gpus[0])


def shared(value: np.ndarray, name: str):
    """Wrap a NumPy array as a float32 (or integer) shared variable with a static shape.

    JAX mode needs static shapes all through the graph, so every shared
    variable declares its shape.
    """
    import pytensor

    value = np.asarray(value)
    if value.dtype.kind == "f":
        value = value.astype(np.float32)
    return pytensor.shared(value, name=name, shape=value.shape)


def share_all(arrays: dict[str, np.ndarray]) -> dict:
    """Shared variables for named arrays, named after them (`lstm.0.Wh`)."""
    return {name: shared(value, name) for name, value in arrays.items()}


def inputs(arrays: dict[str, np.ndarray]) -> dict:
    """Symbolic inputs with the names, dtypes and (static) shapes of `arrays`."""
    import pytensor.tensor as pt

    return {name: pt.tensor(name, dtype=str(a.dtype), shape=a.shape) for name, a in arrays.items()}


def compile_function(inputs, outputs, mode: str, updates=None, name: str | None = None):
    """Compile a PyTensor function in `mode` (one function per input shape)."""
    import pytensor

    return pytensor.function(
        inputs, outputs, updates=updates or [], mode=mode, name=name, on_unused_input="ignore"
    )


def to_numpy(value) -> np.ndarray:
    """A compiled function's output (JAX array or NumPy) as a NumPy array."""
    return np.asarray(value)
