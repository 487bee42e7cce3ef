"""The compiled training step: a network's shared variables, its optimizer and
one compiled function that trains on a window.

The step is the same for every model (nets/protocol.py); the loop around it
is in loop.py.
"""

from __future__ import annotations

import time

import numpy as np
import pytensor.tensor as pt

from longmem import checkpoint, dropout, engine, optim, track
from longmem.config import RunConfig
from longmem.errors import UserError
from longmem.nets import NETS
from longmem.predict import Predictor


def streams_mesh(t):
    """The devices TrainConfig `t` splits its streams over (None: one device)."""
    mesh = engine.mesh(t.device, t.devices)
    if mesh is not None and t.batch % mesh.size:
        raise UserError(f"--batch {t.batch} cannot be split evenly over {mesh.size} devices")
    return mesh

class Trainer:
    """The network's shared variables and its compiled training step.

    step_fn(x, y, *state, lr, step, *rates, *scheduled) -> (*new state, *tracked values),
    with the state in the order of the model's init_state, `step` the training
    step's number (uint32, the counter of its dropout masks), `rates` two scalars
    for each drop probability its masks use (`self.options`: the threshold and the
    scale of dropout.py), the scheduled values in the order of its schedule and the
    tracked values those named in `self.tracked` (the defaults first). A probability
    left to AUTO (None) has its masks compiled even while it is 0, since it may change.
    """

    def __init__(self, cfg: RunConfig, params: dict[str, np.ndarray], mode: str):
        started = time.monotonic()
        self.cfg, self.mode = cfg, mode
        self.net = NETS[cfg.model.model]
        self.params = engine.share_all(params)
        self.predictor = Predictor(self.params, cfg.model, mode)
        self.tracked = track.names([*track.DEFAULTS, *(cfg.train.track or [])])
        self.noise = self.net.noise(cfg.model, cfg.train.seq, cfg.train.batch)
        self.options = sorted({option for _, option in self.noise.values()})
        self.step_fn, self.optim_state = self._compile_step()
        self.compile_seconds = time.monotonic() - started

    def _compile_step(self):
        t = self.cfg.train
        x = pt.tensor("x", dtype="int32", shape=(t.seq, t.batch))
        y = pt.tensor("y", dtype="int32", shape=(t.seq, t.batch))
        state = engine.inputs(self.net.init_state(self.cfg.model, t.batch))
        lr = pt.scalar("lr", dtype="float32")
        counter = pt.scalar("step", dtype="uint32")
        schedule = {name: pt.scalar(name, dtype="float32") for name in self.net.schedule(self.cfg.model, 0)}
        rates = {o: (pt.scalar(f"{o}.threshold", dtype="uint32"), pt.scalar(f"{o}.scale", dtype="float32"))
                 for o in self.options}
        masks = dropout.multipliers(self.noise, t.seed, counter, rates)
        fw = self.net.forward(self.params, x, state, masks, schedule)
        loss = self.net.loss(fw, self.net.target(x, y))
        step = optim.minimize(loss + sum(fw.losses.values()), self.params, lr, self.cfg.optim)
        # `loss` (logged, in bits per character when the model's loss is in nats, and
        # held to its explosion rule) is the model's own loss; extra terms are tracked
        # by name, and the step minimizes their sum ("total_loss").
        step.sources |= {"loss": loss, "total_loss": step.sources["loss"]}
        # Internals are tracked as their mean over the window and the streams;
        # extra loss terms always, so that they are recorded and plotted.
        internals = {name: value.mean(axis=(0, 1)) for name, value in fw.internals.items()}
        self.tracked = track.names([*self.tracked, *fw.losses])
        tracked = track.resolve(self.tracked, step.sources | internals | fw.losses)
        mesh = streams_mesh(t) if self.mode == "JAX" else None
        # The streams of x, y and the state are split over the devices (axis 1 of each).
        mode = engine.step_mode(self.mode, mesh, split_inputs=2 + len(state), split_outputs=len(state))
        fn = engine.compile_function(
            [x, y, *state.values(), lr, counter, *(v for pair in rates.values() for v in pair), *schedule.values()],
            [*fw.state.values(), *tracked.values()],
            mode, step.updates, "train_step",
            unused_ok=True,  # the step's number draws no masks without dropout; caesar's target ignores y
        )
        # Trainer.step gives the right types; unchecked, the state stays on the devices.
        fn.trust_input = True
        return fn, step.state

    def step(self, x, y, state: dict, step: int, lr: float, rates: dict | None = None) -> tuple[dict, dict]:
        """Training step number `step` (from 0) at learning rate `lr`, with the drop
        probabilities `rates` (option -> p; default: the configuration's, 0 for those
        left to AUTO): the new state and the tracked values by name."""
        rates = rates or dropout.rates(self.cfg.model, 0)
        scheduled = [np.float32(v) for v in self.net.schedule(self.cfg.model, step).values()]
        given = [v for o in self.options for v in (dropout.threshold(rates[o]), dropout.scale(rates[o]))]
        out = self.step_fn(x, y, *state.values(), np.float32(lr), np.uint32(step), *given, *scheduled)
        return dict(zip(state, out[: len(state)])), dict(zip(self.tracked, out[len(state) :]))

    def values(self) -> dict[str, np.ndarray]:
        """The parameters' values now, on the host."""
        return {k: engine.to_numpy(v.get_value()) for k, v in self.params.items()}

    def arrays(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every array a checkpoint holds, named `param/...`, `optim/...`, `state/...`."""
        out = {f"param/{k}": v for k, v in self.values().items()}
        out |= {f"optim/{k}": engine.to_numpy(v.get_value()) for k, v in self.optim_state.items()}
        out |= {f"state/{k}": v for k, v in state.items()}
        return out

    def restore_optim(self, values: dict[str, np.ndarray], source: str = "the checkpoint") -> None:
        """Set the optimizer's state from a checkpoint, which must hold all of it."""
        missing = sorted(set(self.optim_state) - set(values))
        if missing:
            raise checkpoint.CheckpointError(
                f"{source} has no optimizer state {missing[0]!r} ({len(missing)} missing) for "
                f"--optimizer {self.cfg.optim.optimizer}; it cannot be resumed as it was"
            )
        for name, var in self.optim_state.items():
            var.set_value(values[name].astype(var.dtype))
