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

import errno
import json
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longmem import checkpoint, dropout, lock
from longmem.config import FORMAT, RunConfig
from longmem.corpus import Corpus, Vocab, for_run, parts
from longmem.errors import UserError
from longmem.files import atomic_write, sha256, versions
from longmem.nets import NETS

_NOT_STORED: set[Path] = set()  # runs another process writes, said once


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

    def lock(self) -> None:
        """Become the run's one writer for the rest of this process (lock.py), making the
        folder if it is new; a run another process writes is refused in one line."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock.hold(self.path)

    def may_store(self) -> bool:
        """Whether this process may store results in the run: it writes the run, or can
        become its writer now; if another process writes it, say so once and store nothing."""
        if lock.held(self.path):
            return True
        try:
            lock.hold(self.path)
        except lock.Busy as e:
            why = str(e)
        except OSError as e:  # a read-only run (a file system mounted so, or no permission)
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            why = f"{self.path} cannot be written ({e.strerror})"
        else:
            return True
        if self.path.resolve() not in _NOT_STORED:
            print(f"longmem: warning: {why}; results are not stored in it", file=sys.stderr)
            _NOT_STORED.add(self.path.resolve())
        return False

    def claim(self, restart_unfinished: bool = False) -> None:
        """Make sure a new run may be written here, become its one writer, or refuse in
        one line, changing nothing.

        The folder must be new or empty. A folder that holds a run is refused,
        except, with `restart_unfinished`, a training run that never reached
        its first checkpoint (and that no process writes now): nothing of it can
        be resumed, so its own files go and it starts again with the new settings.
        """
        self._refuse(restart_unfinished)  # before the lock, so that a refused folder is left as it was
        self.lock()
        self._refuse(restart_unfinished)  # again, as the one writer
        if self.exists():
            self.clear()
            print(f"longmem: {self.path} holds a run that stopped before its first checkpoint; "
                  "starting it again with the new settings", file=sys.stderr)

    def _refuse(self, restart_unfinished: bool) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path} is a file, not a run directory; choose another --run-dir")
        if self.exists():
            info = self.read_config()
            if checkpoint.checkpoints(self.checkpoints):
                raise UserError(
                    f"{self.path} already holds a run; continue it with --resume {self.path} "
                    "or choose another --run-dir"
                )
            # Caesar runs made before 496e508 said "experiment" in config.json: never restarted.
            if not restart_unfinished or "experiment" in info:
                raise UserError(f"{self.path} already holds a run; choose another --run-dir")
        elif self.path.is_dir() and any(p.name != lock.NAME for p in self.path.iterdir()):
            raise UserError(
                f"{self.path} is not empty and holds no longmem run; choose a new or empty --run-dir"
            )

    def clear(self) -> None:
        """Remove the files a run writes (and nothing else)."""
        for path in (self.config, self.vocab, self.metrics, self.samples):
            path.unlink(missing_ok=True)
        for pattern in ("*.bin", "*.json"):
            for path in self.tracks.glob(pattern):
                path.unlink()
        for path in self.checkpoints.glob(".ckpt-*.tmp"):
            path.unlink()

    def create(self, cfg: RunConfig, vocab: Vocab, corpus: str, split: dict, text_sha256: str,
               source: dict | None = None) -> None:
        info = {
            "format": FORMAT,
            "corpus": corpus,
            "text_sha256": text_sha256,
            **({"source": source} if source else {}),
            "split": split,
            "versions": versions(),
            "config": cfg.to_dict(),
        }
        self.write_config(info)
        atomic_write(self.vocab, (json.dumps(vocab.chars) + "\n").encode())
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def cached(self, kind: str, key: dict, compute) -> dict:
        """A result stored in the folder `kind` of the run for the settings `key`
        (computed by `compute() -> dict` and stored the first time)."""
        name = "-".join(f"{k}{v}" for k, v in key.items())
        path = self.path / kind / f"{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.json"
        try:
            stored = json.loads(path.read_text())
            if isinstance(stored, dict) and all(stored.get(k) == v for k, v in key.items()):
                return stored
        except (OSError, ValueError):
            pass
        result = key | compute()
        if self.may_store():
            atomic_write(path, (json.dumps(result, indent=1) + "\n").encode())
        return result

    def stored(self, kind: str, match: dict) -> list[dict]:
        """The results stored by `cached` in the folder `kind` whose settings include `match`."""
        found = []
        for path in sorted((self.path / kind).glob("*.json")):
            try:
                stored = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(stored, dict) and all(stored.get(k) == v for k, v in match.items()):
                found.append(stored)
        return found

    def metric_records(self) -> list[dict]:
        """The records of metrics.jsonl, oldest first: the one reader of that file. A torn
        last line (a run writing it) is skipped silently; a damaged line elsewhere (not a
        JSON object of numbers with a whole-number step) is skipped with one warning that
        names the file and the line."""
        text = self.metrics.read_text(errors="replace") if self.metrics.exists() else ""
        lines = text.split("\n")
        records, damaged = [], []
        for number, line in enumerate(lines, 1):
            if not line or number == len(lines):
                continue  # an empty line, or what follows the last newline: a line being written
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if _metric_record(record):
                records.append(record)
            else:
                damaged.append(number)
        if damaged:
            more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
            print(f"longmem: warning: {self.metrics}: line {damaged[0]}{more} is damaged (not a record of "
                  "numbers); skipped", file=sys.stderr)
        return records

    def write_config(self, info: dict) -> None:
        atomic_write(self.config, (json.dumps(info, indent=2) + "\n").encode())

    def read_vocab(self) -> str:
        try:
            chars = json.loads(self.vocab.read_text())
        except (OSError, ValueError):
            raise UserError(f"{self.vocab}: missing or damaged") from None
        if not isinstance(chars, str) or len(set(chars)) != len(chars) or not chars:
            raise UserError(f"{self.vocab}: damaged (not the run's symbol table, a string of different "
                            "characters)")
        return chars

    def load_text(self, info: dict, cfg) -> Corpus:
        """The run's training text (its RunConfig names it), refused if it has changed."""
        python = info.get("source", {}).get("python")
        if python and python != platform.python_version():
            raise UserError(f"{self.path} trained on the standard library of Python {python}; this is Python "
                            f"{platform.python_version()}, whose library is another text: use Python {python}")
        corpus = for_run(cfg.data, cfg.train.seed)
        # The digest is of the codes, so the vocabulary must match too.
        if sha256(corpus.codes.tobytes()) != info.get("text_sha256") or corpus.vocab.chars != self.read_vocab():
            raise UserError(f"the text of {self.path} has changed since it was trained; use --text PATH")
        return corpus

    def splits(self, info: dict, codes: np.ndarray) -> dict[str, np.ndarray]:
        """The train, test and validation parts of the codes, as recorded in config.json."""
        return parts(codes, info["split"])

    def read_config(self) -> dict:
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such run directory")
        if not self.config.is_file():
            raise UserError(f"{self.path}: not a longmem run directory (no config.json)")
        try:
            info = json.loads(self.config.read_text())
        except ValueError:
            raise UserError(f"{self.config}: damaged (not JSON)") from None
        if not isinstance(info, dict):
            raise UserError(f"{self.config}: damaged (not a JSON object)")
        if info.get("format", FORMAT) != FORMAT:
            raise UserError(
                f"{self.config}: configuration format {info['format']} is not the format {FORMAT} "
                "this longmem reads"
            )
        return info

    def run_config(self, info: dict) -> RunConfig:
        """The training configuration recorded in config.json."""
        return RunConfig.from_dict(info.get("config", {}), str(self.config), info.get("format", FORMAT))


def _metric_record(record) -> bool:
    """Whether a parsed line of metrics.jsonl is a record: numbers by name, the step a whole one."""
    if not isinstance(record, dict) or type(record.get("step")) is not int:
        return False
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in record.values())


@dataclass
class Snapshot:
    """What a checkpoint holds, split into its parts."""

    config: RunConfig
    vocab: Vocab
    params: dict[str, np.ndarray]  # the parameters asked for (the last, or the best)
    optim: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    meta: dict
    path: Path
    best: dict[str, np.ndarray]  # the parameters of the best evaluation (none before one)
    step: int  # the training step that `params` are from

    def model(self):
        """The run's ModelConfig as it trained at this checkpoint: the drop probabilities left
        to AUTO are those chosen then."""
        return dropout.resolved(self.config.model, self.meta["state"].get("auto_level") or 0)


def check_arrays(path: Path, kind: str, expected: dict, found: dict) -> None:
    """A checkpoint's arrays of one kind must be exactly those the model of its
    configuration has, in their shapes (an older longmem's run of a model since changed
    has others): one sentence, not a KeyError deep in a graph."""
    for name in sorted(set(expected) | set(found)):
        if name not in found or name not in expected or found[name].shape != expected[name].shape:
            raise checkpoint.CheckpointError(
                f"{path}: {kind} {name!r} does not match the model of its configuration "
                f"(checkpoint format {checkpoint.FORMAT}: was it written by another version of longmem?)"
            )


def load(run: RunDir, best: bool = False) -> Snapshot:
    """The newest valid checkpoint of a run; with `best`, its parameters are those of the
    run's best evaluation (the lowest held-out bpc) instead of the last step's."""
    run.read_config()
    arrays, meta, path = checkpoint.load_latest(run.checkpoints)
    parts = {"param": {}, "optim": {}, "state": {}, "best": {}}
    for name, value in arrays.items():
        kind, _, key = name.partition("/")
        if kind not in parts or not key:
            raise checkpoint.CheckpointError(
                f"{path}: unknown array {name!r} (checkpoint format {checkpoint.FORMAT}: was it "
                "written by another version of longmem?)"
            )
        parts[kind][key] = value
    if not {"config", "vocab", "state"} <= set(meta):
        missing = sorted({"config", "vocab", "state"} - set(meta))[0]
        raise checkpoint.CheckpointError(f"{path}: no {missing!r} in the checkpoint's metadata")
    config = RunConfig.from_dict(meta["config"], str(path))
    params, step = parts["param"], meta["state"].get("step", 0)
    check_arrays(path, "parameter", NETS[config.model.model].init_params(config.model, len(meta["vocab"]),
                                                                          np.random.default_rng(0)), params)
    if best:
        if not parts["best"]:
            raise UserError(f"{run.path} has no best checkpoint: it has not been evaluated on "
                            "held-out text yet, or an older longmem made it")
        params, step = parts["best"], meta["state"]["best_step"]
    return Snapshot(
        config,
        Vocab(meta["vocab"]),
        params,
        parts["optim"],
        parts["state"],
        meta,
        path,
        parts["best"],
        step,
    )
