"""The first experiment: a logistic net learns the Caesar cipher a -> b, ..., z -> a.

The net (`nets/caesar.py`) is trained by the one training loop, so a Caesar
run has what every run has: checkpoints, exact resume (`longmem train
--resume`), the non-finite check, tracked values (by default the hidden and
output biases, at every step) and plots. Its "text" is the first `letters`
ASCII letters of a text, read `batch` consecutive letters per step (one
stream, windows of `batch`); its loss is the squared error. After each pass
the loop scores the letters of the text (`train_accuracy` in metrics.jsonl).
`compare` trains the same net with each optimizer from the same seed and
draws the original's side-by-side figures.
"""

from __future__ import annotations

import dataclasses
import string
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longmem import corpus, launch, plot
from longmem.config import CaesarConfig, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig, validate_caesar
from longmem.errors import UserError
from longmem.nets import caesar as net
from longmem.rundir import RunDir
from longmem.rundir import load as load_snapshot

DEFAULT_TRACKS = ("hidden.b", "out.b")
OPTIMIZERS = ("sgd", "rmsprop", "rmsprop-global")
SAME_LETTER = 0.8  # a net giving one answer for this share of the text ignores its input
SATURATED = 0.9  # ... as does one this share of whose outputs are stuck at 0 or 1


def letters(cfg: CaesarConfig) -> np.ndarray:
    """The experiment's letters as codes 0..25."""
    return corpus.load("python-docs", cfg.text, cfg.letters).codes


def first_line(cfg: CaesarConfig) -> str:
    """The text's first line that has letters (to show the cipher on)."""
    chunks = corpus.file_chunks(cfg.text) if cfg.text else corpus.string_chunks(corpus.python_docs())
    for chunk in chunks():
        for line in chunk.splitlines():
            if any(ch.isascii() and ch.isalpha() for ch in line):
                return line[:80]
    return ""


def run_config(cfg: CaesarConfig, n_letters: int) -> RunConfig:
    """The training run of the experiment: one stream of letters, `batch` per step,
    `passes` passes, evaluated on the letters after every pass."""
    windows = (n_letters - 1) // cfg.batch
    return RunConfig(
        model=ModelConfig(model="caesar", hidden=cfg.hidden, init_scale=cfg.init_scale, dropout=0.0,
                          weight_drop=0.0),
        # The original's update rules as they were: a constant rate, no clipping.
        optim=OptimConfig(optimizer=cfg.optimizer, lr=cfg.lr, rho=cfg.rho, eps=cfg.eps, clip=0.0, lr_plateau=1.0),
        data=DataConfig(text=cfg.text, letters=cfg.letters, val_fraction=0.0, test_fraction=0.0),
        train=TrainConfig(
            batch=1, seq=cfg.batch, steps=cfg.passes * windows, seed=cfg.seed, log_every=windows,
            eval_every=windows, eval_chars=n_letters, eval_split="train", sample_every=0,
            checkpoint_every_steps=windows,
            track=[*DEFAULT_TRACKS, *(cfg.track or [])], track_every=cfg.track_every,
            track_max=cfg.track_max, backend=cfg.backend,
        ),
    )


@dataclass
class Result:
    accuracy: float  # over the letters of the text
    outputs: str  # the letter output for each input a..z
    saturated: float  # fraction of outputs (over all inputs) within 0.01 of 0 or 1
    history: list  # per pass: {"pass", "step", "loss", "accuracy"}


def train(cfg: CaesarConfig, run: RunDir) -> Result:
    """Train one net in a new run directory; the result read from its last checkpoint."""
    cfg = validate_caesar(dataclasses.replace(cfg))
    codes = letters(cfg)
    if len(codes) <= cfg.batch:
        raise UserError(f"the text has {len(codes)} letters; --batch {cfg.batch} needs more than that many")
    launch.start(run_config(cfg, len(codes)), run)
    out = net.outputs(load_snapshot(run).params)
    answers = out.argmax(axis=1)
    correct = answers == (np.arange(net.LETTERS) + 1) % net.LETTERS
    return Result(
        accuracy=float(correct[codes].mean()),
        outputs="".join(string.ascii_lowercase[i] for i in answers),
        saturated=float((np.minimum(out, 1 - out) < 0.01).mean()),
        history=history(run),
    )


def history(run: RunDir) -> list[dict]:
    """Per pass: the mean loss over the pass and the accuracy on the letters."""
    rows = run.metric_records()
    return [{"pass": r["epoch"], "step": r["step"], "loss": r["loss"], "accuracy": r["train_accuracy"]}
            for r in rows if "train_accuracy" in r]


def dominant(outputs: str, codes: np.ndarray) -> tuple[str, float]:
    """The net's most common answer over the text, and the share of letters that get it."""
    answers = np.array([ord(ch) - ord("a") for ch in outputs])[codes]
    counts = np.bincount(answers, minlength=26)
    return string.ascii_lowercase[counts.argmax()], float(counts.max() / len(codes))


def decode(line: str, outputs: str) -> str:
    """The line as the net enciphers it: each letter replaced by the net's answer."""
    table = {a: outputs[i] for i, a in enumerate(string.ascii_lowercase)}
    return "".join(table.get(ch, ch) for ch in line.lower())


def report(result: Result, cfg: CaesarConfig) -> str:
    cfg = validate_caesar(dataclasses.replace(cfg))
    line = first_line(cfg)
    lines = [
        f"accuracy {100 * result.accuracy:.1f}% on the text after {cfg.passes} passes "
        f"({cfg.optimizer}, batch {cfg.batch}, lr {cfg.lr:g})",
        f"input   {line.lower()}",
        f"output  {decode(line, result.outputs)}",
        f"cipher  {decode(line, string.ascii_lowercase[1:] + 'a')}",
    ]
    letter, share = dominant(result.outputs, letters(cfg))
    if share >= SAME_LETTER or (result.saturated >= SATURATED and result.accuracy < 0.5):
        lines.append(
            f"the net answers {letter!r} for {100 * share:.0f}% of the letters and "
            f"{len(set(result.outputs))} letters in all, whatever they are: "
            f"{100 * result.saturated:.0f}% of its outputs are stuck at 0 or 1, where the logistic "
            "gradient vanishes (the original's bug); try a smaller --init-scale"
        )
    return "\n".join(lines)


def compare(cfg: CaesarConfig, run: RunDir, plots: Path, units: int = 6) -> list[Path]:
    """Train with SGD and both RMSprops from the same seed; draw their biases and accuracy."""
    run.claim()
    results = {}
    for name in OPTIMIZERS:
        results[name] = train(dataclasses.replace(cfg, optimizer=name), RunDir(run.path / name))
        print(f"{name:15s} accuracy {100 * results[name].accuracy:5.1f}%", file=sys.stderr)
    chosen = list(np.linspace(0, cfg.hidden - 1, units).round().astype(int))
    panels = []
    for name in OPTIMIZERS:
        biases = plot.series(RunDir(run.path / name), "hidden.b")
        panels.append(plot.Panel(name, "hidden bias", [plot.Curve("", biases.steps, biases.values[:, chosen], chosen)]))
    acc = [
        plot.Curve(name, np.array([h["pass"] for h in r.history]), np.array([[h["accuracy"] for h in r.history]]).T)
        for name, r in results.items()
    ]
    return [
        plot.figure(panels, plots / "caesar-hidden-biases.png", "selected hidden biases", share_y=True),
        plot.figure([plot.Panel("accuracy on the text", "accuracy", acc, xlabel="pass")],
                    plots / "caesar-accuracy.png"),
    ]
