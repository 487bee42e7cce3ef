"""The one training loop: schedule, step, log, evaluate, sample, checkpoint, stop.

Everything that decides what the run does next lives in the parameters, the
optimizer's shared variables and a `TrainState`; all three go into every
checkpoint, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pytensor.tensor as pt
from tqdm import tqdm

from longmem import checkpoint, engine, optim, track
from longmem.batches import Cursor, Streams
from longmem.config import RunConfig
from longmem.corpus import Vocab
from longmem.errors import UserError
from longmem.nets import NETS
from longmem.rundir import RunDir
from longmem.sample import Predictor

DEFAULT_STEPS = 2000


@dataclass
class TrainState:
    """Loop state beyond parameters and optimizer variables."""

    step: int = 0
    cursor: Cursor = field(default_factory=Cursor)
    elapsed: float = 0.0  # seconds spent training, summed over resumes
    loss_sum: float = 0.0  # training loss since the last metrics line
    loss_count: int = 0
    first_loss: float | None = None
    rng: dict = field(default_factory=dict)  # NumPy bit-generator state (dropout)
    metrics_bytes: int = 0  # length of metrics.jsonl at this step
    samples_bytes: int = 0
    track_bytes: dict = field(default_factory=dict)  # length of each tracks/*.bin

    def to_meta(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict) -> TrainState:
        return cls(**{**meta, "cursor": Cursor(**meta["cursor"])})


class Trainer:
    """The network's shared variables and its compiled training step.

    step_fn(x, y, h0, c0, lr, *masks) -> (h, c, *tracked values), where the
    tracked values are those named in `self.tracked` (the defaults first).
    """

    def __init__(self, cfg: RunConfig, params: dict[str, np.ndarray], mode: str):
        self.cfg, self.mode = cfg, mode
        self.params = engine.share_all(params)
        self.predictor = Predictor(self.params, cfg.model, mode)
        self.tracked = list(dict.fromkeys([*track.DEFAULTS, *(cfg.train.track or [])]))
        self.step_fn, self.optim_state = self._compile_step()

    def _compile_step(self):
        m, t = self.cfg.model, self.cfg.train
        T, B, L, H = t.seq, t.batch, m.layers, m.hidden
        x = pt.tensor("x", dtype="int32", shape=(T, B))
        y = pt.tensor("y", dtype="int32", shape=(T, B))
        h0 = pt.tensor("h0", dtype="float32", shape=(L, B, H))
        c0 = pt.tensor("c0", dtype="float32", shape=(L, B, H))
        lr = pt.scalar("lr", dtype="float32")
        masks = [pt.tensor(f"mask{i}", dtype="bool", shape=(T, B, H)) for i in range(self.n_masks)]
        keep = np.float32(1 / (1 - m.dropout))  # inverted dropout: kept units are scaled up
        net = NETS[m.model]
        fw = net.forward(self.params, x, h0, c0, [mask * keep for mask in masks] or None)
        loss = -net.log_probs(fw.logits, y).mean()
        step = optim.minimize(loss, self.params, lr, self.cfg.optim)
        tracked = track.resolve(self.tracked, step.sources | fw.internals)
        fn = engine.compile_function(
            [x, y, h0, c0, lr, *masks], [fw.h, fw.c, *tracked.values()], self.mode, step.updates,
            "train_step",
        )
        return fn, step.state
    @property
    def n_masks(self) -> int:
        return self.cfg.model.layers if self.cfg.model.dropout > 0 else 0

    def dropout_masks(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Which units each layer keeps, drawn on the host from the checkpointed
        generator so that a run is reproducible on any backend. Comparing 16
        random bits with p * 65536 is twice as fast as drawing floats."""
        t = self.cfg.train
        shape = (t.seq, t.batch, self.cfg.model.hidden)
        threshold = round(self.cfg.model.dropout * 65536)
        masks = []
        for _ in range(self.n_masks):
            bits = np.frombuffer(rng.bytes(2 * t.seq * t.batch * self.cfg.model.hidden), dtype="<u2")
            masks.append(bits.reshape(shape) >= threshold)
        return masks

    def lr(self, step: int) -> float:
        o = self.cfg.optim
        return o.lr * o.lr_decay ** (step // max(1, o.lr_decay_every))

    def arrays(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every array a checkpoint holds, named `param/...`, `optim/...`, `state/...`."""
        out = {f"param/{k}": engine.to_numpy(v.get_value()) for k, v in self.params.items()}
        out |= {f"optim/{k}": engine.to_numpy(v.get_value()) for k, v in self.optim_state.items()}
        out |= {f"state/{k}": v for k, v in state.items()}
        return out

    def restore_optim(self, values: dict[str, np.ndarray]) -> None:
        for name, var in self.optim_state.items():
            if name in values:
                var.set_value(values[name].astype(var.dtype))


class StopFlag:
    """Set by SIGTERM or SIGINT: finish the step, checkpoint, exit cleanly."""

    def __init__(self):
        self.signal: int | None = None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._set) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _set(self, signum, frame):
        self.signal = signum

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)


def new_state(cfg: RunConfig) -> TrainState:
    return TrainState(rng=np.random.default_rng(cfg.train.seed + 1).bit_generator.state)


class Loop:
    """One run's training: step, log, evaluate, sample, track, checkpoint, stop."""

    def __init__(self, run_dir: RunDir, cfg: RunConfig, vocab: Vocab, splits: dict, trainer: Trainer):
        self.run_dir, self.cfg, self.vocab, self.splits, self.trainer = run_dir, cfg, vocab, splits, trainer
        self.streams = Streams(splits["train"], cfg.train.batch, cfg.train.seq)
        self.tracks = track.Writer(run_dir.tracks, cfg.train.track_max)
        t = cfg.train
        self.goal = t.steps if t.steps is not None else (None if t.minutes else DEFAULT_STEPS)

    def run(self, state: TrainState, h: np.ndarray, c: np.ndarray) -> TrainState:
        """Train until the goal (steps or minutes) or a stop signal; checkpoint at the end."""
        t, trainer = self.cfg.train, self.trainer
        rng = np.random.default_rng()
        rng.bit_generator.state = state.rng
        last_save = tick = time.monotonic()
        bar = tqdm(total=self.goal, initial=state.step, unit="step", file=sys.stderr, dynamic_ncols=True)
        self.bar = bar
        with StopFlag() as stop, bar:
            while not self.done(state) and stop.signal is None:
                x, y = self.streams.window(state.cursor.window)
                lr = trainer.lr(state.step)
                h, c, *values = trainer.step_fn(x, y, h, c, np.float32(lr), *trainer.dropout_masks(rng))
                values = dict(zip(trainer.tracked, values))
                loss, grad_norm = float(values["loss"]), float(values["grad_norm"])
                self.check_finite(state, loss, grad_norm)
                now = time.monotonic()
                state.elapsed, tick = state.elapsed + now - tick, now
                state.step += 1
                state.loss_sum += loss
                state.loss_count += 1
                if state.first_loss is None:
                    state.first_loss = loss
                if self.streams.advance(state.cursor):  # a new pass: start from a blank state
                    h, c = np.zeros_like(h), np.zeros_like(c)
                self.after_step(state, lr, grad_norm, values)
                if state.step % t.checkpoint_every_steps == 0 or now - last_save > t.checkpoint_every_seconds:
                    self.save(state, rng, h, c)
                    last_save = tick = time.monotonic()
                bar.update(1)
            self.save(state, rng, h, c)
        if stop.signal is not None:
            print(
                f"longmem: stopped by {signal.Signals(stop.signal).name} at step {state.step}; "
                f"checkpoint saved. Continue with: longmem train --resume {self.run_dir.path}",
                file=sys.stderr,
            )
        return state

    def done(self, state: TrainState) -> bool:
        if self.goal is not None and state.step >= self.goal:
            return True
        return self.cfg.train.minutes is not None and state.elapsed >= self.cfg.train.minutes * 60

    def after_step(self, state: TrainState, lr: float, grad_norm: float, values: dict) -> None:
        t = self.cfg.train
        if state.step % t.track_every == 0:
            self.tracks.append(state.step, values)
            state.track_bytes = self.tracks.sizes()
        final = self.done(state)
        if state.step % t.log_every == 0 or state.step % t.eval_every == 0 or final:
            self.log(state, lr, grad_norm, evaluate=state.step % t.eval_every == 0 or final)
        if t.sample_every and state.step % t.sample_every == 0:
            self.write_sample(state)

    def check_finite(self, state: TrainState, loss: float, grad_norm: float) -> None:
        """Stop a run whose loss went NaN or exploded; its last checkpoint is left as it was."""
        exploded = state.first_loss is not None and loss > 3 * state.first_loss
        if math.isfinite(loss) and math.isfinite(grad_norm) and not exploded:
            return
        saved = checkpoint.checkpoints(self.run_dir.checkpoints)
        kept = f"the last good checkpoint ({saved[-1].name}) is kept" if saved else "no checkpoint was written"
        if not math.isfinite(loss):
            what = "the training loss became NaN or infinite"
        elif not math.isfinite(grad_norm):
            what = "the gradient overflowed"
        else:
            what = "the training loss exploded"
        raise UserError(
            f"{what} at step {state.step + 1} (loss {loss:.4g}, gradient norm {grad_norm:.4g}); "
            f"stopped, {kept}; try a lower --lr, --clip or --init-scale"
        )

    def log(self, state: TrainState, lr: float, grad_norm: float, evaluate: bool) -> None:
        """One line of metrics.jsonl: the mean training loss since the last line."""
        t = self.cfg.train
        loss = state.loss_sum / max(1, state.loss_count)
        record = {"step": state.step, "epoch": state.cursor.epoch, "loss": loss,
                  "bpc": loss / math.log(2), "lr": lr, "grad_norm": grad_norm}
        val = self.splits["val"][: t.eval_chars]
        if evaluate and len(val) >= 2:
            result = self.trainer.predictor.evaluate(val, t.batch, t.seq)
            record |= {"val_bpc": result.bpc, "val_accuracy": result.accuracy}
        record |= {
            "chars_per_s": state.step * self.streams.chars_per_window / max(state.elapsed, 1e-9),
            "elapsed": state.elapsed,
        }
        state.loss_sum, state.loss_count = 0.0, 0
        with self.run_dir.metrics.open("a") as f:
            f.write(json.dumps(record) + "\n")
            state.metrics_bytes = f.tell()
        shown = {"loss": f"{loss:.3f}", "bpc": f"{record['bpc']:.3f}", "chars/s": f"{record['chars_per_s']:.0f}"}
        if "val_bpc" in record:
            shown["val"] = f"{record['val_bpc']:.3f}"
        if self.goal is None:  # a --minutes run: the bar cannot estimate the time left
            shown["left"] = f"{max(0.0, t.minutes * 60 - state.elapsed) / 60:.1f}min"
        self.bar.set_postfix(shown, refresh=False)

    def write_sample(self, state: TrainState) -> None:
        """A short sample, primed with the start of the validation text, seeded by the step."""
        val = self.splits["val"]
        prime = self.vocab.decode(val[:1]) if len(val) else self.vocab.chars[0]
        rng = np.random.default_rng([self.cfg.train.seed, state.step])
        text = self.trainer.predictor.generate(self.vocab, prime, self.cfg.train.sample_length, rng)
        with self.run_dir.samples.open("a") as f:
            f.write(f"--- step {state.step} ---\n{prime}{text}\n")
            state.samples_bytes = f.tell()

    def save(self, state: TrainState, rng, h, c):
        state.rng = rng.bit_generator.state
        meta = {"config": self.cfg.to_dict(), "vocab": self.vocab.chars, "state": state.to_meta()}
        arrays = self.trainer.arrays({"h": engine.to_numpy(h), "c": engine.to_numpy(c)})
        return checkpoint.save(self.run_dir.checkpoints, state.step, arrays, meta, self.cfg.train.keep)
