"""The Part 2 models side by side on equal terms: same text and split, same
wall-clock minutes each, parameter counts matched to the plain LSTM's (within
10%), then `longmem compare` over them.

    python benchmarks/models.py --text ../shared/data/huck_fin.txt --minutes 20 --out runs/models

Runs, each in OUT/<name>: `lstm` (the default 1 x 256), `hmlstm` (3 layers),
`model2` (A of H cells, B of 2H), `model1-stage1` (a plain one-layer LSTM, the
base, trained for half the minutes) and `model1` (stages 2 and 3 on it, for
the other half, so that model1's total equals one model's time). The sizes
are chosen by counting parameters, not by hand. Prints the table; the
figures are in OUT/comparison.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from longmem.config import ModelConfig
from longmem.corpus import load
from longmem.nets import NETS


def count(model: str, vocab: int, **sizes) -> int:
    cfg = ModelConfig(model=model, **sizes)
    return sum(a.size for a in NETS[model].init_params(cfg, vocab, np.random.default_rng(0)).values())


def matched(model: str, vocab: int, target: int, **fixed) -> int:
    """The --hidden whose parameter count is nearest to `target`."""
    return min(range(16, 513, 4), key=lambda h: abs(count(model, vocab, hidden=h, **fixed) - target))


def train(out: Path, name: str, text: str, minutes: float, *flags) -> Path:
    run = out / name
    if not (run / "config.json").exists():
        subprocess.run([sys.executable, "-m", "longmem", "train", "--text", text, "--minutes", str(minutes),
                        "--run-dir", str(run), *map(str, flags)], check=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", required=True, help="the text (e.g. ../shared/data/huck_fin.txt)")
    parser.add_argument("--minutes", type=float, default=20.0, help="wall minutes per model")
    parser.add_argument("--out", type=Path, default=Path("runs/models"))
    parser.add_argument("--seq", type=int, default=64, help="window length of every run")
    args = parser.parse_args()
    vocab = len(load("python-docs", args.text).vocab)
    target = count("lstm", vocab, hidden=256)
    h_hm = matched("hmlstm", vocab, target, layers=3)
    h_m2 = matched("model2", vocab, target)
    common = ["--seq", args.seq]
    runs = [train(args.out, "lstm", args.text, args.minutes, *common),
            train(args.out, "hmlstm", args.text, args.minutes, "--model", "hmlstm", "--layers", 3,
                  "--hidden", h_hm, *common),
            train(args.out, "model2", args.text, args.minutes, "--model", "model2", "--hidden", h_m2, *common)]
    base = train(args.out, "model1-stage1", args.text, args.minutes / 2, "--hidden", 200, *common)
    base_params = count("lstm", vocab, hidden=200)
    h_m1 = matched("model1", vocab, target + base_params, base_hidden=200)
    runs.append(train(args.out, "model1", args.text, args.minutes / 2, "--model", "model1", "--base", base,
                      "--hidden", h_m1, "--stage2-steps", 500, *common))
    print(f"parameters matched to lstm 1 x 256 ({target:,}): hmlstm 3 x {h_hm}, model2 {h_m2} + {2 * h_m2}, "
          f"model1 stages 2 and 3 of {2 * h_m1} and {h_m1} on a base of 200 (its count includes the base)")
    subprocess.run([sys.executable, "-m", "longmem", "compare", *map(str, runs), "--out",
                    str(args.out / "comparison")], check=True)


if __name__ == "__main__":
    main()
