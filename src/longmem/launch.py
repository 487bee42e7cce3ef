"""Starting a run, and resuming one exactly where it stopped."""

from __future__ import annotations

import sys

import numpy as np

from longmem import checkpoint, engine, track
from longmem.batches import Streams
from longmem.config import RunConfig, validate
from longmem.corpus import Vocab, split
from longmem.corpus import load as load_corpus
from longmem.errors import UserError
from longmem.files import sha256
from longmem.nets import NETS
from longmem.rundir import RunDir
from longmem.rundir import load as load_snapshot
from longmem.train import Loop, Trainer, TrainState, new_state

# What may change when a run is resumed; anything else would make it another run.
RESUMABLE = {
    "optim": None,  # every optimizer field
    "train": {"steps", "minutes", "log_every", "eval_every", "eval_chars", "sample_every",
              "sample_length", "checkpoint_every_steps", "checkpoint_every_seconds", "keep",
              "track", "track_every", "backend", "device"},
}


def start(cfg: RunConfig, run_dir: RunDir) -> TrainState:
    """Begin a new run in `run_dir` (which must not hold one already)."""
    if run_dir.exists() or checkpoint.checkpoints(run_dir.checkpoints):
        raise UserError(
            f"{run_dir.path} already holds a run; continue it with --resume {run_dir.path} "
            "or choose another --run-dir"
        )
    validate(cfg)
    mode = engine.configure(cfg.train.backend, cfg.train.device)
    corpus = load_corpus(cfg.data.corpus, cfg.data.text)
    bounds = split(len(corpus.codes), cfg.data.val_fraction, cfg.data.test_fraction)
    splits = {k: corpus.codes[a:b] for k, (a, b) in bounds.items()}
    Streams(splits["train"], cfg.train.batch, cfg.train.seq)  # fail early if too short
    cfg.model.vocab_size = len(corpus.vocab)
    run_dir.create(cfg, corpus.vocab, corpus.name, bounds, sha256(corpus.codes.tobytes()))
    print(f"longmem: training on {corpus.name} in {run_dir.path}", file=sys.stderr)
    return _from_scratch(run_dir, cfg, corpus.vocab, splits, mode)


def _from_scratch(run_dir, cfg, vocab, splits, mode) -> TrainState:
    params = NETS[cfg.model.model].init_params(cfg.model, len(vocab), np.random.default_rng(cfg.train.seed))
    trainer = Trainer(cfg, params, mode)
    h = np.zeros((cfg.model.layers, cfg.train.batch, cfg.model.hidden), np.float32)
    return Loop(run_dir, cfg, vocab, splits, trainer).run(new_state(cfg), h, h.copy())


def resume(run_dir: RunDir, changes: dict[str, dict]) -> TrainState:
    """Continue the run in `run_dir` from its newest valid checkpoint.

    `changes` maps a config section to the fields given on the command line.
    A run stopped before its first checkpoint starts again from step 0.
    """
    info = run_dir.read_config()
    for stale in run_dir.checkpoints.glob(".ckpt-*.tmp"):  # a write cut short by a kill
        stale.unlink()
    if not checkpoint.checkpoints(run_dir.checkpoints):
        cfg, vocab, state = RunConfig.from_dict(info["config"]), Vocab(run_dir.read_vocab()), None
    else:
        snap = load_snapshot(run_dir)
        cfg, vocab, state = snap.config, snap.vocab, TrainState.from_meta(snap.meta["state"])
        for newer in checkpoint.checkpoints(run_dir.checkpoints):
            if newer.name > snap.path.name:  # damaged, and newer than the one resumed
                newer.rename(newer.with_suffix(".damaged"))
    applied = _apply_changes(cfg, changes)
    validate(cfg)
    mode = engine.configure(cfg.train.backend, cfg.train.device)
    corpus = run_dir.load_text(info, cfg.data)
    splits = run_dir.splits(info, corpus.codes)
    step = state.step if state else 0
    _truncate(run_dir.metrics, state.metrics_bytes if state else 0)
    _truncate(run_dir.samples, state.samples_bytes if state else 0)
    track.Writer(run_dir.tracks, cfg.train.track_max).truncate(state.track_bytes if state else {})
    if applied:
        info.setdefault("resumes", []).append({"step": step, "changes": applied})
        info["config"] = cfg.to_dict()
        run_dir.write_config(info)
    if state is None:
        print(f"longmem: {run_dir.path} has no checkpoint yet; starting it again", file=sys.stderr)
        return _from_scratch(run_dir, cfg, vocab, splits, mode)
    trainer = Trainer(cfg, snap.params, mode)
    trainer.restore_optim(snap.optim)
    print(f"longmem: resuming {run_dir.path} at step {step} from {snap.path.name}", file=sys.stderr)
    return Loop(run_dir, cfg, vocab, splits, trainer).run(state, snap.state["h"], snap.state["c"])


def _apply_changes(cfg: RunConfig, changes: dict[str, dict]) -> dict:
    """Apply what the command line changed; refuse what would make another run."""
    applied = {}
    for section, fields in changes.items():
        target = getattr(cfg, section)
        for name, value in fields.items():
            if getattr(target, name) == value:
                continue
            allowed = section in RESUMABLE and (RESUMABLE[section] is None or name in RESUMABLE[section])
            if not allowed:
                flag = "--" + name.replace("_", "-")
                raise UserError(
                    f"cannot change {flag} when resuming (the run has {flag} "
                    f"{getattr(target, name)}); start a new run instead"
                )
            applied[f"{section}.{name}"] = [getattr(target, name), value]
            setattr(target, name, value)
    return applied


def _truncate(path, size: int) -> None:
    """Cut a log back to what it held at the checkpoint, so no step appears twice."""
    if path.exists():
        with path.open("r+b") as f:
            f.truncate(size)
