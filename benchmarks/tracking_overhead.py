"""What recording values inside the training step costs.

Times the compiled training step of the default model (1 x 256, B=128, T=64)
with no tracked outputs, with the default set (loss, lr, grad_norm,
update_norm), and with a heavy set (whole weight matrices, their gradients,
the gate means), in alternating blocks, and prints the slowdown of each.

    python benchmarks/tracking_overhead.py
"""

from __future__ import annotations

import numpy as np
from throughput import time_alternately

from longmem import engine, track
from longmem.config import ModelConfig, RunConfig, TrainConfig
from longmem.nets import lstm
from longmem.step import Trainer

HEAVY = ["lstm.0.Wh", "lstm.0.Wh.grad", "lstm.0.Wh.update", "lstm.0.b.ms", "out.W",
         "lstm.0.i", "lstm.0.f", "lstm.0.o", "lstm.0.g", "lstm.0.c"]


def step_with(extra: list[str] | None, defaults: tuple, mode: str):
    V, B, T = 100, 128, 64
    cfg = RunConfig(model=ModelConfig(dropout=0.0), train=TrainConfig(batch=B, seq=T, track=extra))
    saved, track.DEFAULTS = track.DEFAULTS, defaults
    try:
        trainer = Trainer(cfg, lstm.init_params(cfg.model, V, np.random.default_rng(0)), mode)
    finally:
        track.DEFAULTS = saved
    rng = np.random.default_rng(1)
    x, y = (rng.integers(0, V, (T, B)).astype(np.int32) for _ in range(2))
    h = np.zeros((1, B, 256), np.float32)

    def step():
        for value in trainer.step_fn(x, y, h, h, np.float32(1e-3), np.uint32(0)):
            np.asarray(value)  # wait for the step, and fetch what a recording step writes

    return step


def main() -> None:
    mode = engine.configure("jax", "cpu")
    steps = {
        "nothing tracked": step_with(None, (), mode),
        "default set": step_with(None, track.DEFAULTS, mode),
        "heavy set": step_with(HEAVY, track.DEFAULTS, mode),
    }
    seconds = time_alternately(steps, n=5, repeats=5)
    base = seconds["nothing tracked"]
    for name, s in seconds.items():
        print(f"{name:16s} {1000 * s:7.1f} ms/step  {100 * (s / base - 1):+5.1f}%")


if __name__ == "__main__":
    main()
