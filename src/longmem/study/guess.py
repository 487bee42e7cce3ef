"""`longmem guess`: the original's view of a run's next-letter guesses, with
internal values drawn under each character."""

from __future__ import annotations

import numpy as np

SHADES = " .:-=+*#%@"  # low to high


def view(snap, predictor, codes: np.ndarray, width: int, show: list[str]) -> str:
    """What `longmem guess` prints: the guesses under the text of `codes`, read as one
    stream, the internal values `show` names under them, and the accuracy."""
    result = predictor.evaluate(codes, 1, snap.config.train.seq, guesses=True)
    text = snap.vocab.decode(codes[1 : result.chars + 1])
    # Each character's values are those after the network has read it.
    traced = predictor.trace(codes[: result.chars + 1], snap.config.train.seq, show) if show else {}
    rows = [marks(values[1:]) for values in traced.values()]
    lines = [guess_view(text, snap.vocab.decode(result.guesses), width, rows)]
    if rows:
        lines.append(f"\nunder the guesses, one line each: {', '.join(show)}")
    lines.append(f"\naccuracy {100 * result.accuracy:.1f}% over {result.chars:,} characters")
    return "\n".join(lines)


def marks(values: np.ndarray) -> str:
    """One character per value: '|' where a 0/1 value is 1, else a shade from low to high."""
    if np.isin(values, (0.0, 1.0)).all():
        return "".join("|" if v else " " for v in values)
    lo, hi = float(values.min()), float(values.max())
    levels = np.zeros(len(values), int) if hi == lo else ((values - lo) / (hi - lo) * (len(SHADES) - 1)).round()
    return "".join(SHADES[int(k)] for k in levels)


def guess_view(text: str, guessed: str, width: int, rows: list[str] = ()) -> str:
    """The original's view: the text on one line, the guessed next letter under each character.

    Line 1 of each block is the text; line 2 holds, under each character, the
    letter the network guessed for that position before seeing it; each of
    `rows` (strings as long as the text, e.g. from `marks`) adds a line.
    """
    blocks = []
    for start in range(0, len(text), width):
        lines = [text, guessed, *rows]
        blocks.append("\n".join(_visible(line[start : start + width]) for line in lines))
    return "\n\n".join(blocks)


def _visible(line: str) -> str:
    """Newlines and tabs as visible marks, so every character takes one column."""
    return line.replace("\n", "↵").replace("\t", "→")
