"""B parallel streams through a text, cut into truncated-BPTT windows of T.

Stream b reads the b-th of B equal, contiguous slices of the text. Window k
of every stream is read at once, so the hidden state at the end of window k
is the right state to start window k + 1 from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longmem.errors import UserError


@dataclass
class Cursor:
    """Where the streams are: window `window` of pass `epoch`."""

    epoch: int = 0
    window: int = 0


class Streams:
    ENDLESS = False  # the text ends, and the streams begin it again (a new pass)

    def __init__(self, codes: np.ndarray, batch: int, seq: int, what: str = "training text"):
        if batch < 1 or seq < 1:
            raise UserError("--batch and --seq must be at least 1")
        length = (len(codes) - 1) // batch  # characters per stream
        if length < seq:
            raise UserError(
                f"{what} too short: {len(codes)} characters, but --batch {batch} x --seq {seq} "
                f"needs at least {batch * seq + 1}; use a smaller --batch or --seq, or more text"
            )
        self.batch, self.seq, self.length = batch, seq, length
        self.windows = length // seq  # whole windows per pass
        used = batch * length
        self.xs = codes[:used].reshape(batch, length)  # (B, L) views, no copies
        self.ys = codes[1 : used + 1].reshape(batch, length)

    @property
    def chars_per_window(self) -> int:
        return self.batch * self.seq

    @property
    def chars_per_pass(self) -> int:
        return self.windows * self.chars_per_window

    def at(self, cursor: Cursor) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of the window the cursor is at (every pass reads the same text)."""
        return self.window(cursor.window)

    def window(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and next-character targets of window k, each (T, B) int32."""
        return self.columns(k * self.seq, (k + 1) * self.seq)

    def columns(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets at positions [start, stop) of every stream, each (T, B) int32."""
        cols = slice(start, stop)
        return (
            np.ascontiguousarray(self.xs[:, cols].T, dtype=np.int32),
            np.ascontiguousarray(self.ys[:, cols].T, dtype=np.int32),
        )

    def advance(self, cursor: Cursor) -> bool:
        """Move to the next window; True when a new pass over the text begins."""
        cursor.window += 1
        if cursor.window < self.windows:
            return False
        cursor.window = 0
        cursor.epoch += 1
        return True
