"""Configuration: dataclasses with defaults and help text, saved as JSON.

Every field with help text becomes a command-line flag (`--init-scale` for
`init_scale`), so the defaults and their explanations live in one place.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from longmem.errors import UserError

DEFAULT_STEPS = 2000  # when neither --steps nor --minutes is given
LR = 5e-3  # --lr when not given, for a net that declares none (its LR)
PLATEAU = 0.5  # --lr-plateau on a text, when not given (a probe's is 1: see OptimConfig)
PROBE_PREFIX = "probe:"  # --corpus probe:NAME
FORMAT = 1  # of the configuration saved in config.json and in checkpoints


def opt(default, help: str, **cli):
    """A field shown on the command line, with its help text. `choices` may be a
    function that returns them (a registry's names, read when the flags are built);
    `per_net` is the value of a model option for the nets that do not read it, and
    `net_default` its value for those that do, when it is not given (the field's
    default is then None: a configuration built in code for another net holds the
    option off; `validate` puts the default in)."""
    if isinstance(default, list):  # a fresh list for every instance
        return field(default_factory=lambda: list(default), metadata={"help": help, **cli})
    return field(default=default, metadata={"help": help, **cli})


def registry(module: str, name: str):
    """The names in the registry `name` of `module`, as a function for `opt(choices=...)`:
    the registries' modules import this one, so they are read when the flags are built."""

    def names() -> list[str]:
        return list(getattr(importlib.import_module(module), name))

    return names


def choices(f: dataclasses.Field) -> list | None:
    """The values a field may take, when it names them."""
    found = f.metadata.get("choices")
    return found() if callable(found) else found


@dataclass
class ModelConfig:
    model: str = opt(
        "lstm", "model type (hmlstm: hierarchical multiscale LSTM, Chung et al. 2017; model1: the "
        "original's LSTM that learns what another does, needs --base; model2: the original's 'waves', "
        "two LSTMs that feed each other; mingru, minlstm: Feng et al. 2024's linear recurrences in residual "
        "blocks; transformer: causal attention over --context characters; caesar: the first experiment's net, "
        "see `longmem caesar`)",
        choices=registry("longmem.nets", "NETS"))
    layers: int = opt(1, "number of stacked layers (LSTM layers, or blocks)")
    hidden: int = opt(256, "units per layer: LSTM cells, or a block's width")
    init_scale: float = opt(
        0.08,
        "weights start uniform in [-s, s]; a large scale (e.g. 0.5) reproduces "
        "the original's 'always the same letter' bug",
    )
    dropout: float | None = opt(
        None, "dropout on each layer's output, before the next layer and the softmax (default: auto, "
        "by the passes over the training split the run is expected to make: 0 up to 2, then 0.1; with "
        "--minutes, estimated from the speed of the steps as the run goes)")
    weight_drop: float | None = opt(
        None, "lstm: DropConnect on the recurrent weights Wh (as AWD-LSTM does): each weight is "
        "dropped with this probability, one mask per training step (default: auto, as --dropout; other "
        "models: none)", per_net=0.0)
    heads: int | None = opt(None, "transformer: attention heads, each of --hidden / heads units (an even number, "
                            "for the rotary positions); mlstm: matrix memories, each --hidden / heads square; "
                            "slstm: groups of cells connected to each other (default 4)", per_net=None, net_default=4)
    context: int | None = opt(None, "transformer: the characters before each position that each layer attends to "
                              "(their keys and values are the state carried from window to window, so the "
                              "model reads at most layers x context back; default 256)", per_net=None,
                              net_default=256)
    hidden_b: int | None = opt(None, "model2: cells of LSTM B; model1: of stage 2 (default: twice --hidden)")
    base: str | None = opt(None, "model1: the finished one-layer lstm run (same text) that is stage 1")
    stage2_steps: int = opt(1000, "model1: steps that train stage 2 before stage 3 learns")
    base_hidden: int = 0  # model1: stage 1's cells, from --base
    base_digest: str = ""  # model1: SHA-256 of the base run's parameters
    slope_rate: float = opt(
        0.0005, "hmlstm: the boundary detectors' hard-sigmoid slope grows by this per step, from 1 to 5"
    )


@dataclass
class OptimConfig:
    optimizer: str = opt(
        "rmsprop", "update rule", choices=registry("longmem.optim", "RULES")
    )
    lr: float | None = opt(None, "learning rate (default: the model's own: 0.002 for mingru, 0.005 for the "
                           "others)")
    lr_decay: float = opt(1.0, "multiply the learning rate by this every --lr-decay-every steps")
    lr_decay_every: int = opt(1000, "steps between learning-rate decays")
    lr_plateau: float | None = opt(
        None, "multiply the learning rate by this after --lr-patience evaluations in a row that do "
        "not improve on the best held-out bpc (1: never; default: 0.5 on a text, 1 on a probe, whose "
        "held-out loss stalls until it learns to look back, not when it has learned all it can)")
    lr_patience: int = opt(1, "evaluations without a new best before --lr-plateau applies")
    rho: float = opt(0.95, "RMSprop: decay of the running average of squared gradients")
    eps: float = opt(1e-8, "RMSprop/Adam: added under the square root")
    beta1: float = opt(0.9, "Adam: decay of the first moment")
    beta2: float = opt(0.999, "Adam: decay of the second moment")
    clip: float = opt(5.0, "clip the global gradient norm to this (0 = no clipping)")


@dataclass
class DataConfig:
    corpus: str = opt("python-docs", "built-in corpus: python-docs (CPython's reference documentation, "
                      "460 KB), huck-finn (downloaded once), python-stdlib (the running Python's standard "
                      "library source, 12 MB, built once), enwik8 and text8 (the standard benchmarks, 100 MB each, "
                      "downloaded once; enwik8 modelled as bytes), probe:copy, probe:selective-copy, probe:recall "
                      "(endless synthetic episodes; see longmem probe)", choices=registry("longmem.corpus", "NAMES"))
    text: str | None = opt(None, "train on this UTF-8 file instead of a built-in corpus")
    letters: int | None = opt(
        None, "keep only the first N ASCII letters of the text, lower-cased, with the 26 letters "
        "as the vocabulary (the Caesar experiment's data)"
    )
    probe_distance: str | None = opt(None, "with --corpus probe:NAME: the distances its episodes are drawn "
                                     "from, LO:HI, log-uniformly (default 16:1024)")
    probe_length: int | None = opt(None, "with --corpus probe:NAME: symbols to remember (copy 10, "
                                   "selective-copy 16) or key-value pairs (recall 8)")
    probe_symbols: int | None = opt(None, "with --corpus probe:NAME: distinct data symbols (copy 8, "
                                    "selective-copy 16, recall 10 values)")
    val_fraction: float = opt(0.05, "last part of the text held out for validation")
    test_fraction: float = opt(0.05, "part before the validation split held out for testing")

    @property
    def is_probe(self) -> bool:
        """Whether this names a probe's endless generated episodes, not a text."""
        return self.text is None and self.corpus.startswith(PROBE_PREFIX)


@dataclass
class TrainConfig:
    batch: int = opt(128, "parallel streams through the text (B)")
    seq: int = opt(64, "characters per truncated-BPTT window (T)")
    steps: int | None = opt(None, "stop after this many steps (default 2000 unless --minutes)")
    minutes: float | None = opt(
        None, "stop after this many minutes of wall time, summed over resumes (compiling, "
        "evaluation and sampling included)"
    )
    seed: int = opt(0, "random seed for initialisation, dropout and samples")
    log_every: int = opt(10, "steps between lines of metrics.jsonl")
    eval_every: int = opt(200, "steps between validation evaluations")
    eval_chars: int = opt(100_000, "at most this many validation characters per evaluation")
    early_stop: int | None = opt(
        None, "stop when this many evaluations on schedule in a row bring no new best held-out bpc "
        "(off by default; the best parameters are kept either way)"
    )
    eval_split: str = opt("val", "the split evaluated during training (the Caesar experiment "
                          "scores its training letters)", choices=["val", "train"])
    sample_every: int = opt(500, "steps between samples written to samples.txt")
    sample_length: int = opt(200, "characters per training sample")
    checkpoint_every_steps: int = opt(500, "steps between checkpoints")
    checkpoint_every_seconds: float = opt(600.0, "seconds between checkpoints")
    keep: int = opt(2, "checkpoints kept on disk")
    track: list[str] | None = opt(
        None, "more values to record while training (see track.py), e.g. out.b lstm.0.f", nargs="+"
    )
    track_every: int = opt(10, "steps between records of tracked values")
    track_max: int = opt(100, "at most this many elements kept of a tracked value")
    backend: str = opt("jax", "execution backend", choices=registry("longmem.engine", "BACKENDS"))
    device: str = opt("cpu", "device (gpu needs JAX's CUDA build)", choices=registry("longmem.engine", "DEVICES"))
    devices: str = opt(
        "1", "split the streams over this many devices of --device (a number, or all): data "
        "parallel, with the gradients summed by XLA; --batch must divide evenly among them"
    )

    def chars(self, steps: int) -> int:
        """The training characters that `steps` steps read."""
        return steps * self.batch * self.seq


@dataclass
class CaesarConfig:
    """The original's first experiment: a 26-100-26 logistic net learns a Caesar cipher."""

    text: str | None = opt(None, "UTF-8 file whose letters are the data (default: the built-in corpus)")
    letters: int = opt(5000, "use the first N letters of the text")
    hidden: int = opt(100, "logistic hidden units")
    optimizer: str = opt("rmsprop", "update rule", choices=["sgd", "rmsprop", "rmsprop-global"])
    lr: float | None = opt(None, "learning rate (default: 1 for sgd, 0.05 for the RMSprops)")
    rho: float = opt(0.9, "RMSprop: decay of the running average of squared gradients")
    eps: float = opt(1e-6, "RMSprop: added under the square root")
    batch: int = opt(32, "letters per update (the original used 1 with SGD, 32 with RMSprop)")
    passes: int = opt(200, "passes over the letters")
    init_scale: float = opt(
        0.1, "weights start uniform in [-s, s]; a large scale (e.g. 10) shows the original's bug"
    )
    seed: int = opt(0, "random seed")
    track: list[str] | None = opt(None, "more values to record (default: hidden.b, out.b)", nargs="+")
    track_every: int = opt(1, "steps between records of tracked values")
    track_max: int = opt(100, "at most this many elements kept of a tracked value")
    backend: str = opt("jax", "execution backend", choices=registry("longmem.engine", "BACKENDS"))

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1.0 if self.optimizer == "sgd" else 0.05)


@dataclass
class CompressConfig:
    """The settings of `longmem compress`, recorded in every archive.

    The defaults were tuned on Huck Finn (see the README): few rows, short windows,
    a high learning rate and one replay make an online model learn fast per byte;
    the context models mixed in carry it where it knows least (early, and long
    repeats). Field names are the archive header's: renaming one is a new format.
    """

    segments: int = opt(16, "rows coded in lockstep (B)")
    window: int = opt(10, "symbols per training step (T)")
    hidden: int = opt(128, "LSTM cells")
    layers: int = opt(1, "LSTM layers")
    lr: float = opt(0.03, "learning rate")
    optimizer: str = opt("adam", "update rule", choices=["sgd", "rmsprop", "adam"])
    replay: int = opt(1, "extra training steps per window on earlier windows")
    seed: int = opt(0, "seed of the initial weights")
    orders: list[int] = opt([1, 2, 3, 4, 5, 6, 8, 12], "orders of the context models mixed with the LSTM "
                            "(none: the LSTM alone)", nargs="*")
    memory: int = opt(256, "megabytes of hashed count tables for the context models (decompressing needs "
                      "as much)")
    block: int = opt(1 << 20, "symbols per segment in a block: the data is read, coded and written --segments "
                     "x this many symbols at a time, so a file of any size streams (about 4 bytes a symbol)")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "the configuration", fmt: int = FORMAT) -> RunConfig:
        """The configuration saved as `d`; a field this version does not know is
        a UserError naming it, the source and the format version. A field it
        lacks, from a version before the field, has the value that version used."""
        sections = {}
        for key, section in SECTIONS.items():
            values = d.get(key, {})
            if isinstance(values, dict):
                values = {**LEGACY_DEFAULTS.get(key, {}), **values}
                values = {k: v for k, v in values.items() if k not in RETIRED.get(key, ())}
            known = {f.name for f in dataclasses.fields(section)}
            unknown = sorted(set(values) - known) if isinstance(values, dict) else ["(not a mapping)"]
            if unknown:
                _unknown(source, f"{key}.{unknown[0]}", fmt)
            sections[key] = section(**values)
        for key in set(d) - set(SECTIONS):
            _unknown(source, key, fmt)
        return cls(**sections)


def _unknown(source: str, name: str, fmt: int):
    raise UserError(
        f"{source}: unknown field {name!r} (configuration format {fmt}; this longmem reads "
        f"format {FORMAT}: was the run made by another version?)"
    )


# What each numeric field may be, by name, in every section that has it:
# (lowest, highest, whether the lowest is allowed, whether the highest is).
# Every float must also be finite: `--lr nan` parses as a float.
RANGES = {
    **{name: (1, None, True, None) for name in (
        "layers", "hidden", "batch", "seq", "log_every", "eval_every", "eval_chars",
        "checkpoint_every_steps", "keep", "track_every", "track_max", "lr_decay_every", "lr_patience",
        "letters", "passes", "hidden_b", "segments", "window", "block")},
    "replay": (0, None, True, None),
    "memory": (1, 65536, True, True),
    "seed": (0, None, True, None),  # numpy's generators take no negative seed
    "probe_length": (1, None, True, None),
    "early_stop": (1, None, True, None),
    "heads": (1, None, True, None),
    "context": (1, None, True, None),
    "probe_symbols": (1, None, True, None),
    "lr": (0, None, False, None),
    "lr_decay": (0, None, False, None),
    "lr_plateau": (0, 1, False, True),
    "eps": (0, None, False, None),
    "rho": (0, 1, True, False),
    "beta1": (0, 1, True, False),
    "beta2": (0, 1, True, False),
    "clip": (0, None, True, None),
    "slope_rate": (0, None, True, None),
    "stage2_steps": (0, None, True, None),
    "init_scale": (0, None, True, None),
    # Masks compare 32 hashed bits with p * 2**32 (dropout.py); p must leave a unit a chance.
    "dropout": (0, 0.999, True, True),
    "weight_drop": (0, 0.999, True, True),
    "val_fraction": (0, 1, True, False),
    "test_fraction": (0, 1, True, False),
    "steps": (0, None, True, None),
    "minutes": (0, None, False, None),
    "sample_every": (0, None, True, None),
    "sample_length": (0, None, True, None),
    "checkpoint_every_seconds": (0, None, False, None),
}


def check(section) -> None:
    """Refuse a value of `section` (any config dataclass) that cannot work, naming its flag."""
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if not _typed(value, hints[f.name]):
            raise UserError(f"--{f.name.replace('_', '-')} must be {_type_name(hints[f.name])}, not {value!r}")
        allowed = choices(f)
        if allowed is not None and value is not None and value not in allowed:
            raise UserError(f"--{f.name.replace('_', '-')} {value} is not one of {', '.join(allowed)}")
        if value is None or f.name not in RANGES:
            continue
        lo, hi, lo_ok, hi_ok = RANGES[f.name]
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, not {value}")
        if value < lo or (value == lo and not lo_ok) or (
            hi is not None and (value > hi or (value == hi and not hi_ok))
        ):
            raise UserError(f"{flag} must be {_describe(lo, hi, lo_ok, hi_ok)}, not {value:g}")


def _typed(value, hint) -> bool:
    """Whether `value` (from the command line, code or a JSON file) is of the type `hint`
    (`int | None`, `list[int]`, ...); a whole number serves as a float, a bool as nothing else."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_typed(value, h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_typed(v, item) for v in value)
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool
    return isinstance(value, int | float) if hint is float else isinstance(value, hint)


def _type_name(hint) -> str:
    name = {int: "a whole number", float: "a number", str: "text"}.get(_field_type_of(hint), "another type")
    return f"a list, each item {name}" if typing.get_origin(hint) is list else name


def _describe(lo, hi, lo_ok, hi_ok) -> str:
    if hi is None:
        return f"at least {lo}" if lo_ok else f"above {lo}"
    return f"in {'[' if lo_ok else '('}{lo}, {hi}{']' if hi_ok else ')'}"


def validate(cfg: RunConfig) -> RunConfig:
    """Refuse values that cannot work, with the flag's name; resolve the defaults
    that depend on other fields, so that config.json can repeat the run."""
    for section in (cfg.model, cfg.optim, cfg.data, cfg.train):
        check(section)
    for f in dataclasses.fields(ModelConfig):  # the options this net reads and was not given
        if "net_default" in f.metadata and getattr(cfg.model, f.name) is None and f not in _off_for(cfg.model.model):
            setattr(cfg.model, f.name, f.metadata["net_default"])
    for f in _off_for(cfg.model.model):
        if getattr(cfg.model, f.name) is None:  # not given: off
            setattr(cfg.model, f.name, f.metadata["per_net"])
        if getattr(cfg.model, f.name) != f.metadata["per_net"]:
            readers = [name for name, net in _nets().items() if f.name in getattr(net, "OPTIONS", ())]
            raise UserError(f"--{f.name.replace('_', '-')} is for --model {', '.join(readers)}, "
                            f"not {cfg.model.model}")
    check_fractions(cfg.data.val_fraction, cfg.data.test_fraction)
    if cfg.optim.lr is None:
        cfg.optim.lr = getattr(_nets().get(cfg.model.model), "LR", LR)
    if cfg.optim.lr_plateau is None:
        cfg.optim.lr_plateau = 1.0 if cfg.data.is_probe else PLATEAU
    if cfg.train.steps is None and cfg.train.minutes is None:
        cfg.train.steps = DEFAULT_STEPS
    for section, name in ((cfg.data, "text"), (cfg.model, "base")):  # usable from any folder
        if getattr(section, name) is not None:
            setattr(section, name, str(Path(getattr(section, name)).resolve()))
    return cfg


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """The held-out fractions must leave some text to train on."""
    if val_fraction + test_fraction >= 1:
        raise UserError("--val-fraction and --test-fraction must sum below 1")


def validate_caesar(cfg: CaesarConfig) -> CaesarConfig:
    """As `validate`, for the Caesar experiment; the learning rate is resolved."""
    cfg.lr = cfg.learning_rate()
    check(cfg)
    return cfg


def check_compress(cfg: CompressConfig) -> None:
    """As `check`, and the context models' orders must be different, from 1 to 32."""
    check(cfg)
    if any(not 1 <= k <= 32 for k in cfg.orders) or len(set(cfg.orders)) != len(cfg.orders):
        raise UserError("--orders must be different numbers from 1 to 32")


def _nets() -> dict:
    """The registry of nets; they import this module, so it is read when needed."""
    return importlib.import_module("longmem.nets").NETS


def _off_for(model: str) -> list[dataclasses.Field]:
    """The model options (ModelConfig fields marked per_net) that the net `model` does not
    read (its OPTIONS do not list them)."""
    options = getattr(_nets().get(model), "OPTIONS", ())
    return [f for f in dataclasses.fields(ModelConfig) if "per_net" in f.metadata and f.name not in options]


# Fields whose default changed when they were added: what runs saved without them did.
LEGACY_DEFAULTS = {"model": {"weight_drop": 0.0}, "optim": {"lr_plateau": 1.0}}

# Fields that runs of earlier versions saved and this one no longer has: ignored when read.
RETIRED = {"model": {"vocab_size"}}

SECTIONS = {"model": ModelConfig, "optim": OptimConfig, "data": DataConfig, "train": TrainConfig}


def add_arguments(parser: argparse.ArgumentParser, section: type) -> None:
    """Add one flag per help-bearing field of `section`, defaulting to None.

    None means "not given", so that resuming a run can tell which values the
    user changed.
    """
    for f in dataclasses.fields(section):
        if "help" not in f.metadata:
            continue
        flag = "--" + f.name.replace("_", "-")
        extra = {"choices": choices(f)} if "choices" in f.metadata else {}
        extra |= {"nargs": f.metadata["nargs"]} if "nargs" in f.metadata else {}
        parser.add_argument(
            flag,
            dest=f.name,
            type=_field_type(section, f),
            default=None,
            metavar=None if "choices" in extra else f.name.upper(),
            help=f"{f.metadata['help']}" + ("" if _default(f) is None else f" (default: {_show(_default(f))})"),
            **extra,
        )


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _field_type(section: type, f: dataclasses.Field):
    """What a flag's text becomes: the field's type, the type of its items for a list,
    and without None for an optional field (`int | None` -> int)."""
    return _field_type_of(typing.get_type_hints(section)[f.name])


def _field_type_of(kind):
    while typing.get_args(kind):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return kind

def overrides(args: argparse.Namespace, section: type) -> dict:
    """The fields of `section` given on the command line."""
    values = vars(args)
    return {
        f.name: values[f.name]
        for f in dataclasses.fields(section)
        if values.get(f.name) is not None
    }


def from_args(args: argparse.Namespace) -> RunConfig:
    """A fresh run's configuration: defaults, replaced by what was given."""
    cfg = RunConfig(**{key: cls(**overrides(args, cls)) for key, cls in SECTIONS.items()})
    for f in _off_for(cfg.model.model):  # their defaults are for the nets that read them
        if getattr(args, f.name, None) is None:
            setattr(cfg.model, f.name, f.metadata["per_net"])
    return cfg
