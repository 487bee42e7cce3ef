"""Atomic, self-describing, checksummed checkpoints of plain arrays.

A checkpoint file is::

    LONGMEM-CHECKPOINT\\n
    {"format": 1, "bytes": N, "sha256": "..."}\\n
    N bytes: an .npz archive of named arrays, with the metadata as JSON in
    the array "__meta__"

Arrays only (no pickled graphs), so a checkpoint written on a GPU loads on a
CPU and the reverse. Files are written under a temporary name, fsynced and
renamed over nothing, so the previous checkpoint stays whole until the new one
is; the newest `keep` are kept.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np

from longmem.errors import UserError
from longmem.files import atomic_write, sha256

MAGIC = b"LONGMEM-CHECKPOINT\n"
FORMAT = 1
META = "__meta__"


class CheckpointError(UserError):
    """A checkpoint that cannot be used: truncated, corrupted, or of another format."""


def save(directory: Path, step: int, arrays: dict[str, np.ndarray], meta: dict, keep: int = 2) -> Path:
    """Write a checkpoint for `step` and delete all but the newest `keep`."""
    buffer = io.BytesIO()
    encoded = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(buffer, **{META: encoded}, **{name: np.asarray(a) for name, a in arrays.items()})
    payload = buffer.getvalue()
    header = json.dumps({"format": FORMAT, "bytes": len(payload), "sha256": sha256(payload)})
    path = directory / name(step)
    try:
        atomic_write(path, MAGIC + header.encode() + b"\n" + payload)
    except OSError as e:
        raise UserError(
            f"cannot write checkpoint {path} ({e.strerror or e}); the previous checkpoint is intact"
        ) from None
    for old in checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def name(step: int) -> str:
    """The file name of the checkpoint of `step`."""
    return f"ckpt-{step:09d}.lmc"


def digest(params: dict[str, np.ndarray]) -> str:
    """SHA-256 over every parameter's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for key in sorted(params):
        a = np.ascontiguousarray(params[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def count(params: dict[str, np.ndarray]) -> int:
    """How many numbers the parameters hold."""
    return int(sum(a.size for a in params.values()))


def checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files in `directory`, oldest first."""
    return sorted(directory.glob("ckpt-*.lmc")) if directory.is_dir() else []


def read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and metadata of one checkpoint; CheckpointError if it is not whole."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{path}: not a longmem checkpoint")
    end = data.find(b"\n", len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC) : end])
    except ValueError:
        raise CheckpointError(f"{path}: damaged header") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {header.get('format')} is not the format {FORMAT} "
            "this longmem reads"
        )
    payload = data[end + 1 :]
    if len(payload) != header["bytes"]:
        raise CheckpointError(f"{path}: truncated ({len(payload)} of {header['bytes']} bytes)")
    if sha256(payload) != header["sha256"]:
        raise CheckpointError(f"{path}: checksum mismatch (the file is corrupted)")
    with np.load(io.BytesIO(payload)) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays.pop(META).tobytes())
    return arrays, meta


def load_latest(directory: Path) -> tuple[dict[str, np.ndarray], dict, Path]:
    """The newest checkpoint that verifies; a damaged newer one is reported and skipped."""
    found = checkpoints(directory)
    if not found:
        raise CheckpointError(f"{directory}: no checkpoint found")
    problems = []
    for path in reversed(found):
        try:
            arrays, meta = read(path)
        except CheckpointError as e:
            problems.append(str(e))
            print(f"longmem: warning: {e}; trying an older checkpoint", file=sys.stderr)
            continue
        return arrays, meta, path
    raise CheckpointError(f"no valid checkpoint in {directory}: {problems[0]}")
