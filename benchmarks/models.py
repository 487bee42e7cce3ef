"""The Part 2 models side by side on equal terms: same text and split, same
wall-clock minutes each, parameter counts matched to the plain LSTM's (within
10%), then `longmem compare` over them.

    python benchmarks/models.py --text ../shared/data/huck_fin.txt --minutes 20 --out runs/models

Runs, each in OUT/<name>: `lstm` (the default 1 x 256), `hmlstm` (3 layers),
`model2` (A of H cells, B of 2H), `model1-stage1` (a plain one-layer LSTM, the
base, trained for half the minutes) and `model1` (stages 2 and 3 on it, for
the other half, so that model1's total equals one model's time). The sizes
are chosen by counting parameters, not by hand. The table and figures are in
OUT/comparison.

Then the original's claims, per step: a plain LSTM of stage 3's size trained
for as many steps as stage 3 learned (`lstm-<H>`), and one of model2's A size
for as many steps as model2 took; their validation bpc step by step is in
OUT/per-step.md, and all four side by side in OUT/per-step.

Last, what the window length does to the plain LSTM's memory: `lstm` trained
with each of --seqs on the same number of characters (--seq-chars; steps =
chars / (batch x T), so the budget does not depend on how busy the machine
is), in OUT/seq-<T>, compared in OUT/seq.

A run folder that already holds a run is resumed (a finished one is left as
it is), so the script can be stopped at any moment, started again, and
extended.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from longmem.config import ModelConfig, TrainConfig
from longmem.corpus import load
from longmem.nets import NETS
from longmem.rundir import RunDir
from longmem.study.compare import validation


def count(model: str, vocab: int, **sizes) -> int:
    cfg = ModelConfig(model=model, **sizes)
    return sum(a.size for a in NETS[model].init_params(cfg, vocab, np.random.default_rng(0)).values())


def matched(model: str, vocab: int, target: int, **fixed) -> int:
    """The --hidden whose parameter count is nearest to `target`."""
    return min(range(16, 513, 4), key=lambda h: abs(count(model, vocab, hidden=h, **fixed) - target))


def longmem(*argv, capture: bool = True) -> str | None:
    """Run a longmem command; its output (when captured), or an error if it fails."""
    done = subprocess.run([sys.executable, "-m", "longmem", *map(str, argv)], check=True, text=True,
                          stdout=subprocess.PIPE if capture else None)
    return done.stdout


def train(out: Path, name: str, source: list, minutes: float | None, *flags) -> Path:
    """Train OUT/name on `source` (["--text", PATH] or ["--corpus", NAME]) for `minutes`, or as
    `flags` say; resume it if it holds an unfinished run."""
    run = out / name
    if (run / "config.json").exists():
        if not json.loads(longmem("inspect", run, "--json"))["finished"]:
            longmem("train", "--resume", run, capture=False)
    else:
        limit = ["--minutes", minutes] if minutes is not None else []
        longmem("train", *source, *limit, "--run-dir", run, *flags, capture=False)
    return run


def steps_of(run: Path) -> int:
    return json.loads(longmem("inspect", run, "--json"))["step"]


def boundaries(run: Path) -> str:
    """How often each HM-LSTM layer fires on the test split, overall and by the class of
    the character just read (a Markdown table)."""
    from longmem.predict import heldout_codes, open_run
    from longmem.study.report import CLASSES, classes

    snap, predictor = open_run(RunDir(run))
    codes, _ = heldout_codes(RunDir(run), snap)
    names = [f"hm.{layer}.z" for layer in range(snap.config.model.layers - 1)]
    fired = predictor.trace(codes, snap.config.train.seq, names)
    which = classes(snap.vocab.decode(codes))  # class of character i + 1
    lines = ["| character just read | characters | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for k, name in [(None, "all"), *enumerate(CLASSES)]:
        chosen = np.ones(len(codes) - 1, bool) if k is None else which == k
        if chosen.any():
            rates = " | ".join(f"{fired[n][1:][chosen].mean():.1%}" for n in names)
            lines.append(f"| {name} | {chosen.sum():,} | {rates} |")
    return "\n".join(lines) + "\n"


def per_step(model: Path, peer: Path, offset: int, rows: int = 10) -> str:
    """A Markdown table of validation bpc at equal steps of learning: `model` at
    step offset + s against `peer` at step s."""
    a, b = validation(RunDir(model)), validation(RunDir(peer))
    at_a = dict(zip(a["steps"].tolist(), a["bpc"].tolist()))
    common = [(s, at_a[s + offset], bpc) for s, bpc in zip(b["steps"].tolist(), b["bpc"].tolist())
              if s + offset in at_a]
    shown = common[:: max(1, len(common) // rows)] + common[-1:] if common else []
    lines = [f"| steps learned | {model.name} | {peer.name} | difference |", "|---|---|---|---|"]
    lines += [f"| {s:,} | {x:.3f} | {y:.3f} | {x - y:+.3f} |" for s, x, y in dict.fromkeys(shown)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", required=True, help="the text (e.g. ../shared/data/huck_fin.txt)")
    parser.add_argument("--minutes", type=float, default=20.0, help="wall minutes per model")
    parser.add_argument("--out", type=Path, default=Path("runs/models"))
    parser.add_argument("--seq", type=int, default=64, help="window length of every run")
    parser.add_argument("--stage2-steps", type=int, default=500, help="model1: steps before stage 3 learns")
    parser.add_argument("--seqs", type=int, nargs="*", default=[32, 64, 128, 256],
                        help="window lengths for the plain LSTM's memory study (none: skip it)")
    parser.add_argument("--seq-chars", type=int, default=16_384_000,
                        help="characters each window length trains on (the default run's 2000 steps of 128 x 64)")
    args = parser.parse_args()
    vocab = len(load("python-docs", args.text).vocab)
    target = count("lstm", vocab, hidden=256)
    h_hm = matched("hmlstm", vocab, target, layers=3)
    h_m2 = matched("model2", vocab, target)
    common, text = ["--seq", args.seq], ["--text", args.text]
    runs = [train(args.out, "lstm", text, args.minutes, *common),
            train(args.out, "hmlstm", text, args.minutes, "--model", "hmlstm", "--layers", 3,
                  "--hidden", h_hm, *common),
            train(args.out, "model2", text, args.minutes, "--model", "model2", "--hidden", h_m2, *common)]
    base = train(args.out, "model1-stage1", text, args.minutes / 2, "--hidden", 200, *common)
    base_params = count("lstm", vocab, hidden=200)
    h_m1 = matched("model1", vocab, target + base_params, base_hidden=200)
    runs.append(train(args.out, "model1", text, args.minutes / 2, "--model", "model1", "--base", base,
                      "--hidden", h_m1, "--stage2-steps", args.stage2_steps, *common))
    print(f"parameters matched to lstm 1 x 256 ({target:,}): hmlstm 3 x {h_hm}, model2 {h_m2} + {2 * h_m2}, "
          f"model1 stages 2 and 3 of {2 * h_m1} and {h_m1} on a base of 200 (its count includes the base)")
    print(longmem("compare", *runs, "--out", args.out / "comparison"))
    fired = boundaries(runs[1])
    (args.out / "boundaries.md").write_text(fired)
    print(f"how often hmlstm's boundary detectors fire on the test split:\n\n{fired}")

    # The original's claims are per step: stage 3 against a plain LSTM of its size, model2 against one of A's.
    model1, model2 = runs[3], runs[2]
    stage3 = train(args.out, f"lstm-{h_m1}", text, None, "--hidden", h_m1, "--steps",
                   steps_of(model1) - args.stage2_steps, "--eval-every", 100, *common)
    plain_a = train(args.out, f"lstm-{h_m2}", text, None, "--hidden", h_m2, "--steps", steps_of(model2),
                    *common)
    table = (f"model1's stage 3 ({h_m1} cells, learning from step {args.stage2_steps}) against a plain LSTM of "
             f"its size, validation bpc per step of learning:\n\n{per_step(model1, stage3, args.stage2_steps)}\n"
             f"model2 (A of {h_m2} cells) against a plain LSTM of A's size:\n\n{per_step(model2, plain_a, 0)}")
    (args.out / "per-step.md").write_text(table)
    print(table)
    print(longmem("compare", model1, stage3, model2, plain_a, "--out", args.out / "per-step"))

    if args.seqs:
        seq_runs = [train(args.out, f"seq-{n}", text, None, "--seq", n, "--steps",
                          args.seq_chars // (TrainConfig().batch * n))
                    for n in args.seqs]
        print(longmem("compare", *seq_runs, "--out", args.out / "seq"))


if __name__ == "__main__":
    main()
