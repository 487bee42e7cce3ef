"""SIGINT and SIGTERM, held so that a command stops when asked, and where it can.

JAX calls back into Python from its garbage collector, and an exception raised
there is printed and swallowed ("Exception ignored in _xla_gc_callback"). A
KeyboardInterrupt that Python's own handler raises at that moment is lost and
the command goes on to its end: seen with `compress` under load, and possible
in every command that runs compiled functions. So a command holds one of two
handlers:

- `StopFlag` (training, compress): a signal raises nothing; the work looks at
  `signal` where it can stop cleanly (after the step, with a checkpoint;
  between columns).
- `Interrupts` (every other command, held by the CLI): Ctrl-C raises
  KeyboardInterrupt at once, as Python's handler does, and is remembered, so
  that `check()`, called before each compiled window a predictor runs, raises
  it again when the first was swallowed. SIGTERM keeps its default.
"""

from __future__ import annotations

import signal


class StopFlag:
    """Set by SIGTERM or SIGINT, which raise nothing while it is held: the work stops where
    it can stop cleanly (training: after the step, with a checkpoint)."""

    def __init__(self):
        self.signal: int | None = None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._set) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _set(self, signum, frame):
        self.signal = signum

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)


class Interrupts:
    """While held, SIGINT raises KeyboardInterrupt and is remembered for `check()`."""

    def __init__(self):
        self.pending = False

    def __enter__(self):
        self._old = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def _interrupt(self, signum, frame):
        self.pending = True
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._old)


def check() -> None:
    """Raise KeyboardInterrupt if an `Interrupts` being held has seen Ctrl-C (its own raise
    may have been swallowed); nothing under a `StopFlag` or Python's default handler."""
    held = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
    if isinstance(held, Interrupts) and held.pending:
        raise KeyboardInterrupt
