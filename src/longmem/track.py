"""Values recorded from inside the network while it trains.

A tracked name is any value the training step can compute, optionally with
a NumPy-style index:

    loss, lr, grad_norm, update_norm   scalars of the step (loss: the model's own;
                                       total_loss adds its extra terms)
    out.b, lstm.0.Wh                   a parameter (its value after the step)
    out.b.grad, out.b.update           its gradient, and the change the step made
    out.b.ms, adam.t, ...              optimizer state (its value after the step)
    lstm.0.h, lstm.0.c, lstm.0.f, ...  hidden and cell state and the gates i, f, o, g,
                                       averaged over the window and the batch
    out.W[:, 3]  lstm.0.b[256:512]     an index into any of the above

On disk, under `tracks/` of the run directory, each name has two files:

    <file>.json   {"name": ..., "shape": [...], "indices": [...] or null, "dtype": ...}
    <file>.bin    appended records, each an int64 step then the float32 values

A value with more elements than the cap keeps evenly spaced ones; `indices`
lists which (flat positions), and a record then holds len(indices) values,
not the value's whole shape. `load(run, name)` reads a series with the right
record layout. A record cut short by a crash is ignored when reading, and cut
off when the run resumes.

Names are kept in one canonical spelling (`out.W[:, 3]` and `out.W[:,3]` are
the same name, `out.W[:,3]`), so one value has one file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longmem.errors import UserError
from longmem.files import atomic_write, cut_log

DEFAULTS = ("loss", "lr", "grad_norm", "update_norm")
_INDEX = re.compile(r"^(?P<base>[^\[\]]+?)\s*(\[(?P<index>[^\[\]]*)\])?$")


def canonical(name: str) -> str:
    """The one spelling of a tracked name: no spaces (`out.W[ :, 3]` -> `out.W[:,3]`)."""
    parse(name)
    return re.sub(r"\s+", "", name)


def names(given: list[str]) -> list[str]:
    """Tracked names in their canonical spelling, each once, in order."""
    return list(dict.fromkeys(canonical(name) for name in given))


def parse(name: str) -> tuple[str, tuple | None]:
    """`out.W[:, 3]` -> ("out.W", (slice(None), 3)); a name without index -> (name, None)."""
    match = _INDEX.match(name.strip())
    if not match:
        raise UserError(f"cannot read the tracked name {name!r}; write it like out.W[:, 3]")
    if match["index"] is None:
        return match["base"], None
    parts = []
    for part in match["index"].split(","):
        part = part.strip()
        try:
            if ":" in part:
                parts.append(slice(*(int(p) if p.strip() else None for p in part.split(":"))))
            else:
                parts.append(int(part))
        except (ValueError, TypeError):
            raise UserError(f"bad index {part!r} in tracked name {name!r}") from None
    return match["base"], tuple(parts)


def resolve(names: list[str], sources: dict) -> dict:
    """The symbolic value of each name (in its canonical spelling), indexed as the name says.

    An index outside the value's shape, or one that selects nothing, is refused.
    """
    out = {}
    for name in names:
        base, index = parse(name)
        if base not in sources:
            known = ", ".join(sorted(k for k in sources if not k.endswith((".grad", ".update"))))
            raise UserError(
                f"nothing called {base!r} can be tracked; known names: {known} "
                "(and NAME.grad, NAME.update for each parameter)"
            )
        value = sources[base]
        if index is not None and None not in value.type.shape:
            _check_index(name, index, value.type.shape)
            value = value[index]
        out[canonical(name)] = value
    return out


def _check_index(name: str, index: tuple, shape: tuple) -> None:
    """Refuse an index that NumPy would refuse, or that selects no element."""
    ranges = ", ".join(f"0..{n - 1}" for n in shape) or "none: it is a scalar"
    try:
        picked = np.broadcast_to(np.zeros((), bool), shape)[index]
    except IndexError:
        raise UserError(
            f"{name}: index outside the value (shape {tuple(shape)}; valid indices {ranges})"
        ) from None
    if picked.size == 0:
        raise UserError(f"{name}: the index selects nothing (shape {tuple(shape)}; valid indices {ranges})")


def file_stem(name: str) -> str:
    """A file name for a tracked name (`out.W[:, 3]` -> `out.W[_,3]`)."""
    return re.sub(r"[^A-Za-z0-9._\[\],-]", "_", name.replace(" ", ""))


@dataclass
class Series:
    name: str
    steps: np.ndarray  # (n,)
    values: np.ndarray  # (n, *shape) or (n, k) when only k elements are kept
    indices: list | None  # flat positions kept, or None for all
    shape: tuple  # of the whole value

    @property
    def size(self) -> int:
        """Elements of the whole value (more than are kept under --track-max)."""
        return int(np.prod(self.shape, dtype=np.int64))


class Writer:
    """Appends records of tracked values; knows how long each file is.

    Files stay open between records (a step may record many values), so what
    was appended reaches the file on `flush` (or `close`); the loop flushes
    them before every checkpoint, which records their lengths.
    """

    def __init__(self, directory: Path, cap: int):
        self.directory, self.cap = directory, cap
        self.kept: dict[str, np.ndarray | None] = {}
        self.files: dict[str, object] = {}
        self.lengths = {p.name: p.stat().st_size for p in self.paths()}

    def append(self, step: int, values: dict[str, np.ndarray]) -> None:
        for name, value in values.items():
            value = np.asarray(value, dtype=np.float32)
            if name not in self.kept:
                self._start(name, value)
            kept = self.kept[name]
            flat = value.reshape(-1) if kept is None else value.reshape(-1)[kept]
            record = np.int64(step).astype("<i8").tobytes() + flat.astype("<f4").tobytes()
            self.files[name].write(record)
            self.lengths[self.files[name].name.rsplit("/", 1)[-1]] += len(record)

    def paths(self) -> list[Path]:
        """Every record file, for making them durable before a checkpoint."""
        return sorted(self.directory.glob("*.bin"))

    def flush(self) -> None:
        for f in self.files.values():
            f.flush()

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()

    def _start(self, name: str, value: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        header = self.directory / f"{file_stem(name)}.json"
        other = next((n for n in self.kept if file_stem(n) == file_stem(name)), None)
        if other is not None:
            raise UserError(f"the tracked names {other!r} and {name!r} would share one file; track one")
        kept = None
        if value.size > self.cap:
            kept = np.unique(np.linspace(0, value.size - 1, self.cap).round().astype(int))
        if header.exists():  # a resumed run keeps what it kept before
            old = json.loads(header.read_text())
            kept = None if old["indices"] is None else np.array(old["indices"])
        else:
            info = {"name": name, "shape": list(value.shape), "dtype": "float32",
                    "indices": None if kept is None else kept.tolist()}
            atomic_write(header, (json.dumps(info) + "\n").encode())
        self.kept[name] = kept
        path = self.directory / f"{file_stem(name)}.bin"
        self.files[name] = path.open("ab")
        self.lengths[path.name] = self.files[name].tell()

    def sizes(self) -> dict[str, int]:
        """Bytes in each track file once flushed (saved in checkpoints)."""
        return dict(self.lengths)

    def truncate(self, sizes: dict[str, int]) -> dict[str, int]:
        """Cut every track back to `sizes`, as at a checkpoint; newer tracks go.

        A file shorter than recorded keeps its whole records (never padded).
        Returns the sizes kept.
        """
        kept = {}
        for path in self.paths():
            header = path.with_suffix(".json")
            size = record_dtype(json.loads(header.read_text())).itemsize if header.exists() else 1
            kept[path.name] = cut_log(path, sizes.get(path.name, 0), lambda data, size=size: len(data) // size * size)
        return kept


def available(directory: Path) -> list[str]:
    """The names tracked in a run's `tracks/` folder."""
    return sorted(json.loads(p.read_text())["name"] for p in directory.glob("*.json")) if directory.is_dir() else []


def record_dtype(info: dict) -> np.dtype:
    """The layout of one record, from a track's NAME.json: an int64 step, then the
    float32 values (all of the shape, or the kept `indices`)."""
    shape = tuple(info["shape"]) if info["indices"] is None else (len(info["indices"]),)
    return np.dtype([("step", "<i8"), ("value", "<f4", shape)])


def load(run: str | Path, name: str) -> Series:
    """One tracked series of the run in folder `run`; a torn last record is dropped.

        from longmem import track
        s = track.load("runs/RUN", "out.b")   # s.steps (n,), s.values (n, ...), s.indices
    """
    directory = Path(run) / "tracks"
    header = directory / f"{file_stem(canonical(name))}.json"
    if not header.exists():
        names = available(directory)
        raise UserError(
            f"no track named {name!r} in {directory.parent}; tracked: {', '.join(names) or 'nothing'}"
        )
    info = json.loads(header.read_text())
    record = record_dtype(info)
    data = (directory / f"{file_stem(canonical(name))}.bin").read_bytes()
    whole = len(data) // record.itemsize * record.itemsize
    rows = np.frombuffer(data[:whole], dtype=record)
    return Series(info["name"], rows["step"].copy(), rows["value"].copy(), info["indices"], tuple(info["shape"]))
