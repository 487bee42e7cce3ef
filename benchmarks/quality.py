"""Held-out quality of the default model on Huckleberry Finn after a fixed time.

Trains `longmem train` with default settings (plus any extra flags given after
`--`) for --minutes on the book, then evaluates the test split and prints bits
per character and top-1 accuracy (of the last step's parameters and of those of
the best validation, i.e. early stopping) beside two peers computed on the same split:
the unigram entropy of the training text and xz (LZMA, preset 9e) given the
training text first, which is what a strong general-purpose compressor makes
of the same held-out characters.

    python benchmarks/quality.py --minutes 20 [--run-dir DIR] [-- --lr 0.003]

Uses ../shared/data/huck_fin.txt beside the checkout when it exists (the book
as the original experiments used it), otherwise `--corpus huck-finn`.
"""

from __future__ import annotations

import argparse
import json
import lzma
import math
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

BOOK = Path(__file__).resolve().parents[2] / "shared" / "data" / "huck_fin.txt"


def longmem(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "longmem", *args], stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"longmem {args[0]} failed with exit code {done.returncode}")
    return done.stdout


def peers(text: str, split: dict) -> dict[str, float]:
    train = text[: split["train"][1]]
    test = text[split["test"][0] : split["test"][1]]
    counts = Counter(train)
    n = len(train)
    unigram = -sum(c / n * math.log2(c / n) for c in counts.values())

    def xz_bits(s: str) -> int:
        return 8 * len(lzma.compress(s.encode(), preset=9 | lzma.PRESET_EXTREME))

    xz = (xz_bits(train + test) - xz_bits(train)) / len(test)
    return {"unigram entropy": unigram, "xz given the training text": xz}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--run-dir", help="keep the run here (default: a temporary directory)")
    parser.add_argument("extra", nargs="*", help="more `longmem train` flags, after --")
    args = parser.parse_args()
    source = ["--text", str(BOOK)] if BOOK.exists() else ["--corpus", "huck-finn"]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run_dir or Path(tmp) / "run")
        longmem("train", *source, "--minutes", str(args.minutes), "--run-dir", str(run_dir), *args.extra)
        result = json.loads(longmem("eval", str(run_dir), "--json"))
        best = json.loads(longmem("eval", str(run_dir), "--json", "--checkpoint", "best"))
        info = json.loads((run_dir / "config.json").read_text())
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        text = BOOK.read_text() if BOOK.exists() else None
    last = metrics[-1]
    best_val = min(m["val_bpc"] for m in metrics if "val_bpc" in m)
    print(f"Huckleberry Finn, {args.minutes:g} minutes, flags: {' '.join(args.extra) or '(defaults)'}")
    print(f"trained {last['step']} steps, {last['epoch']} passes, {last['chars_per_s']:.0f} chars/s")
    print(f"{'':28s} {'bpc':>6s} {'accuracy':>9s}")
    print(f"{'longmem, test split, last':28s} {result['bpc']:6.3f} {100 * result['accuracy']:8.1f}%")
    label = f"  best validation (step {best['step']})"
    print(f"{label:28s} {best['bpc']:6.3f} {100 * best['accuracy']:8.1f}%  (validation {best_val:.3f})")
    if text is not None:
        for name, bpc in peers(text, info["split"]).items():
            print(f"{name:28s} {bpc:6.3f}")
    print("target: bpc <= 1.90 and accuracy >= 61% after 20 minutes on 2 CPU cores")


if __name__ == "__main__":
    main()
