"""Speed of `longmem train` itself, end to end, for this tree and optionally another.

Each measurement is the difference between a long and a short run of the real
command (same settings, fresh run directories), so start-up, data loading and
compiling cancel and what is left is the training loop: the step, dropout
masks, logging, evaluation and checkpoints. With `--against SRC` (the `src`
folder of another checkout, e.g. `git worktree add /tmp/before HEAD~3`) the
two trees are run alternately, round after round, and the median of each is
reported, so that a busy spell of a shared machine hits both alike.

    python benchmarks/end_to_end.py [--against /tmp/before/src] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"


def timed_run(src: Path, steps: int, flags: list[str]) -> float:
    """Wall seconds of `longmem train --steps N` with `src` first on the path."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=str(src))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "longmem", "train", "--run-dir", f"{tmp}/run", "--steps",
                        str(steps), *flags], env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, help="the src folder of another checkout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--short", type=int, default=30, help="steps of the short run")
    parser.add_argument("--long", type=int, default=130, help="steps of the long run")
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args()
    flags = ["--hidden", str(args.hidden), "--checkpoint-every-steps", "100", "--eval-every", "100",
             "--sample-every", "100"]
    trees = {"this tree": HERE} | ({"against": args.against} if args.against else {})
    chars = (args.long - args.short) * 128 * 64
    speeds = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, src in trees.items():
            seconds = timed_run(src, args.long, flags) - timed_run(src, args.short, flags)
            speeds[name].append(chars / seconds)
    print(f"longmem train end to end, defaults (H={args.hidden}, B=128, T=64, dropout 0.3), "
          f"steps {args.short}..{args.long}; training chars/s, median of {args.rounds}")
    for name, values in speeds.items():
        print(f"{name:>10}: {statistics.median(values):9.0f}   (rounds: {', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
