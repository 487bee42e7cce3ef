"""The one training loop: schedule, step, log, evaluate, sample, checkpoint, stop.

Everything that decides what the run does next lives in the parameters, the
optimizer's shared variables and a `TrainState`; all three go into every
checkpoint, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from longmem import checkpoint, dropout, engine, track
from longmem.batches import Cursor, Streams
from longmem.config import OptimConfig, RunConfig
from longmem.corpus import Vocab
from longmem.errors import UserError
from longmem.files import fsync
from longmem.progress import Progress
from longmem.rundir import RunDir
from longmem.signals import StopFlag
from longmem.step import Trainer


@dataclass
class TrainState:
    """Loop state beyond parameters and optimizer variables."""

    step: int = 0
    cursor: Cursor = field(default_factory=Cursor)
    elapsed: float = 0.0  # wall seconds of the run (compiling and evaluation too), summed over resumes
    train_seconds: float = 0.0  # seconds inside training steps, each process's first (compiling) step left out
    timed_steps: int = 0  # the steps that train_seconds counts
    loss_sum: float = 0.0  # training loss since the last metrics line
    loss_count: int = 0
    first_loss: float | None = None
    metrics_bytes: int = 0  # length of metrics.jsonl at this step
    samples_bytes: int = 0
    track_bytes: dict = field(default_factory=dict)  # length of each tracks/*.bin
    best_bpc: float | None = None  # the lowest held-out bpc of the evaluations so far
    best_step: int | None = None  # its step (checkpoints hold its parameters as best/NAME)
    plateau_bpc: float | None = None  # the lowest of the evaluations on schedule (--eval-every)
    stale: int = 0  # evaluations on schedule since that one, or since the rate was last cut
    since_best: int = 0  # evaluations on schedule since that one (--early-stop)
    lr_scale: float = 1.0  # the learning rate's factor from plateaus (--lr-plateau)
    auto_level: int | None = None  # the row of dropout.AUTO in force (None: not chosen yet, 0's values)

    def to_meta(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict, source: str = "the checkpoint") -> TrainState:
        known = {f.name for f in fields(cls)}
        # Before dropout was drawn in the step, its generator's state was kept here.
        meta = {k: v for k, v in meta.items() if k != "rng"}
        unknown = sorted(set(meta) - known)
        if unknown:
            raise checkpoint.CheckpointError(
                f"{source}: unknown training state {unknown[0]!r} (checkpoint format "
                f"{checkpoint.FORMAT}: was it written by another version of longmem?)"
            )
        return cls(**{**meta, "cursor": Cursor(**meta.get("cursor", {}))})

def summary(snap, info: dict) -> dict:
    """What `longmem inspect` says of a run's newest checkpoint (a rundir.Snapshot) and its
    config.json (`info`)."""
    state = snap.meta["state"]
    unit = info.get("source", {}).get("unit", "character")
    symbols = "bytes: the text is modelled byte by byte, bits per character are bits per byte" \
        if unit == "byte" else "characters"
    return {
        "text": f"{info.get('corpus')}, {len(snap.vocab)} symbols: {symbols}",
        "step": state["step"],
        "finished": finished(snap.config.train, state["step"], state.get("elapsed", 0.0),
                             state.get("since_best", 0)),
        "epoch": state["cursor"]["epoch"],
        "checkpoint": snap.path.name,
        "best_step": state.get("best_step"),
        "best_bpc": state.get("best_bpc"),
        "lr": learning_rate(snap.config.optim, TrainState.from_meta(state, str(snap.path))),
        "params": checkpoint.count(snap.params),
        "digest": checkpoint.digest(snap.params),
        "vocab_size": len(snap.vocab),
        "config": snap.config.to_dict(),
    }


def passes(n: float) -> str:
    """`n` passes over a text, as a few digits say it."""
    return f"{n:.1f} passes" if n >= 1 else f"{n:.2g} of a pass"


def expected_passes(t, streams: Streams, state: TrainState) -> float | None:
    """The passes over the training split a run with TrainConfig `t` will have made when it
    reaches its goal: from --steps, and from --minutes at the speed of its steps so far
    (None while that is all there is and no step has been timed); 0 for endless text."""
    if streams.ENDLESS:
        return 0.0
    goals = [] if t.steps is None else [t.steps]
    if t.minutes is not None and state.timed_steps:
        left = max(0.0, t.minutes * 60 - state.elapsed)
        goals.append(state.step + left * state.timed_steps / max(state.train_seconds, 1e-9))
    return min(goals) / streams.windows if goals else None


def learning_rate(o: OptimConfig, state: TrainState) -> float:
    """The learning rate of the next step: --lr, decayed every --lr-decay-every steps
    and at every plateau of the held-out loss."""
    return o.lr * o.lr_decay ** (state.step // max(1, o.lr_decay_every)) * state.lr_scale


def finished(t, step: int, elapsed: float, since_best: int = 0) -> bool:
    """Whether a run with TrainConfig `t` has reached its goal (steps or minutes), or has
    stopped improving: `since_best` evaluations on schedule without a new best, and
    --early-stop allows no more."""
    if t.steps is not None and step >= t.steps:
        return True
    if t.early_stop is not None and since_best >= t.early_stop:
        return True
    return t.minutes is not None and elapsed >= t.minutes * 60


@dataclass
class Clock:
    """Where this process took the run up: the monotonic time then (less its compiling,
    which the run's wall clock counts too), the run's elapsed seconds and its step."""

    started: float
    elapsed: float
    step: int


@dataclass
class Pace:
    """Timed training steps and their seconds since the last metrics line."""

    steps: int = 0
    seconds: float = 0.0


class Loop:
    """One run's training: step, track, evaluate, log, sample, checkpoint, stop."""

    def __init__(self, run_dir: RunDir, cfg: RunConfig, vocab: Vocab, splits: dict, trainer: Trainer,
                 streams: Streams):
        self.run_dir, self.cfg, self.vocab, self.splits, self.trainer = run_dir, cfg, vocab, splits, trainer
        self.streams = streams  # the training text, read window by window
        self.tracks = track.Writer(run_dir.tracks, cfg.train.track_max)
        self.goal = cfg.train.steps
        self.pace = Pace()
        self.said_passes = False
        self.auto = [o for o in dropout.auto(cfg.model) if o in trainer.options]  # probabilities left to AUTO
        self.chose_at_speed = False  # whether this process has chosen them from a measured speed

    def run(self, state: TrainState, carried: dict[str, np.ndarray], best: dict | None = None) -> TrainState:
        """Train until the goal (steps or minutes) or a stop signal; checkpoint at the end.

        `carried` is the model's recurrent state at the cursor (named as its
        init_state names it); `best` the parameters of the best evaluation so
        far (state.best_step), which every checkpoint keeps.
        """
        t, trainer = self.cfg.train, self.trainer
        self.best = best or {}
        # The wall clock of the run counts this process's compiling too.
        self.clock = Clock(time.monotonic() - trainer.compile_seconds, state.elapsed, state.step)
        last_save, saved = time.monotonic(), None
        self.progress = Progress(self.goal, state.step)
        with StopFlag() as stop, self.progress, contextlib.closing(self.tracks):
            self.choose_rates(state)
            done, stopped, _ = self.decide(state, stop, False)
            while not (done or stopped):
                x, y = self.streams.at(state.cursor)
                lr = learning_rate(trainer.cfg.optim, state)
                started = time.monotonic()
                carried, values = trainer.step(x, y, carried, state.step, lr, self.rates(state))
                loss = float(values["loss"])  # waits for the step to finish
                self.check_finite(state, loss, float(values["grad_norm"]), float(values["update_norm"]))
                now = time.monotonic()
                if state.step > self.clock.step:  # the first step of a process compiles it
                    state.train_seconds += now - started
                    state.timed_steps += 1
                    self.pace.steps += 1
                    self.pace.seconds += now - started
                state.step += 1
                state.loss_sum += loss
                state.loss_count += 1
                if state.first_loss is None:
                    state.first_loss = loss
                if self.streams.advance(state.cursor):  # a new pass: start from a blank state
                    carried = trainer.net.init_state(self.cfg.model, t.batch)
                self.update_elapsed(state)
                save = state.step % t.checkpoint_every_steps == 0 or now - last_save > t.checkpoint_every_seconds
                done, stopped, save = self.decide(state, stop, save)
                self.after_step(state, lr, float(values["grad_norm"]), values, final=done)
                if save:
                    saved = self.save(state, carried)
                    last_save = time.monotonic()
                self.progress.bar.update(1)
            if saved is None or saved.name != checkpoint.name(state.step):
                self.save(state, carried)
        if stopped:
            print(
                f"longmem: stopped by {signal.Signals(stopped).name} at step {state.step}; "
                f"checkpoint saved. Continue with: longmem train --resume {self.run_dir.path}",
                file=sys.stderr,
            )
        elif t.early_stop is not None and state.since_best >= t.early_stop:
            n = state.since_best
            print(f"longmem: stopped early at step {state.step}: {n} evaluation{'s' if n != 1 else ''} without a "
                  f"new best (the best, {t.eval_split} bpc {state.best_bpc:.3f} at step {state.best_step}, is kept "
                  "in the checkpoint as best/); to go on, resume with a larger --early-stop", file=sys.stderr)
        return state

    def update_elapsed(self, state: TrainState) -> None:
        """Bring the run's wall clock up to now."""
        state.elapsed = self.clock.elapsed + time.monotonic() - self.clock.started

    def decide(self, state: TrainState, stop: StopFlag, save: bool) -> tuple[bool, int, bool]:
        """Whether the run has reached its goal, the signal that stops it (0: none) and
        whether to checkpoint now: the clock and signals decide, so in a run of several
        processes process 0 decides for all."""
        done = finished(self.cfg.train, state.step, state.elapsed, state.since_best)
        done, stopped, save = engine.agree([done, stop.signal or 0, save])
        return bool(done), stopped, bool(save)

    def after_step(self, state: TrainState, lr: float, grad_norm: float, values: dict, final: bool) -> None:
        t = self.cfg.train
        if state.step % t.track_every == 0:
            self.tracks.append(state.step, values)
            state.track_bytes = self.tracks.sizes()
        scheduled = state.step % t.eval_every == 0
        evaluation = self.evaluate(state, scheduled) if scheduled or final else None
        if state.step % t.log_every == 0 or scheduled or final:
            self.log(state, lr, grad_norm, evaluation)
            if self.auto and (scheduled or not self.chose_at_speed):
                self.choose_rates(state)
        if t.sample_every and state.step % t.sample_every == 0:
            self.write_sample(state)

    def check_finite(self, state: TrainState, loss: float, grad_norm: float, update_norm: float) -> None:
        """Stop a run whose loss, gradient or updated parameters went NaN or infinite, or
        whose loss exploded, before anything of this step reaches a checkpoint; the last
        checkpoint (written after a step that passed this check) is left as it was."""
        factor = self.trainer.net.EXPLODES
        exploded = factor is not None and state.first_loss is not None and loss > factor * state.first_loss
        if math.isfinite(loss) and math.isfinite(grad_norm) and math.isfinite(update_norm) and not exploded:
            return
        saved = checkpoint.checkpoints(self.run_dir.checkpoints)
        kept = (
            f"the last checkpoint ({saved[-1].name}, finite parameters) is kept" if saved else
            f"no checkpoint was written, so {self.run_dir.path} may be started again with other settings"
        )
        if not math.isfinite(loss):
            what = "the training loss became NaN or infinite"
        elif not math.isfinite(grad_norm):
            what = "the gradient overflowed"
        elif not math.isfinite(update_norm):
            what = "the update made the parameters NaN or infinite"
        else:
            what = "the training loss exploded"
        raise UserError(
            f"{what} at step {state.step + 1} (loss {loss:.4g}, gradient norm {grad_norm:.4g}, "
            f"update norm {update_norm:.4g}); stopped, {kept}; try a lower --lr, --clip or --init-scale"
        )

    def log(self, state: TrainState, lr: float, grad_norm: float, evaluation: dict | None) -> None:
        """One line of metrics.jsonl: the mean training loss since the last line, and the
        evaluation made at this step if any.

        chars_per_s counts training steps alone (not compiling, evaluation,
        sampling or checkpoints); elapsed is the run's wall time.
        """
        t = self.cfg.train
        loss = state.loss_sum / max(1, state.loss_count)
        record = {"step": state.step, "epoch": state.cursor.epoch, "loss": loss}
        if self.trainer.net.BITS:
            record["bpc"] = loss / math.log(2)
        record |= {"lr": lr, "grad_norm": grad_norm} | (evaluation or {})
        record |= {o: p for o, p in self.rates(state).items() if o in self.auto}
        if self.pace.steps:
            record["chars_per_s"] = self.pace.steps * self.streams.chars_per_window / max(self.pace.seconds, 1e-9)
        self.update_elapsed(state)
        record |= {"elapsed": state.elapsed, "train_seconds": state.train_seconds}
        state.loss_sum, state.loss_count = 0.0, 0
        self.pace = Pace()
        self.tracks.flush()  # so that a plot made while the run goes on sees the records
        with self.run_dir.metrics.open("a") as f:
            f.write(json.dumps(record) + "\n")
            state.metrics_bytes = f.tell()
        shown = {"loss": f"{loss:.3f}"} | ({"bpc": f"{record['bpc']:.3f}"} if "bpc" in record else {})
        if "chars_per_s" in record:
            shown["chars/s"] = f"{record['chars_per_s']:.0f}"
            self.say_passes(state, record["chars_per_s"])
        split = t.eval_split
        if f"{split}_bpc" in record:
            shown[split] = f"{record[f'{split}_bpc']:.3f}"
            if not self.trainer.net.BITS:
                shown["accuracy"] = f"{record[f'{split}_accuracy']:.1%}"
        left = self.seconds_left(state)
        if left is not None and (self.goal is None or not self.progress.tty):
            shown["left"] = f"{left / 60:.1f}min"
        self.progress.show(state.step, shown)

    def say_passes(self, state: TrainState, chars_per_s: float) -> None:
        """Once in a process, for a run that trains for some minutes: how many passes over
        the training split that will be, at the first speed measured."""
        t = self.cfg.train
        if self.said_passes or t.minutes is None or self.streams.ENDLESS:
            return
        self.said_passes = True
        self.progress.say(f"longmem: at {chars_per_s:,.0f} characters a second, the run will make about "
                          f"{passes(expected_passes(t, self.streams, state))} over the training split")

    def rates(self, state: TrainState) -> dict[str, float]:
        """The drop probabilities of the next step: as configured, or AUTO's at the level chosen."""
        return dropout.rates(self.cfg.model, state.auto_level or 0)

    def choose_rates(self, state: TrainState) -> None:
        """Choose the probabilities left to AUTO for the passes the run is expected to make
        (before its first step, then at every evaluation on schedule, and once this process
        has timed its steps): the level is kept in the state, so that a resumed run goes on
        with it, and config.json says what was chosen and why."""
        passes = expected_passes(self.cfg.train, self.streams, state)
        if not self.auto or passes is None:
            return
        self.chose_at_speed = self.chose_at_speed or state.timed_steps > 0
        (level,) = engine.agree([dropout.auto_level(passes)])  # the same masks in every process
        if level == state.auto_level:
            return
        state.auto_level = level
        rates = self.rates(state)
        chosen = ", ".join(f"{o.replace('_', ' ')} {rates[o]:g}" for o in self.auto)
        why = "endless generated text, no pass repeats it" if self.streams.ENDLESS else \
            f"about {passes:.1f} passes over the training split expected"
        info = self.run_dir.read_config()
        info["auto"] = {"step": state.step, "expected_passes": passes, **{o: rates[o] for o in self.auto},
                        "why": f"auto: {why}"}
        self.run_dir.write_config(info)
        self.progress.say(f"longmem: at step {state.step}, {chosen} (auto: {why})")

    def evaluate(self, state: TrainState, scheduled: bool) -> dict | None:
        """Bits per character and accuracy on the held-out split (--eval-split, at most
        --eval-chars of it), for the metrics line; None when the split is too short."""
        t = self.cfg.train
        held = self.splits[t.eval_split][: t.eval_chars]
        if len(held) < 2:
            return None
        result = self.trainer.predictor.evaluate_heldout(held, t.batch, t.seq)
        self.note_evaluation(state, result.bpc, scheduled)
        return {f"{t.eval_split}_bpc": result.bpc, f"{t.eval_split}_accuracy": result.accuracy}

    def note_evaluation(self, state: TrainState, bpc: float, scheduled: bool) -> None:
        """Keep the parameters of a new best evaluation; after --lr-patience evaluations on
        schedule in a row without a new best among them, multiply the learning rate by
        --lr-plateau. Only those count toward a plateau, not the extra evaluation at the
        end of a run, so that a run extended later trains as one run would."""
        if state.best_bpc is None or bpc < state.best_bpc:
            state.best_bpc, state.best_step = bpc, state.step
            self.best = self.trainer.values()
        if not scheduled:
            return
        if state.plateau_bpc is None or bpc < state.plateau_bpc:
            state.plateau_bpc, state.stale, state.since_best = bpc, 0, 0
            return
        state.stale += 1
        state.since_best += 1
        o = self.cfg.optim
        if state.stale >= o.lr_patience:
            state.lr_scale *= o.lr_plateau
            state.stale = 0

    def seconds_left(self, state: TrainState) -> float | None:
        """Wall seconds to the goal, from this process's pace (None before a step is done)."""
        elapsed, step = self.clock.elapsed, self.clock.step
        by_minutes = None if self.cfg.train.minutes is None else self.cfg.train.minutes * 60 - state.elapsed
        by_steps = None
        if self.goal is not None and state.step > step:
            by_steps = (self.goal - state.step) * (state.elapsed - elapsed) / (state.step - step)
        known = [v for v in (by_minutes, by_steps) if v is not None]
        return max(0.0, min(known)) if known else None

    def write_sample(self, state: TrainState) -> None:
        """A short sample, primed with the start of the validation text, seeded by the step."""
        val = self.splits["val"]
        prime = self.vocab.decode(val[:1]) if len(val) else self.vocab.chars[0]
        rng = np.random.default_rng([self.cfg.train.seed, state.step])
        text = self.trainer.predictor.generate(self.vocab, prime, self.cfg.train.sample_length, rng)
        with self.run_dir.samples.open("a") as f:
            f.write(f"--- step {state.step} ---\n{prime}{text}\n")
            state.samples_bytes = f.tell()

    def save(self, state: TrainState, carried: dict):
        """A checkpoint of everything; the logs whose lengths it records reach the disk first,
        so that after a power failure they are never shorter than it says."""
        self.tracks.flush()
        for path in (self.run_dir.metrics, self.run_dir.samples, *self.tracks.paths()):
            fsync(path)
        self.update_elapsed(state)
        meta = {"config": self.cfg.to_dict(), "vocab": self.vocab.chars, "state": state.to_meta()}
        arrays = self.trainer.arrays({name: engine.to_numpy(v) for name, v in carried.items()})
        arrays |= {f"best/{k}": v for k, v in self.best.items()}
        return checkpoint.save(self.run_dir.checkpoints, state.step, arrays, meta, self.cfg.train.keep)
