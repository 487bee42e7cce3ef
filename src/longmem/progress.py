"""Progress of a training run on stderr: a bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    """A progress bar on a terminal; elsewhere (nohup, a batch job) one plain
    line per log interval, so a log file stays readable with `tail`."""

    def __init__(self, goal: int | None, step: int):
        self.tty = sys.stderr.isatty()
        self.bar = tqdm(total=goal, initial=step, unit="step", file=sys.stderr, dynamic_ncols=True,
                        disable=not self.tty)

    def show(self, step: int, shown: dict) -> None:
        if self.tty:
            self.bar.set_postfix(shown, refresh=False)
        else:
            print(f"step {step}  " + "  ".join(f"{k} {v}" for k, v in shown.items()), file=sys.stderr, flush=True)

    def say(self, line: str) -> None:
        """One line of news, above the bar on a terminal."""
        if self.tty:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
