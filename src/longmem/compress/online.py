"""The online model both sides of `longmem compress` run, and the grid it codes.

The data is coded in blocks (`blocks`), one after another by the same model,
each cut into `segments` equal rows coded in lockstep (one batched step per
column); after each `window` columns both sides train one step on them
(truncated backpropagation from the state at the window's start), and
`replay` more steps on earlier windows drawn from a seeded generator. The
decoder can only go one column at a time, so the encoder does too: both get
their probabilities from the same compiled function, called in the same
order with the same inputs, and hand identical floats to the coder.
"""

from __future__ import annotations

import numpy as np

from longmem import engine
from longmem.compress import format2, mixing
from longmem.compress.archive import FORMAT
from longmem.config import CompressConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from longmem.nets import lstm
from longmem.step import Trainer

REPLAY_KEPT = 2000  # earlier windows kept for replay (their inputs, targets and start state)


class OnlineModel:
    """Predict a column, learn from a window: the same on both sides."""

    def __init__(self, settings: CompressConfig, symbols: int, params: dict | None, letters: np.ndarray,
                 fmt: int = FORMAT):
        """`params`: the LSTM's to start from (None: seeded afresh); `letters`: each symbol's
        case-folded letter or 0 (`mixing.letter_codes`), for the word models."""
        s = self.settings = settings
        self.symbols, self.start = symbols, symbols  # the input before a row's first symbol
        cfg = RunConfig(model=ModelConfig(layers=s.layers, hidden=s.hidden, dropout=0.0, weight_drop=0.0),
                        optim=OptimConfig(optimizer=s.optimizer, lr=s.lr),
                        train=TrainConfig(batch=s.segments, seq=s.window, seed=s.seed))
        if params is None:
            params = lstm.init_params(cfg.model, symbols + 1, np.random.default_rng(s.seed))
        mode = engine.configure("jax", "cpu")
        self.trainer = Trainer(cfg, params, mode)
        self.predict_fn = self.trainer.predictor.step_fn(s.segments)
        self.predict_fn.trust_input = True  # called once a column with the right types: skip the checks
        self.state = self.trainer.predictor.zero_state(s.segments)
        self.steps = 0
        self.rng = np.random.default_rng(s.seed)
        self.kept: list[tuple] = []
        self.replay = s.replay
        self.mixer = None
        if s.orders and fmt == 2:  # archives of format 2 decode with the context models they were made with
            self.mixer = format2.Mixer(symbols, s.segments, s.orders)
        elif s.orders:
            self.mixer = mixing.Mixer(symbols, s.segments, s.orders, s.memory, letters)

    def probabilities(self, x: np.ndarray, real: np.ndarray) -> np.ndarray:
        """After reading column x (B,): the distribution of the next symbol of each row,
        (B, symbols) float64, computed the same way on both sides (rows not `real`, past
        the data's end, may be anything)."""
        logits, *after = self.predict_fn(x[None].astype(np.int32), *self.state.values())
        self.state = dict(zip(self.state, after))
        z = np.asarray(logits, dtype=np.float64)[:, : self.symbols]
        z -= z.max(axis=1, keepdims=True)
        if self.mixer is not None:
            return self.mixer.mix(z - np.log(np.exp(z).sum(axis=1, keepdims=True)), real)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def observe(self, codes: np.ndarray, real: np.ndarray) -> None:
        """The symbols of the column just coded (where `real`): the context models learn them."""
        if self.mixer is not None:
            self.mixer.update(codes, real)

    def learn(self, inputs: np.ndarray, targets: np.ndarray, start: dict) -> None:
        """One training step on a window (T, B) from the state at its start, then the replays."""
        self._step(inputs, targets, start)
        self.kept = (self.kept + [(inputs, targets, start)])[-REPLAY_KEPT:]
        for _ in range(self.replay):
            self._step(*self.kept[int(self.rng.integers(len(self.kept)))])

    def _step(self, inputs, targets, start) -> None:
        self.trainer.step(inputs, targets, start, self.steps, self.trainer.cfg.optim.lr)
        self.steps += 1


def blocks(length: int, settings: CompressConfig, fmt: int = FORMAT) -> list[int]:
    """Symbols in each block, coded one after the other by the same model: segments x
    block symbols each, the last one shorter (before format 4, the whole data is one)."""
    if fmt < 4:
        return [length] if length else []
    size = settings.segments * settings.block
    return [min(size, length - start) for start in range(0, length, size)]


def row_length(length: int, settings: CompressConfig) -> int:
    """Symbols per segment: the data cut into `segments` equal rows (the last ones padded)."""
    return -(-length // settings.segments)


def code_grid(model: OnlineModel, settings: CompressConfig, length: int, column) -> None:
    """Run the model over the grid of a block of `length` symbols in `segments` rows;
    `column(t, probabilities (B, V), real (B,) bool)` returns the codes of column t (0 where
    not real). Each row starts from the start symbol, in the state the block before left."""
    B, T = settings.segments, settings.window
    row = row_length(length, settings)
    x = np.full(B, model.start, np.int32)
    position = np.arange(B) * row
    for begin in range(0, row, T):
        start = {k: np.array(v) for k, v in model.state.items()}
        inputs, targets = [], []
        for t in range(begin, min(begin + T, row)):
            real = position + t < length
            codes = column(t, model.probabilities(x, real), real).astype(np.int32)
            model.observe(codes, real)
            inputs.append(x)
            targets.append(codes)
            x = codes
        if len(inputs) == T and begin + T < row:  # nothing is left to code after the last window
            model.learn(np.stack(inputs), np.stack(targets), start)
