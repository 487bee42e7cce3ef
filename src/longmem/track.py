"""Values recorded from inside the network while it trains.

A tracked name is any value the training step can compute, optionally with
a NumPy-style index:

    loss, lr, grad_norm, update_norm   scalars of the step
    out.b, lstm.0.Wh                   a parameter (its value after the step)
    out.b.grad, out.b.update           its gradient, and the change the step made
    out.b.ms, adam.t, ...              optimizer state (its value after the step)
    lstm.0.h, lstm.0.c, lstm.0.f, ...  hidden and cell state and the gates i, f, o, g,
                                       averaged over the window and the batch
    out.W[:, 3]  lstm.0.b[256:512]     an index into any of the above

On disk, under `tracks/` of the run directory, each name has two files:

    <file>.json   {"name": ..., "shape": [...], "indices": [...] or null, "dtype": ...}
    <file>.bin    appended records, each an int64 step then the float32 values

so a series loads in one line of NumPy:

    np.fromfile("tracks/out.b.bin", dtype=[("step", "<i8"), ("value", "<f4", (26,))])

A value with more elements than the cap keeps evenly spaced ones; `indices`
lists which (flat positions). A record cut short by a crash is ignored when
reading, and cut off when the run resumes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longmem.errors import UserError
from longmem.files import atomic_write

DEFAULTS = ("loss", "lr", "grad_norm", "update_norm")
_INDEX = re.compile(r"^(?P<base>[^\[\]]+?)\s*(\[(?P<index>[^\[\]]*)\])?$")


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
    """The symbolic value of each name, indexed as the name says."""
    out = {}
    for name in names:
        base, index = parse(name)
        if base not in sources:
            known = ", ".join(sorted(k for k in sources if not k.endswith((".grad", ".update"))))
            raise UserError(
                f"nothing called {base!r} can be tracked; known names: {known} "
                "(and NAME.grad, NAME.update for each parameter)"
            )
        out[name] = sources[base][index] if index is not None else sources[base]
    return out


def file_stem(name: str) -> str:
    """A file name for a tracked name (`out.W[:, 3]` -> `out.W[_,3]`)."""
    return re.sub(r"[^A-Za-z0-9._\[\],-]", "_", name.replace(" ", ""))


@dataclass
class Series:
    name: str
    steps: np.ndarray  # (n,)
    values: np.ndarray  # (n, *shape) or (n, k) when only k elements are kept
    indices: list | None  # flat positions kept, or None for all


class Writer:
    """Appends records of tracked values; knows how long each file is."""

    def __init__(self, directory: Path, cap: int):
        self.directory, self.cap = directory, cap
        self.kept: dict[str, np.ndarray | None] = {}

    def append(self, step: int, values: dict[str, np.ndarray]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, value in values.items():
            value = np.asarray(value, dtype=np.float32)
            if name not in self.kept:
                self._start(name, value)
            kept = self.kept[name]
            flat = value.reshape(-1) if kept is None else value.reshape(-1)[kept]
            with (self.directory / f"{file_stem(name)}.bin").open("ab") as f:
                f.write(np.int64(step).astype("<i8").tobytes() + flat.astype("<f4").tobytes())

    def _start(self, name: str, value: np.ndarray) -> None:
        header = self.directory / f"{file_stem(name)}.json"
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

    def sizes(self) -> dict[str, int]:
        """Bytes in each track file now (saved in checkpoints)."""
        return {p.name: p.stat().st_size for p in sorted(self.directory.glob("*.bin"))}

    def truncate(self, sizes: dict[str, int]) -> None:
        """Cut every track back to `sizes`, as at a checkpoint; newer tracks go."""
        for path in self.directory.glob("*.bin"):
            with path.open("r+b") as f:
                f.truncate(sizes.get(path.name, 0))


def available(directory: Path) -> list[str]:
    """The names tracked in a run's `tracks/` folder."""
    return sorted(json.loads(p.read_text())["name"] for p in directory.glob("*.json"))


def load(directory: Path, name: str) -> Series:
    """One tracked series; a torn last record is dropped."""
    header = directory / f"{file_stem(name)}.json"
    if not header.exists():
        names = available(directory)
        raise UserError(
            f"no track named {name!r} in {directory.parent}; tracked: {', '.join(names) or 'nothing'}"
        )
    info = json.loads(header.read_text())
    shape = tuple(info["shape"]) if info["indices"] is None else (len(info["indices"]),)
    record = np.dtype([("step", "<i8"), ("value", "<f4", shape)])
    data = (directory / f"{file_stem(name)}.bin").read_bytes()
    whole = len(data) // record.itemsize * record.itemsize
    rows = np.frombuffer(data[:whole], dtype=record)
    return Series(name, rows["step"].copy(), rows["value"].copy(), info["indices"])
