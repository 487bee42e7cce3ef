"""Small file helpers: atomic writes, digests, the cache folder, package versions."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import stat
import tempfile
from importlib import metadata
from pathlib import Path

from longmem.errors import UserError

CACHE_ENV = "LONGMEM_CACHE_DIR"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read a megabyte at a time."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old file or the whole new one."""
    with atomic_open(path) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_open(path: Path, before_replace=None):
    """A new file to write in pieces that appears at `path` whole, when the block ends
    without an error (after `before_replace()`, which may still refuse), or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
        fsync(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def input_file(path: str | Path) -> Path:
    """`path`, refused in one line unless it is a regular file (a folder, a FIFO or a
    device would hang or fail later with a message about something else)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{path} is a folder, not a file")
    if not stat.S_ISREG(mode):
        what = "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise UserError(f"{path} is {what}, not a regular file; give a file")
    return path


def output_file(path: str | Path, run_path: Path | None = None) -> Path:
    """`path` as a file to write: not a folder, and not an existing file of the user's
    (one inside the run directory `run_path` is longmem's own and may be replaced).
    Checked before the work that makes its content."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name")
    inside = run_path is not None and path.resolve().is_relative_to(Path(run_path).resolve())
    if path.exists() and not inside:
        raise UserError(f"{path} exists; give another name or remove it")
    return path


def machine_memory() -> int:
    """Bytes of memory this machine has."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def readable_size(n: float) -> str:
    """A number of bytes for a person: "3.3 TB"."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000


def cut_log(path: Path, size: int, complete_length) -> int:
    """Cut the log at `path` back to `size` bytes and return its new length.

    A file already shorter than `size` is never padded: it is cut to
    `complete_length(data)`, the length of its complete records, which is returned.
    """
    if not path.exists():
        return 0
    with path.open("r+b") as f:
        length = f.seek(0, os.SEEK_END)
        if length < size:
            f.seek(0)
            size = complete_length(f.read())
        f.truncate(size)
    return size


def line_end(data: bytes) -> int:
    """The length of the complete lines in `data`."""
    return data.rfind(b"\n") + 1


def fsync(path: Path) -> None:
    """Make what was written to the file `path`, or renamed in the folder `path`,
    durable (a no-op for a missing file and where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cache_dir() -> Path:
    """longmem's cache folder (downloads, compiled programs): $LONGMEM_CACHE_DIR, or the
    user's cache folder."""
    import platformdirs

    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("longmem"))


def versions(packages=("longmem", "pytensor", "jax", "jaxlib", "numpy"), missing="not installed") -> dict:
    """The Python version and each package's installed version (`missing` where it is not)."""
    found = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = missing
    return found


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
