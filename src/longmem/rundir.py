"""The run directory: everything a run needs to resume, sample, evaluate and plot.

    config.json     resolved configuration, data split, package versions
    vocab.json      the symbol table
    checkpoint/     the newest complete checkpoints
    metrics.jsonl   one JSON object per logged step
    samples.txt     text sampled during training
    tracks/         values recorded inside the network (see track.py)
    plots/          figures written by `longmem plot`
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from longmem import checkpoint
from longmem.config import RunConfig
from longmem.corpus import Corpus, Vocab
from longmem.corpus import load as load_corpus
from longmem.errors import UserError
from longmem.files import atomic_write, sha256


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.vocab = self.path / "vocab.json"
        self.checkpoints = self.path / "checkpoint"
        self.metrics = self.path / "metrics.jsonl"
        self.samples = self.path / "samples.txt"
        self.plots = self.path / "plots"
        self.tracks = self.path / "tracks"

    def exists(self) -> bool:
        return self.config.is_file()

    def create(self, cfg: RunConfig, vocab: Vocab, corpus: str, split: dict, text_sha256: str) -> None:
        info = {
            "corpus": corpus,
            "text_sha256": text_sha256,
            "split": split,
            "versions": versions(),
            "config": cfg.to_dict(),
        }
        self.write_config(info)
        atomic_write(self.vocab, (json.dumps(vocab.chars) + "\n").encode())
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def write_config(self, info: dict) -> None:
        atomic_write(self.config, (json.dumps(info, indent=2) + "\n").encode())

    def read_vocab(self) -> str:
        try:
            return json.loads(self.vocab.read_text())
        except (OSError, ValueError):
            raise UserError(f"{self.vocab}: missing or damaged") from None

    def load_text(self, info: dict, data) -> Corpus:
        """The run's training text (a DataConfig names it), refused if it has changed."""
        corpus = load_corpus(data.corpus, data.text)
        # The digest is of the codes, so the vocabulary must match too.
        if sha256(corpus.codes.tobytes()) != info.get("text_sha256") or corpus.vocab.chars != self.read_vocab():
            raise UserError(f"the text of {self.path} has changed since it was trained; use --text PATH")
        return corpus

    def splits(self, info: dict, codes: np.ndarray) -> dict[str, np.ndarray]:
        """The train, test and validation parts of the codes, as recorded in config.json."""
        return {name: codes[a:b] for name, (a, b) in info["split"].items()}

    def read_config(self) -> dict:
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such run directory")
        if not self.config.is_file():
            raise UserError(f"{self.path}: not a longmem run directory (no config.json)")
        try:
            return json.loads(self.config.read_text())
        except ValueError:
            raise UserError(f"{self.config}: damaged (not JSON)") from None


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("longmem", "pytensor", "jax", "jaxlib", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


@dataclass
class Snapshot:
    """What a checkpoint holds, split into its parts."""

    config: RunConfig
    vocab: Vocab
    params: dict[str, np.ndarray]
    optim: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    meta: dict
    path: Path


def load(run: RunDir) -> Snapshot:
    """The newest valid checkpoint of a run."""
    run.read_config()
    arrays, meta, path = checkpoint.load_latest(run.checkpoints)
    parts = {"param": {}, "optim": {}, "state": {}}
    for name, value in arrays.items():
        kind, _, key = name.partition("/")
        parts[kind][key] = value
    return Snapshot(
        RunConfig.from_dict(meta["config"]),
        Vocab(meta["vocab"]),
        parts["param"],
        parts["optim"],
        parts["state"],
        meta,
        path,
    )
