"""Backend and device selection, and the one place where graphs become shared
variables and compiled functions.

PyTensor compiles a graph through a *mode*. longmem uses JAX by default (the
fastest here, see docs/performance.md), and PyTensor's C ("CVM") and Numba linkers
for comparison and for machines without JAX.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import io
import os
import pickle
import time
import types
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from longmem.errors import UserError
from longmem.files import atomic_write, cache_dir, versions

BACKENDS = ("jax", "c", "numba")
DEVICES = ("cpu", "gpu")

_MODES = {"jax": "JAX", "c": "CVM", "numba": "NUMBA"}


def configure(backend: str = "jax", device: str = "cpu", devices: str = "1") -> str:
    """Prepare PyTensor (and JAX) for `backend` on `device`; return the mode name.

    Must run before any graph is built: it sets float32 as PyTensor's float
    type, so that Python constants in expressions do not upcast to float64.
    `devices` ("N" or "all") is how many devices of this process the training
    streams are split over (see `mesh`); on the CPU, JAX is asked for that
    many host devices.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}; choose cpu or gpu")
    if device == "gpu" and backend != "jax":
        raise UserError("--device gpu needs --backend jax (JAX's CUDA build runs the GPU)")
    if devices != "1" and backend != "jax":
        raise UserError("--devices needs --backend jax (JAX splits the streams over devices)")
    _reuse_freed_memory()
    import pytensor

    pytensor.config.floatX = "float32"
    # PyTensor's JAX reductions ask for a float64 accumulator, which JAX (32-bit
    # by default) truncates to float32 with a warning on every compile.
    warnings.filterwarnings("ignore", message="Explicitly requested dtype")
    if backend == "jax":
        from longmem import ops

        ops.register_jax()
        _select_jax_device(device, devices)
        _keep_compiled()
    return _MODES[backend]


# How longmem sets glibc's malloc up (see _reuse_freed_memory): mallopt's parameter
# (malloc.h), the environment variable that sets the same at a program's start, value.
MALLOC = ((-8, "MALLOC_ARENA_MAX", 1), (-4, "MALLOC_MMAP_MAX_", 0), (-1, "MALLOC_TRIM_THRESHOLD_", 2**31 - 1))


def _reuse_freed_memory() -> None:
    """Have glibc's malloc keep large freed blocks for reuse instead of giving them
    back to the system.

    XLA's CPU runtime asks for each call's temporaries as one block (163 MB for
    the default model's training step) from whichever worker thread runs the
    call. glibc serves a block that large with a fresh mmap and frees it with
    munmap, so every step touched 40,000 new pages, whose faults took a quarter
    of the step's time (docs/performance.md). One arena for every thread, no
    mmap and no trimming let the next step reuse the same block. Must run before
    JAX starts its threads. Settings the user made in the environment
    (MALLOC_*, GLIBC_TUNABLES) win; other C libraries are left alone.
    """
    if any(key.startswith("MALLOC_") for key in os.environ) or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return
        libc = ctypes.CDLL("libc.so.6")
    except (ValueError, OSError, AttributeError):  # not glibc
        return
    for parameter, _, value in MALLOC:
        libc.mallopt(parameter, value)


def _keep_compiled() -> None:
    """Keep XLA's compiled programs between commands, in longmem's cache folder (at
    most 1 GB, least recently used first out): a later command with the same
    shapes reads them back instead of compiling again. Every program is kept,
    not only those that took JAX's default second to compile: a small model's
    are each a few tenths of a second, and together 3 of the 4 seconds a tiny
    mlstm run spent in XLA (0.9 with all of them read back). JAX's own setting
    (JAX_COMPILATION_CACHE_DIR) wins, and with it JAX's other cache settings."""
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
    jax.config.update("jax_compilation_cache_max_size", 1 << 30)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _select_jax_device(device: str, devices: str) -> None:
    import jax

    if device == "cpu":
        # Keep JAX off any GPU that happens to be present: results on CPU must
        # not depend on the machine having a GPU.
        if "JAX_PLATFORMS" not in os.environ:
            jax.config.update("jax_platforms", "cpu")
        wanted = _count(devices, len(os.sched_getaffinity(0)))
        if wanted > 1 and jax.config.jax_num_cpu_devices < wanted:
            try:  # before JAX starts (asking it for its devices would start it)
                jax.config.update("jax_num_cpu_devices", wanted)
            except RuntimeError:
                if len(jax.local_devices(backend="cpu")) >= wanted:
                    return
                raise UserError(f"--devices {devices}: JAX has already started with "
                                f"{len(jax.local_devices(backend='cpu'))} CPU device(s)") from None
        return
    try:
        gpus = jax.local_devices(backend="gpu")
    except RuntimeError:
        gpus = []
    if not gpus:
        raise UserError(
            "--device gpu: JAX sees no GPU (install the CUDA build: pip install 'longmem[gpu]')"
        )
    if _count(devices, len(gpus)) > len(gpus):
        raise UserError(f"--devices {devices}: this machine has {len(gpus)} GPU(s)")
    jax.config.update("jax_default_device", gpus[0])


def distribute(coordinator: str | None, processes: int | None, process_id: int | None) -> None:
    """Join a run of several processes (one per host, each with its devices) through
    JAX's own runtime; must come before `configure`. What is not given JAX finds in
    the environment (SLURM, Open MPI, Kubernetes; JAX_COORDINATOR_ADDRESS). On the
    CPU the processes' collectives go through gloo."""
    _reuse_freed_memory()  # before JAX's runtime starts its threads
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, processes, process_id)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"cannot join the run of {processes or 'several'} processes "
                        f"(coordinator {coordinator or 'from the environment'}): {str(e).splitlines()[0]}") from None


def alone() -> bool:
    """Whether this process runs alone (no distributed runtime), known without starting
    JAX's devices, which `configure` must set up first."""
    import jax

    return not jax.distributed.is_initialized()


def processes() -> tuple[int, int]:
    """This process's number and how many take part (0, 1 when alone)."""
    import jax

    return jax.process_index(), jax.process_count()


def agree(values: list[int]) -> list[int]:
    """Process 0's `values` (small integers), in every process of a multi-process run,
    so that decisions made from the clock or a signal are the same everywhere."""
    if processes()[1] == 1:
        return values
    from jax.experimental import multihost_utils

    return [int(v) for v in multihost_utils.broadcast_one_to_all(np.asarray(values, np.int32))]


def _count(devices: str, available: int) -> int:
    """The number `devices` ("N" or "all") stands for."""
    if devices == "all":
        return available
    if not devices.isdigit() or int(devices) < 1:
        raise UserError(f"--devices must be a positive number or all, not {devices!r}")
    return int(devices)


def mesh(device: str, devices: str):
    """The devices the training streams are split over, as a JAX mesh with one axis,
    "streams": this process's first N devices of `device`'s kind, and those of every
    other process of a multi-process run; None for a single device."""
    import jax

    kind = "cpu" if device == "cpu" else "gpu"
    n = _count(devices, len(jax.local_devices(backend=kind)))
    if n == 1 and jax.process_count() == 1:
        return None
    every = jax.devices(kind)
    chosen = [[d for d in every if d.process_index == p][:n] for p in range(jax.process_count())]
    return jax.sharding.Mesh(np.array(sum(chosen, [])), ("streams",))


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


# Functions compiled in this process, by the graph they were compiled from (see
# `compile_function`), the most recently used last: at most COMPILED_KEPT of them,
# holding at most COMPILED_BYTES of shared variables' values among them.
_COMPILED: dict = {}
COMPILED_KEPT = 16
COMPILED_BYTES = 1 << 28
# Rewritten graphs kept on disk for later processes (see `compile_function`): in
# $LONGMEM_GRAPHS_DIR ("off": none kept) or the cache folder's graphs/, at most
# GRAPHS_BYTES of them, least recently used first out; only those whose compile took
# GRAPHS_SECONDS or more (storing one costs about a tenth of its compile).
GRAPHS_ENV = "LONGMEM_GRAPHS_DIR"
GRAPHS_BYTES = 1 << 29
GRAPHS_SECONDS = 1.0


def compile_function(inputs, outputs, mode, updates=None, name: str | None = None, unused_ok: bool = False):
    """Compile a PyTensor function in `mode` (a name, or a Mode such as `step_mode`'s;
    one function per input shape). An input the outputs do not read is a wiring
    mistake, unless `unused_ok` says it may be one (a net that ignores some input).

    A graph compiled before (the same operations on inputs of the same types, the
    same constants, shared variables of the same types in the same places, the
    same mode) is not rewritten again. PyTensor's rewriting is most of a compile,
    and `eval`, `report`, a resumed run or a test compile the same graphs for one
    run after another. A function compiled in this process is copied with its
    shared variables swapped for this graph's (COMPILED_KEPT functions holding
    COMPILED_BYTES of shared values at most are kept: a large model's are not).
    On JAX without a mesh, a function compiled in any process is read back from
    disk (`_stored`: the rewritten graph without the shared variables' values),
    bound to this graph's shared variables.
    """
    import pytensor

    updates = list(updates or [])
    key, shared = _signature(inputs, outputs, updates, mode, unused_ok)
    if key in _COMPILED:
        earlier, their_shared = _COMPILED.pop(key)
        _COMPILED[key] = earlier, their_shared
        return earlier.copy(swap=dict(zip(their_shared, shared)), name=name)
    stored = _stored(key)
    fn = _read_stored(stored, mode, shared, name) if stored else None
    if fn is None:
        started = time.perf_counter()
        fn = pytensor.function(
            inputs, outputs, updates=updates, mode=mode, name=name,
            on_unused_input="ignore" if unused_ok else "raise",
        )
        if stored and time.perf_counter() - started >= GRAPHS_SECONDS:
            _store(stored, fn, mode, shared)
    if key is not None:
        _COMPILED[key] = fn, shared
        while len(_COMPILED) > COMPILED_KEPT or sum(map(_held_bytes, _COMPILED.values())) > COMPILED_BYTES:
            del _COMPILED[next(iter(_COMPILED))]
    return fn


def _stored(key) -> Path | None:
    """Where the function of a graph with signature `key` is stored on disk: a file
    named by a digest of the signature and of what the rewriting depends on besides
    (`_code_version`); None for a graph that is not stored (another backend, a mesh,
    something that does not pickle)."""
    if key is None or os.environ.get(GRAPHS_ENV) == "off":
        return None
    mode = key[0]
    if mode == "JAX":
        setting = mode
    elif isinstance(getattr(mode, "linker", None), _step_linker()) and mode.linker.mesh is None:
        setting = ("step", mode.linker.split_inputs, mode.linker.split_outputs)
    else:
        return None
    try:
        digest = hashlib.sha256(_describe((_code_version(), setting, key[1:])).encode()).hexdigest()
    except (TypeError, AttributeError):
        return None
    return Path(os.environ.get(GRAPHS_ENV) or cache_dir() / "graphs") / f"{digest}.pkl"


def _describe(obj) -> str:
    """A text that two processes write alike for equal parts of a graph's signature
    (pickles differ: they hold timings and the order of sets of names): operations by
    their class and __props__ (what PyTensor itself compares them by), types by their
    repr, arrays by their bytes, inner graphs by their structure. TypeError for
    anything else."""
    from pytensor.compile.builders import OpFromGraph
    from pytensor.graph.fg import FrozenFunctionGraph
    from pytensor.graph.type import Type
    from pytensor.scan.op import Scan

    if obj is None or isinstance(obj, str | int | float | bool | np.dtype | np.generic | Type):
        return repr(obj)
    if isinstance(obj, np.ndarray):
        return f"array({obj.dtype}, {obj.shape}, {hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()})"
    if isinstance(obj, tuple | list):
        return "(" + ", ".join(map(_describe, obj)) + ")"
    if isinstance(obj, slice):
        return "slice" + _describe((obj.start, obj.stop, obj.step))
    if isinstance(obj, set | frozenset):
        return "{" + ", ".join(sorted(map(_describe, obj))) + "}"
    if isinstance(obj, Mapping):
        return "{" + ", ".join(sorted(f"{_describe(k)}: {_describe(v)}" for k, v in obj.items())) + "}"
    if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
        if "<" in obj.__qualname__:  # a lambda or a closure: its name does not say what it does
            raise TypeError(f"cannot describe {obj.__qualname__}")
        return f"{obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, FrozenFunctionGraph):
        key, shared = _signature(list(obj.inputs), list(obj.outputs), [], None, False)
        if key is None or shared:
            raise TypeError("an inner graph that cannot be described")
        return "graph" + _describe(key[1:])
    if dataclasses.is_dataclass(obj):
        return type(obj).__qualname__ + _describe(dataclasses.asdict(obj))
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    props = getattr(type(obj), "__props__", None)
    if props is None and isinstance(obj, Scan | OpFromGraph):  # what their __eq__ compares
        props = (("info", "profile", "truncate_gradient", "name", "allow_gc") if isinstance(obj, Scan)
                 else ("is_inline", "destroy_map", "shared_inputs")) + ("_frozen_fgraph",)
    if props is not None:
        return name + _describe({p: getattr(obj, p) for p in props})
    if type(obj).__module__.startswith(("pytensor.scalar", "longmem")):  # no __props__: compared by their attributes
        return name + _describe(vars(obj))
    raise TypeError(f"cannot describe {name}")


@functools.cache
def _code_version() -> str:
    """What a rewritten graph depends on besides the graph: the versions of Python and
    the packages, PyTensor's settings, and longmem's own source (its operations and
    their rewrites; an editable install keeps its version number while the code
    changes)."""
    import pytensor

    h = hashlib.sha256(repr([sorted(versions().items()), pytensor.config.get_config_hash()]).encode())
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


def _store(path: Path, fn, mode, shared) -> None:
    """Store the compiled `fn` at `path` for `_read_stored`: pickled, with `mode`, the
    `shared` variables, their containers and values left out (named by their place),
    then the least recently used stored functions removed while they take more than
    GRAPHS_BYTES."""
    places = {}
    for i, v in enumerate(shared):
        places.update({id(v): ("shared", i), id(v.container): ("container", i),
                       id(v.container.storage): ("storage", i), id(v.container.value): ("value", i)})

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return "mode" if obj is mode else places.get(id(obj))

        def reducer_override(self, obj):
            # A function made inside another or a lambda (a hand-written gradient of an
            # inner graph, which the graph before rewriting still refers to) is not part
            # of what the compiled function runs: stored as one that says so if called.
            if isinstance(obj, types.FunctionType) and "<" in obj.__qualname__:
                return _not_stored, (obj.__qualname__,)
            return NotImplemented

    data = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # of aliased values, which are not stored
            Pickler(data, protocol=5).dump(fn)
        atomic_write(path, data.getvalue())
    except (pickle.PicklingError, TypeError, AttributeError, OSError):
        return  # an operation that does not pickle, a full or read-only disk: compiled every time
    kept = []
    for p in path.parent.glob("*.pkl"):
        with contextlib.suppress(OSError):  # removed meanwhile by another process
            kept.append((p.stat(), p))
    kept.sort(key=lambda found: found[0].st_mtime, reverse=True)  # the newest first, and kept
    for (_, p), before in list(zip(kept, np.cumsum([st.st_size for st, _ in kept])))[1:]:
        if before > GRAPHS_BYTES:
            p.unlink(missing_ok=True)


def _not_stored(qualname: str):
    """What `_store` keeps of a function defined inside another, or of a lambda: one that
    says so if called."""
    def lost(*args, **kwargs):
        raise RuntimeError(f"{qualname} was not stored with the compiled function that referred to it")

    return lost


def _read_stored(path: Path, mode, shared, name):
    """The function `_store` stored at `path`, made with `mode` and reading and updating
    the `shared` variables of this graph; None if there is none or it cannot be read
    back (then it is compiled afresh and stored over)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None

    class Unpickler(pickle.Unpickler):
        def persistent_load(self, pid):
            if pid == "mode":
                return mode
            what, i = pid
            return {"shared": shared[i], "container": shared[i].container, "storage": shared[i].container.storage,
                    "value": shared[i].container.value}[what]

    try:
        fn = Unpickler(io.BytesIO(data)).load()
    except Exception:  # a damaged file, or one pickled by other code: compiled again
        return None
    # It must read and write this graph's shared variables' storage, and nothing else's.
    bound = [(spec.value, used) for spec, used in zip(fn.maker.inputs, fn.input_storage) if spec.implicit]
    if (sorted(id(container) for container, _ in bound) != sorted(id(v.container) for v in shared)
            or any(used.storage is not container.storage for container, used in bound)):
        return None
    fn.name = name
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used
    return fn


def _held_bytes(kept) -> int:
    """The bytes of the shared variables' values a kept function holds on to."""
    return sum(getattr(v.get_value(borrow=True), "nbytes", 0) for v in kept[1])


def _signature(inputs, outputs, updates, mode, unused_ok):
    """A hashable description of the graph from `inputs` to `outputs` and `updates`
    (pairs of a shared variable and its new value) that two graphs share exactly
    when they compute the same thing, and the graph's shared variables in the order
    it names them; (None, []) for a graph it cannot describe."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant, Variable
    from pytensor.graph.traversal import io_toposort

    single = isinstance(outputs, Variable)
    outputs = [outputs] if single else list(outputs)
    ends = [*outputs, *(v for pair in updates for v in pair)]
    if not all(isinstance(v, Variable) for v in [*inputs, *ends]):
        return None, []
    refs = {v: ("input", i, v.type) for i, v in enumerate(inputs)}
    shared, items = [], []

    def ref(v):
        if v not in refs:
            if isinstance(v, Constant):
                refs[v] = ("constant", v.signature())
            elif isinstance(v, SharedVariable):
                refs[v] = ("shared", len(shared), v.type)
                shared.append(v)
            else:
                raise LookupError(v)  # a free variable: pytensor.function will say so
        return refs[v]

    try:
        for node in io_toposort(inputs, ends):
            items.append((node.op, tuple(ref(v) for v in node.inputs)))
            refs.update({out: ("node", len(items) - 1, k) for k, out in enumerate(node.outputs)})
        ends = tuple(ref(v) for v in ends)
        return (mode, unused_ok, single, len(outputs), tuple(items), ends), shared
    except (LookupError, TypeError):  # TypeError: something unhashable
        return None, []


def to_numpy(value) -> np.ndarray:
    """A compiled function's output (JAX array or NumPy) as a NumPy array; an array
    split over the processes of a multi-process run is gathered (every process
    must call this for it)."""
    if getattr(value, "is_fully_addressable", True) is False and not value.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return np.asarray(value)


def step_mode(mode: str, mesh=None, split_inputs: int = 0, split_outputs: int = 0):
    """The mode of a training step: on JAX, buffers of the shared variables it updates
    are donated (XLA writes the new values in place), and with a `mesh` the first
    `split_inputs` inputs and `split_outputs` outputs have their axis 1 (the streams)
    split over its devices and everything else replicated, so that XLA runs each
    device's share of the streams and sums the gradients across devices."""
    if mode != "JAX":
        return mode
    return _step_mode(mesh, split_inputs, split_outputs)


@functools.cache
def _step_mode(mesh, split_inputs: int, split_outputs: int):
    """One Mode for each JAX step setting, so that equal settings are the same mode
    (`compile_function` reuses only what was compiled in the same mode)."""
    from pytensor.compile.mode import JAX, Mode

    return Mode(_step_linker()(mesh, split_inputs, split_outputs), JAX.optimizer)


@functools.cache
def _step_linker():
    """The JAX linker of `step_mode` (a class made on first use: importing PyTensor's
    linkers is slow)."""
    from pytensor.link.jax.linker import JAXLinker

    class StepLinker(JAXLinker):
        """JAX's linker, donating the updated buffers and splitting the streams over a mesh.
        Pickled by the name longmem.engine.StepLinker, which the module's `__getattr__`
        gives, so that `_store` can store a step function."""

        def __init__(self, mesh=None, split_inputs: int = 0, split_outputs: int = 0, **kwargs):
            super().__init__(**kwargs)
            self.mesh, self.split_inputs, self.split_outputs = mesh, split_inputs, split_outputs

        def jit_compile(self, fn):
            import jax
            from jax.sharding import NamedSharding, PartitionSpec

            assert not self.scalar_shape_inputs, "longmem's graphs have static shapes"
            donate = tuple(sorted((self.fgraph.update_mapping or {}).values()))
            if self.mesh is None:
                return jax.jit(fn, donate_argnums=donate)
            split = NamedSharding(self.mesh, PartitionSpec(None, "streams"))
            whole = NamedSharding(self.mesh, PartitionSpec())
            ins = [split if i < self.split_inputs else whole for i in range(len(self.fgraph.inputs))]
            outs = [split if i < self.split_outputs else whole for i in range(len(self.fgraph.outputs))]
            jitted = jax.jit(fn, in_shardings=tuple(ins), out_shardings=tuple(outs), donate_argnums=donate)

            def call(*args):
                # Host arrays become arrays across the mesh; each process gives its own share.
                return jitted(*(
                    jax.make_array_from_callback(a.shape, s, lambda index, a=a: a[index])
                    if s is split and not isinstance(a, jax.Array) else a
                    for a, s in zip(args, ins)
                ))

            return call

    StepLinker.__module__, StepLinker.__qualname__ = __name__, "StepLinker"
    return StepLinker


def __getattr__(name: str):
    if name == "StepLinker":
        return _step_linker()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
