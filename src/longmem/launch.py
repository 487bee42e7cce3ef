"""Starting a run, and resuming one exactly where it stopped."""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import sys
import tempfile

import numpy as np

from longmem import checkpoint, engine, track
from longmem.config import RunConfig, validate
from longmem.corpus import Vocab, for_run, parts
from longmem.errors import UserError
from longmem.files import cut_log, line_end, machine_memory, readable_size, sha256
from longmem.loop import Loop, TrainState, passes
from longmem.nets import NETS
from longmem.rundir import RunDir, check_arrays
from longmem.rundir import load as load_snapshot
from longmem.step import Trainer, streams_mesh

# What may change when a run is resumed; anything else would make it another run.
# The optimizer may not: its state (moments, running averages) would start from zero.
RESUMABLE = {
    "optim": {"lr", "lr_decay", "lr_decay_every", "lr_plateau", "lr_patience", "rho", "eps", "beta1", "beta2", "clip"},
    "train": {"steps", "minutes", "early_stop", "log_every", "eval_every", "eval_chars", "sample_every",
              "sample_length", "checkpoint_every_steps", "checkpoint_every_seconds", "keep",
              "track", "track_every", "backend", "device", "devices"},
}


def start(cfg: RunConfig, run_dir: RunDir) -> TrainState:
    """Begin a new run in `run_dir` (which must not hold one already)."""
    validate(cfg)
    mode = engine.configure(cfg.train.backend, cfg.train.device, cfg.train.devices)
    corpus = for_run(cfg.data, cfg.train.seed)
    bounds = corpus.bounds(cfg.data.val_fraction, cfg.data.test_fraction)
    splits = parts(corpus.codes, bounds)
    streams = corpus.train_streams(splits["train"], cfg.train.batch, cfg.train.seq)  # fail early if too short
    if cfg.train.backend == "jax":
        streams_mesh(cfg.train)  # and if the streams cannot be split over the devices
    _check_memory(cfg, len(corpus.vocab))
    params = _init_params(cfg, corpus.vocab)  # a model that cannot read this text fails before the folder is made
    run_dir = _own_run_dir(run_dir)
    run_dir.claim(restart_unfinished=True)
    run_dir.create(cfg, corpus.vocab, corpus.name, bounds, sha256(corpus.codes.tobytes()), corpus.source)
    print(f"longmem: training on {corpus.name} in {run_dir.path}", file=sys.stderr)
    _plan(cfg, corpus, splits, params, streams)
    return _from_scratch(run_dir, cfg, corpus, splits, mode, params)


def _plan(cfg: RunConfig, corpus, splits: dict, params: dict, streams) -> None:
    """Say, before compiling, what the run will do: its text and split, its model, its goal."""
    t, m, o = cfg.train, cfg.model, cfg.optim
    net = NETS[m.model]
    held = f"validation {len(splits['val']):,}, test {len(splits['test']):,}"
    train = "endless generated episodes" if streams.ENDLESS else f"{len(splits['train']):,}"
    options = [f"{name.replace('_', ' ')} " + ("auto" if getattr(m, name) is None else f"{getattr(m, name):g}")
               for name in ["dropout", *sorted(getattr(net, "OPTIONS", ()))]]
    goal = f"{t.minutes:g} minutes" if t.steps is None else f"{t.steps:,} steps, {t.chars(t.steps):,} characters"
    if t.steps is not None and t.minutes is not None:
        goal = f"{t.minutes:g} minutes or {goal}, whichever comes first"
    if t.steps is not None and not streams.ENDLESS:
        goal += f" ({passes(t.steps / streams.windows)} over the training split)"
    for line in (f"text: {len(corpus.vocab)} symbols; characters: train {train}, {held}",
                 f"model: {m.model}, {m.layers} x {m.hidden}, {checkpoint.count(params):,} parameters; "
                 + ", ".join(options),
                 f"steps: windows of {t.seq} in {t.batch} streams ({streams.chars_per_window:,} characters "
                 f"a step); goal {goal}",
                 f"learning rate: {o.lr:g}, " + (
                     f"x {o.lr_plateau:g} after {o.lr_patience} evaluation{'s' * (o.lr_patience > 1)} without a "
                     "new best" if o.lr_plateau < 1 else "no plateau schedule"
                     + (" (a probe's default: its loss stalls until it learns)" if cfg.data.is_probe else ""))):
        print(f"longmem: {line}", file=sys.stderr)


def _from_scratch(run_dir, cfg, corpus, splits, mode, params) -> TrainState:
    trainer = Trainer(cfg, params, mode)
    print(f"longmem: compiled in {trainer.compile_seconds:.1f} s", file=sys.stderr)
    carried = trainer.net.init_state(cfg.model, cfg.train.batch)
    return _loop(run_dir, cfg, corpus, splits, trainer).run(TrainState(), carried)


def _loop(run_dir, cfg, corpus, splits, trainer) -> Loop:
    streams = corpus.train_streams(splits["train"], cfg.train.batch, cfg.train.seq)
    return Loop(run_dir, cfg, corpus.vocab, splits, trainer, streams)


def _check_memory(cfg: RunConfig, vocab_size: int) -> None:
    """Refuse, before anything is allocated, a model whose training needs more memory than
    this machine has. Its parameters and state are counted at m, 2m and 3m units (cheap;
    m the smallest width the net accepts) and extended to --hidden: every net's parameter
    count is at most quadratic in it, its state linear. Training holds the parameters about
    five times (their values, gradients, two optimizer moments, the best copy) and, per
    window, what the net keeps of each position for the gradient (its `activations`, by
    default ten values per unit of state) and three values per output."""
    net, t = NETS[cfg.model.model], cfg.train
    for m in (2**k for k in range(12)):
        try:
            sizes = []
            for u in (1, 2, 3):
                small = dataclasses.replace(cfg.model, hidden=u * m)
                params = net.init_params(small, vocab_size, np.random.default_rng(0))
                sizes.append((checkpoint.count(params), checkpoint.count(net.init_state(small, 1))))
            break
        except UserError:
            continue
    else:
        return  # a model that cannot read this text, or no width it takes: _init_params says why
    (p1, s1), (p2, s2), (p3, _) = sizes
    a = (p3 - 2 * p2 + p1) / 2  # params = a u^2 + b u + c through the three counts, u = h / m
    b = p2 - p1 - 3 * a
    h = cfg.model.hidden
    u = h / m
    params = a * u * u + b * u + (p1 - a - b)
    state = s1 + (s2 - s1) * (u - 1)
    kept = net.activations(cfg.model, t.seq) if hasattr(net, "activations") else 10 * state
    window = t.seq * t.batch * (kept + 3 * vocab_size)
    need, have = 4 * (5 * params + window), machine_memory()  # float32
    if need > have:
        raise UserError(f"--hidden {h}: training this model needs about {readable_size(need)} of memory "
                        f"({params:,.0f} parameters), more than this machine's {readable_size(have)}; choose a "
                        "smaller --hidden, --layers, --batch or --seq")


def _init_params(cfg: RunConfig, vocab: Vocab) -> dict[str, np.ndarray]:
    net, rng = NETS[cfg.model.model], np.random.default_rng(cfg.train.seed)
    if getattr(net, "BASE", False) != bool(cfg.model.base):
        raise UserError(f"--base RUN goes with a model that is built on another run (not --model {cfg.model.model})"
                        if cfg.model.base else f"--model {cfg.model.model} is built on another run: give --base RUN")
    if not cfg.model.base:
        return net.init_params(cfg.model, len(vocab), rng)
    return net.init_params(cfg.model, len(vocab), rng, base=_base_params(cfg, vocab))


def _base_params(cfg: RunConfig, vocab: Vocab) -> dict[str, np.ndarray]:
    """The parameters of the --base run, which must have trained on the same text and
    split (so nothing of the held-out text reaches the new run through it)."""
    base = RunDir(cfg.model.base)
    ours = {"text": cfg.data.text, "corpus": cfg.data.corpus, "letters": cfg.data.letters,
            "val": cfg.data.val_fraction, "test": cfg.data.test_fraction}
    snap = load_snapshot(base)
    d = snap.config.data
    theirs = {"text": d.text, "corpus": d.corpus, "letters": d.letters, "val": d.val_fraction,
              "test": d.test_fraction}
    if ours != theirs or snap.vocab.chars != vocab.chars:
        raise UserError(f"--base {base.path} trained on another text or split; the base must be "
                        "trained on the training split of this run's text")
    cfg.model.base_hidden = snap.config.model.hidden
    cfg.model.base_digest = checkpoint.digest(snap.params)
    return snap.params


def resume(run_dir: RunDir, changes: dict[str, dict]) -> TrainState:
    """Continue the run in `run_dir` from its newest valid checkpoint.

    `changes` maps a config section to the fields given on the command line.
    A run stopped before its first checkpoint starts again from step 0. The run
    must have no other writer (process 0 of a run of several takes its lock).
    """
    if engine.alone() and run_dir.path.is_dir():
        run_dir.lock()
    info = run_dir.read_config()
    if not checkpoint.checkpoints(run_dir.checkpoints):
        cfg, vocab, state = run_dir.run_config(info), Vocab(run_dir.read_vocab()), None
    else:
        snap = load_snapshot(run_dir)
        cfg, vocab, state = snap.config, snap.vocab, TrainState.from_meta(snap.meta["state"], str(snap.path))
    applied = _apply_changes(cfg, changes)
    validate(cfg)
    mode = engine.configure(cfg.train.backend, cfg.train.device, cfg.train.devices)
    corpus = run_dir.load_text(info, cfg)
    splits = run_dir.splits(info, corpus.codes)
    step = state.step if state else 0
    writer = _own_run_dir(run_dir)
    if writer is run_dir and not engine.alone():  # process 0 of several: JAX has started now
        run_dir.lock()
    if writer is run_dir:  # the process that keeps the run tidies it
        for stale in run_dir.checkpoints.glob(".ckpt-*.tmp"):  # a write cut short by a kill
            stale.unlink()
        for newer in checkpoint.checkpoints(run_dir.checkpoints) if state else ():
            if newer.name > snap.path.name:  # damaged, and newer than the one resumed
                newer.rename(newer.with_suffix(".damaged"))
        _cut_logs(run_dir, cfg, state or TrainState())
        if applied:
            info.setdefault("resumes", []).append({"step": step, "changes": applied})
            info["config"] = cfg.to_dict()
            run_dir.write_config(info)
    else:
        writer.create(cfg, vocab, info["corpus"], info["split"], info["text_sha256"], info.get("source"))
    if state is None:
        print(f"longmem: {run_dir.path} has no checkpoint yet; starting it again", file=sys.stderr)
        return _from_scratch(writer, cfg, corpus, splits, mode, _init_params(cfg, vocab))
    _check_state(cfg, snap)
    trainer = Trainer(cfg, snap.params, mode)
    trainer.restore_optim(snap.optim, str(snap.path))
    print(f"longmem: resuming {run_dir.path} at step {step} from {snap.path.name}", file=sys.stderr)
    return _loop(writer, cfg, corpus, splits, trainer).run(state, snap.state, snap.best)


def _own_run_dir(run_dir: RunDir) -> RunDir:
    """Where this process writes the run: `run_dir` itself, except in processes 1, 2, ...
    of a run of several processes. They compute exactly what process 0 does and
    write it to a scratch folder of their own, removed when they exit; process 0
    alone keeps the run."""
    if engine.processes()[0] == 0:
        return run_dir
    scratch = RunDir(tempfile.mkdtemp(prefix="longmem-process-"))
    atexit.register(shutil.rmtree, scratch.path, ignore_errors=True)
    return scratch


def _check_state(cfg: RunConfig, snap) -> None:
    """The checkpoint must hold exactly the carried state the model has, in its shapes
    (`load` has checked the parameters)."""
    expected = NETS[cfg.model.model].init_state(cfg.model, cfg.train.batch)
    check_arrays(snap.path, "state", expected, snap.state)


def _apply_changes(cfg: RunConfig, changes: dict[str, dict]) -> dict:
    """Apply what the command line changed; refuse what would make another run."""
    applied = {}
    for section, fields in changes.items():
        target = getattr(cfg, section)
        for name, value in fields.items():
            if getattr(target, name) == value:
                continue
            if name not in RESUMABLE.get(section, ()):
                flag = "--" + name.replace("_", "-")
                raise UserError(
                    f"cannot change {flag} when resuming (the run has {flag} "
                    f"{getattr(target, name)}); start a new run instead"
                )
            applied[f"{section}.{name}"] = [getattr(target, name), value]
            setattr(target, name, value)
    return applied


def _cut_logs(run_dir: RunDir, cfg: RunConfig, state: TrainState) -> None:
    """Cut every log back to what it held at the checkpoint, so no step appears twice.

    A log shorter than the checkpoint recorded lost its end (a power failure
    before the data reached the disk): say so, keep its whole records, and
    record the lengths kept, never pad.
    """
    lost = []
    for path, attr in ((run_dir.metrics, "metrics_bytes"), (run_dir.samples, "samples_bytes")):
        kept = cut_log(path, getattr(state, attr), line_end)
        if kept != getattr(state, attr):
            lost.append(f"{path.name} ({kept} of {getattr(state, attr)} bytes)")
            setattr(state, attr, kept)
    sizes = track.Writer(run_dir.tracks, cfg.train.track_max).truncate(state.track_bytes)
    lost += [f"tracks/{name} ({sizes[name]} of {size} bytes)"
             for name, size in state.track_bytes.items() if sizes.get(name, 0) != size]
    state.track_bytes = sizes
    if lost:
        print(f"longmem: warning: {run_dir.path}: shorter than its checkpoint recorded, their end lost "
              f"(a power failure?): {', '.join(lost)}; whole records kept, the run goes on",
              file=sys.stderr)
