"""One writer per run directory.

A process that writes a run (training, resuming, the Caesar experiment, and
the results `memory`, `compare` and `report` store in it) first takes an
exclusive `flock` on the file `.lock` in the run directory and holds it until
it exits. The operating system drops the lock with the process, so a SIGKILL
or a power loss never leaves a stale one behind. The holder writes its
process id and host into the file, so that a second writer can be told whom
it waits for. Readers (eval, sample, guess, inspect, plot) take no lock:
they read the newest complete checkpoint, which is replaced atomically.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
from pathlib import Path

from longmem.errors import UserError

NAME = ".lock"

# Where the file system cannot lock (some network file systems), writing goes on
# only when the user says so (--no-lock), for the whole process.
allow_unlocked = False

_held: dict[Path, int] = {}  # run directory -> the open file that holds its lock, until exit
_unlocked_said: set[Path] = set()


class Busy(UserError):
    """The run is being written by another process."""


def hold(run_path: Path) -> None:
    """Take the run directory's lock for the rest of this process, or raise Busy naming
    its holder; a second call for the same run is a no-op. The folder must exist."""
    key = Path(run_path).resolve()
    if key in _held or key in _unlocked_said:
        return
    path = key / NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise Busy(f"{run_path} is being written by {holder}; wait for it or stop it") from None
    except OSError as e:
        os.close(fd)
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS):
            raise
        if not allow_unlocked:
            raise UserError(f"cannot lock {path}: the file system does not support locks ({e.strerror}); "
                            "give --no-lock to write the run anyway, making sure no other process does") from None
        print(f"longmem: warning: {path}: no lock (the file system has none); writing it anyway (--no-lock)",
              file=sys.stderr)
        _unlocked_said.add(key)
        return
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    _held[key] = fd


def held(run_path: Path) -> bool:
    """Whether this process writes the run (holds its lock, or was allowed without one)."""
    key = Path(run_path).resolve()
    return key in _held or key in _unlocked_said


def release_all() -> None:
    """Let go of every run this process writes: the command is done (the CLI calls this
    as it returns, so a command run inside another program, a test, ends like a process)."""
    for fd in _held.values():
        os.close(fd)
    _held.clear()
    _unlocked_said.clear()


def _holder(fd: int) -> str:
    """Who holds the lock, from what the holder wrote: "process 1234 on host h"."""
    try:
        pid, host = os.pread(fd, 200, 0).decode().split()[:2]
        return f"process {int(pid)} on host {host}"
    except (OSError, ValueError, UnicodeDecodeError):
        return "another process"
