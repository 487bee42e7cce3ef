"""The first experiment: a logistic net learns the Caesar cipher a -> b, ..., z -> a.

Reads the letters of a text in order, `batch` at a time, records tracked
values (by default the hidden and output biases) while it trains, and writes
per pass the loss and the accuracy over the text to metrics.jsonl.
`compare` trains the same net with each optimizer from the same seed and
draws the original's side-by-side figures.
"""

from __future__ import annotations

import dataclasses
import json
import string
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytensor.tensor as pt

from longmem import engine, optim, plot, track
from longmem.config import FORMAT, CaesarConfig, OptimConfig, validate_caesar
from longmem.corpus import file_chunks, python_docs
from longmem.errors import UserError
from longmem.files import atomic_write
from longmem.nets import caesar as net
from longmem.rundir import RunDir, versions

DEFAULT_TRACKS = ("hidden.b", "out.b")
OPTIMIZERS = ("sgd", "rmsprop", "rmsprop-global")
SAME_LETTER = 0.8  # a net giving one answer for this share of the text ignores its input


def letters_of(cfg: CaesarConfig) -> tuple[np.ndarray, str]:
    """The first `cfg.letters` ASCII letters of the text, lower-cased, as codes 0..25,
    and the text's first line that has letters (to show the cipher on)."""
    chunks = file_chunks(cfg.text)() if cfg.text else iter([python_docs()])
    codes, line, total = [], None, 0
    for chunk in chunks:
        if line is None:
            line = next((s for s in chunk.splitlines() if any(ch.isascii() and ch.isalpha() for ch in s)), None)
        raw = np.frombuffer(chunk.lower().encode("ascii", "ignore"), dtype=np.uint8)
        found = raw[(raw >= ord("a")) & (raw <= ord("z"))] - ord("a")
        codes.append(found[: cfg.letters - total])
        total += len(codes[-1])
        if total >= cfg.letters:
            break
    codes = np.concatenate(codes) if codes else np.zeros(0, np.uint8)
    if len(codes) < cfg.batch:
        raise UserError(f"the text has {len(codes)} letters; --batch {cfg.batch} needs at least that many")
    return codes.astype(np.int32), (line or "")[:80]


@dataclass
class Result:
    accuracy: float  # over the letters of the text
    outputs: str  # the letter output for each input a..z
    saturated: float  # fraction of outputs stuck near 0 or 1
    history: list  # per pass: {"pass", "step", "loss", "accuracy"}


class Net:
    """The net's shared parameters, its compiled step and its predictions."""

    def __init__(self, cfg: CaesarConfig, mode: str):
        self.cfg = cfg
        self.params = engine.share_all(net.init_params(cfg.hidden, cfg.init_scale, np.random.default_rng(cfg.seed)))
        x = pt.tensor("x", dtype="int32", shape=(cfg.batch,))
        lr = pt.scalar("lr", dtype="float32")
        fw = net.forward(self.params, x)
        loss = net.squared_error(fw.out, (x + 1) % net.LETTERS)
        o = OptimConfig(optimizer=cfg.optimizer, rho=cfg.rho, eps=cfg.eps, clip=0.0)
        step = optim.minimize(loss, self.params, lr, o)
        self.tracked = track.names([*track.DEFAULTS, *DEFAULT_TRACKS, *(cfg.track or [])])
        sources = step.sources | {"hidden": fw.hidden.mean(axis=0), "out": fw.out.mean(axis=0)}
        values = track.resolve(self.tracked, sources)
        self.step = engine.compile_function([x, lr], list(values.values()), mode, step.updates, "caesar_step")
        every = pt.arange(net.LETTERS, dtype="int32")
        self.activations = engine.compile_function([], net.forward(self.params, every).out, mode)

    def outputs(self) -> np.ndarray:
        """The letter the net answers (its largest output) for each input letter a..z."""
        return engine.to_numpy(self.activations()).argmax(axis=1)

    def saturated(self) -> float:
        """Fraction of outputs (over all inputs) within 0.01 of 0 or 1, where the
        logistic function's gradient has all but vanished."""
        out = engine.to_numpy(self.activations())
        return float((np.minimum(out, 1 - out) < 0.01).mean())


def train(cfg: CaesarConfig, run: RunDir, mode: str, quiet: bool = False) -> Result:
    """Train one net in a new run directory: config.json, metrics.jsonl and tracks/."""
    validate_caesar(cfg)
    codes, _ = letters_of(cfg)
    the_net = Net(cfg, mode)
    run.claim()
    info = {"format": FORMAT, "experiment": "caesar", "versions": versions(), "config": dataclasses.asdict(cfg)}
    atomic_write(run.config, (json.dumps(info, indent=2) + "\n").encode())
    writer = track.Writer(run.tracks, cfg.track_max)
    lr = np.float32(cfg.learning_rate())
    batches = len(codes) // cfg.batch
    history, step = [], 0
    for p in range(1, cfg.passes + 1):
        losses = []
        for b in range(batches):
            values = dict(zip(the_net.tracked, the_net.step(codes[b * cfg.batch : (b + 1) * cfg.batch], lr)))
            step += 1
            losses.append(float(values["loss"]))
            if step % cfg.track_every == 0:
                writer.append(step, values)
        accuracy = _accuracy(the_net.outputs(), codes)
        record = {"pass": p, "step": step, "loss": float(np.mean(losses)), "accuracy": accuracy}
        history.append(record)
        with run.metrics.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if not quiet:
            print(f"pass {p:4d}  loss {record['loss']:.4f}  accuracy {100 * accuracy:5.1f}%", file=sys.stderr)
    outputs = "".join(string.ascii_lowercase[i] for i in the_net.outputs())
    return Result(history[-1]["accuracy"], outputs, the_net.saturated(), history)


def _accuracy(outputs: np.ndarray, codes: np.ndarray) -> float:
    """Fraction of the text's letters whose output is the next letter of the alphabet."""
    correct = outputs == (np.arange(net.LETTERS) + 1) % net.LETTERS
    return float(correct[codes].mean())


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
    _, line = letters_of(cfg)
    lines = [
        f"accuracy {100 * result.accuracy:.1f}% on the text after {cfg.passes} passes "
        f"({cfg.optimizer}, batch {cfg.batch}, lr {cfg.learning_rate():g})",
        f"input   {line.lower()}",
        f"output  {decode(line, result.outputs)}",
        f"cipher  {decode(line, string.ascii_lowercase[1:] + 'a')}",
    ]
    letter, share = dominant(result.outputs, letters_of(cfg)[0])
    if share >= SAME_LETTER:
        lines.append(
            f"the net answers {letter!r} for {100 * share:.0f}% of the letters, whatever they are: "
            f"{100 * result.saturated:.0f}% of its outputs are stuck at 0 or 1, where the logistic "
            "gradient vanishes (the original's bug); try a smaller --init-scale"
        )
    return "\n".join(lines)


def compare(cfg: CaesarConfig, run: RunDir, mode: str, plots: Path, units: int = 6) -> list[Path]:
    """Train with SGD and both RMSprops from the same seed; draw their biases and accuracy."""
    run.claim()
    results = {}
    for name in OPTIMIZERS:
        sub = dataclasses.replace(cfg, optimizer=name)
        results[name] = train(sub, RunDir(run.path / name), mode, quiet=True)
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
