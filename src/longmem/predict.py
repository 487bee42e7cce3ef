"""Using a trained network: evaluation in bits per character, next-letter
guesses, and generation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.tensor.special import log_softmax

from longmem import corpus, engine, signals, track
from longmem.batches import Streams
from longmem.config import ModelConfig
from longmem.corpus import Vocab
from longmem.errors import UserError
from longmem.nets import NETS
from longmem.rundir import load


@dataclass
class EvalResult:
    bpc: float  # mean bits per predicted character
    accuracy: float  # fraction of next characters guessed exactly (top-1)
    chars: int  # characters predicted
    guesses: np.ndarray | None = None  # (chars,) guessed codes, in text order when batch=1

    def to_dict(self) -> dict:
        return {"bpc": self.bpc, "accuracy": self.accuracy, "chars": self.chars}


def open_run(run, backend: str | None = None, best: bool = False, reads_text: str | None = None):
    """The newest checkpoint of a run (a RunDir) and a predictor over its parameters
    (with `best`, those of the run's best evaluation). `reads_text` names what is made of
    it ("report") when that needs a model of text (one whose loss is in bits): another
    run is refused in one sentence, the same for every such command."""
    snap = load(run, best)
    if reads_text and not NETS[snap.config.model.model].BITS:
        raise UserError(f"{run.path} is a {snap.config.model.model} run; a {reads_text} reads models of text")
    mode = engine.configure(backend or snap.config.train.backend, "cpu")
    return snap, Predictor(engine.share_all(snap.params), snap.config.model, mode)


def heldout_codes(run, snap, text: str | None = None, split: str = "test") -> tuple[np.ndarray, str]:
    """The codes to evaluate on: a given file, or a split of the run's own text."""
    if text:
        codes = corpus.encode(corpus.file_chunks(text), snap.vocab, text)
        if len(codes) == 0:
            raise UserError(f"{text}: the text is empty")
        return codes, text
    info = run.read_config()
    codes = run.splits(info, run.load_text(info, snap.config).codes)[split]
    return codes, f"{split} split of {info['corpus']}"


# Held-out text is read as streams of at least this many characters. Each stream
# starts from a blank state and guesses its first characters with little context:
# on Huckleberry Finn's test split (28k characters) 128 streams of 221 characters
# cost a trained 1 x 256 LSTM 0.020 bits/char against 16 of 1,770, and 4 of 7,080
# gained 0.002 more, at the same speed on a CPU.
STREAM_CHARS = 2000
# A net that carries nothing from one character to the next (caesar) reads a text to
# evaluate in windows of this many characters, whatever its training window: the same
# figures in fewer calls (caesar's evaluation of its 5,000 letters each pass was 157
# calls of 32, as long as the pass's training).
STATELESS_WINDOW = 8192


def streams(length: int, batch: int) -> int:
    """How many streams evaluation reads `length` characters as: at most `batch`, each
    at least STREAM_CHARS long (one for a shorter text)."""
    return max(1, min(batch, length // STREAM_CHARS))


def cached_eval(run, snap, predictor: Predictor, codes: np.ndarray, split: str = "test") -> dict:
    """bpc and accuracy of the checkpoint on a split of the run's text (`codes`),
    stored in the run (eval/) and read from there when computed before."""
    t = snap.config.train
    key = {"step": snap.step, "split": split, "streams": streams(len(codes), t.batch)}
    return run.cached("eval", key, lambda: predictor.evaluate_heldout(codes, t.batch, t.seq).to_dict())


class Predictor:
    """Compiled forward passes of a network, one function per window shape."""

    def __init__(self, params: dict, cfg: ModelConfig, mode: str):
        self.params, self.cfg, self.mode = params, cfg, mode
        self.net = NETS[cfg.model]
        self._windows: dict[tuple[int, int], object] = {}  # (T, B) -> window_fn
        self._steps: dict[int, object] = {}  # batch -> step_fn
        self._internals: dict[tuple, tuple] = {}  # (T, names, one_number) -> (function, names)
        self._gradients: dict[tuple[int, int], object] = {}  # (T, B) -> input_gradient_fn

    def zero_state(self, batch: int) -> dict[str, np.ndarray]:
        return self.net.init_state(self.cfg, batch)

    def window_fn(self, T: int, B: int):
        """(x, y, *state) -> (log p(target) (T, B), guesses (T, B), target (T, B), *new state)."""
        if (T, B) not in self._windows:
            x = pt.tensor("x", dtype="int32", shape=(T, B))
            y = pt.tensor("y", dtype="int32", shape=(T, B))
            state = engine.inputs(self.zero_state(B))
            fw = self.net.forward(self.params, x, state)
            target = self.net.target(x, y)
            outputs = [self.net.log_probs(fw.logits, target), fw.logits.argmax(axis=-1), target,
                       *fw.state.values()]
            # y is unused by a net whose target does not read the text's next characters (caesar)
            self._windows[T, B] = engine.compile_function([x, y, *state.values()], outputs, self.mode,
                                                          unused_ok=True)
        return self._windows[T, B]

    def window(self, x: np.ndarray, y: np.ndarray, state: dict):
        """For a window x (T, B) followed by y: log p of the model's targets (T, B), its
        guesses (T, B), the targets (T, B) and the state after the window."""
        signals.check()
        lp, guess, target, *after = self.window_fn(*x.shape)(x, y, *state.values())
        return (engine.to_numpy(lp), engine.to_numpy(guess), engine.to_numpy(target),
                dict(zip(state, after)))

    def step_fn(self, batch: int = 1):
        """(x (1, batch), *state) -> (logits (batch, V), *new state): one character per stream."""
        if batch not in self._steps:
            x = pt.tensor("x", dtype="int32", shape=(1, batch))
            state = engine.inputs(self.zero_state(batch))
            fw = self.net.forward(self.params, x, state)
            self._steps[batch] = engine.compile_function([x, *state.values()], [fw.logits[0], *fw.state.values()],
                                                         self.mode)
        return self._steps[batch]

    def input_gradient_fn(self, T: int, B: int):
        """(x (T, B), y (T, B)) -> (T, B): for each stream, read from the initial state, the norm
        of the gradient of log p(target at the last position) with respect to each input's
        embedding (all the net's EMBEDDINGS together)."""
        if (T, B) not in self._gradients:
            x = pt.tensor("x", dtype="int32", shape=(T, B))
            y = pt.tensor("y", dtype="int32", shape=(T, B))
            # Each embedding's rows for the window's codes, as a variable of their own, read
            # back by the net through positions 0 .. T*B - 1: its gradient is per input.
            rows = {name: self.params[name][x.reshape((-1,))] for name in self.net.EMBEDDINGS}
            positions = pt.as_tensor(np.arange(T * B, dtype=np.int32).reshape(T, B))
            start = {name: pt.as_tensor(value) for name, value in self.zero_state(B).items()}
            fw = self.net.forward(self.params | rows, positions, start)
            last = self.net.log_probs(fw.logits, self.net.target(x, y))[-1].sum()  # streams are independent
            grads = pytensor.grad(last, list(rows.values()))
            norm = pt.sqrt(sum((g.reshape((T, B, -1)) ** 2).sum(axis=-1) for g in grads))
            # y is unused by a net whose target does not read the next characters (caesar)
            self._gradients[T, B] = engine.compile_function([x, y], norm, self.mode, unused_ok=True)
        return self._gradients[T, B]

    def trace(self, codes: np.ndarray, seq: int, names: list[str]) -> dict[str, np.ndarray]:
        """For each character of `codes`, read as one stream with state carried, the named
        internals after reading it; each name must pick one number per character
        (`hm.1.z`, `lstm.0.c[17]`: an index applies to the unit axes). Returns (n,) arrays."""
        return self.internals(codes, seq, names, one_number=True)[1]

    def internals(self, codes: np.ndarray, seq: int, names: list[str] | None = None,
               one_number: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Read `codes` as one stream, state carried between windows of `seq`: for each
        character, the log-probabilities of the next (n, V) and the internal values after
        reading it, (n, ...) each: all of them, or the ones `names` picks. A shorter last
        window is padded, as in `read`: one compiled shape."""
        state, logs, found = self.zero_state(1), [], {}
        seq = min(seq, len(codes))
        for start in range(0, len(codes), seq):
            x = np.ascontiguousarray(codes[start : start + seq, None], dtype=np.int32)  # (T, 1)
            real = len(x)
            fn, picked = self._internals_fn(seq, tuple(names or ()), one_number)
            signals.check()
            after = list(fn(np.pad(x, ((0, seq - real), (0, 0))), *state.values()))
            logs.append(engine.to_numpy(after[0])[:real, 0])
            state = dict(zip(state, after[1 : 1 + len(state)]))
            for name, value in zip(picked, after[1 + len(state) :]):
                found.setdefault(name, []).append(engine.to_numpy(value)[:real, 0])
        return np.concatenate(logs), {name: np.concatenate(parts) for name, parts in found.items()}

    def _internals_fn(self, T: int, names: tuple, one_number: bool):
        if (T, names, one_number) not in self._internals:
            x = pt.tensor("x", dtype="int32", shape=(T, 1))
            state = engine.inputs(self.zero_state(1))
            fw = self.net.forward(self.params, x, state)
            picked = {}
            for name in names or sorted(fw.internals):
                base, index = track.parse(name)
                if base not in fw.internals:
                    raise UserError(f"no internal value called {base!r}; known: {', '.join(sorted(fw.internals))}")
                value = fw.internals[base]
                picked[name] = value[(slice(None), slice(None), *index)] if index else value
                if one_number and picked[name].ndim != 2:
                    raise UserError(f"{name} gives {picked[name].ndim - 2} more axes per character; pick one "
                                    f"number per character, e.g. {base}[0]")
            outputs = [log_softmax(fw.logits, axis=-1), *fw.state.values(), *picked.values()]
            fn = engine.compile_function([x, *state.values()], outputs, self.mode)
            self._internals[T, names, one_number] = fn, list(picked)
        return self._internals[T, names, one_number]

    def evaluate(self, codes: np.ndarray, batch: int, seq: int, guesses: bool = False) -> EvalResult:
        """Bits per character and accuracy of predicting codes[1:] from what precedes.

        The text is read as `batch` contiguous streams with state carried
        between windows of `seq` (as in training), then a shorter last window;
        only the fewer than `batch` characters that do not divide evenly are
        left out, and `chars` says how many were predicted.
        """
        lp, guess, y = self.scores(codes, batch, seq)
        return EvalResult(
            bpc=-float(lp.astype(np.float64).sum()) / lp.size / math.log(2),
            accuracy=float((guess == y).mean()),
            chars=int(lp.size),
            guesses=guess.reshape(-1) if guesses else None,
        )

    def evaluate_heldout(self, codes: np.ndarray, batch: int, seq: int) -> EvalResult:
        """`evaluate` held-out text as at most `batch` streams of at least STREAM_CHARS
        characters each (see `streams`)."""
        return self.evaluate(codes, streams(len(codes), batch), seq)

    def scores(self, codes: np.ndarray, batch: int, seq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per predicted character, read as in `evaluate`: log p of the target,
        the guessed code and the target, each (batch, length) in stream order
        (with batch 1, entry i is the prediction of codes[i + 1])."""
        if len(codes) < 2:
            raise UserError("text too short to evaluate: it needs at least 2 characters")
        if not self.zero_state(1):
            seq = max(seq, STATELESS_WINDOW)
        seq = min(seq, len(codes) - 1)
        streams = Streams(codes, max(1, min(batch, (len(codes) - 1) // seq)), seq, "text to evaluate")
        return self.read(streams.xs, streams.ys, seq)

    def read(self, xs: np.ndarray, ys: np.ndarray, seq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Streams xs (B, L) followed by ys (B, L), each read from the initial state with
        state carried between windows of `seq` (whole windows, then a shorter last one):
        log p of the targets, the guesses and the targets, each (B, L).

        A shorter window (the last, or the only one) is padded to `seq` and its padding's
        outputs dropped, so that one compiled shape reads every text (the models are
        causal: a position's outputs never read what follows it, and the state after
        the padding is not used)."""
        state = self.zero_state(len(xs))
        lps, guesses, targets = [], [], []
        for start in range(0, xs.shape[1], seq):
            x, y = (np.ascontiguousarray(a[:, start : start + seq].T, dtype=np.int32) for a in (xs, ys))  # (T, B)
            real = len(x)
            if real < seq:
                x, y = (np.pad(a, ((0, seq - real), (0, 0))) for a in (x, y))
            lp, guess, target, state = self.window(x, y, state)
            lps.append(lp[:real].T)  # (B, T)
            guesses.append(guess[:real].T)
            targets.append(target[:real].T)
        return tuple(np.concatenate(parts, axis=1) for parts in (lps, guesses, targets))

    def generate(
        self,
        vocab: Vocab,
        prime: str,
        length: int,
        rng: np.random.Generator,
        temperature: float = 1.0,
        top_k: int | None = None,
    ) -> str:
        """`length` characters sampled after reading `prime` (at least one character)."""
        if not (math.isfinite(temperature) and temperature > 0):
            raise UserError(f"--temperature must be a finite number above 0, not {temperature}")
        if top_k is not None and top_k < 1:
            raise UserError(f"--top-k must be at least 1 (or left out: the whole vocabulary), not {top_k}")
        if not prime:
            raise UserError("--prime must have at least one character")
        codes = vocab.encode(prime, "the priming text")
        step, state = self.step_fn(), list(self.zero_state(1).values())
        for code in codes[:-1]:
            _, *state = step(np.array([[code]], np.int32), *state)
        out, code = [], int(codes[-1])
        for _ in range(length):
            signals.check()
            logits, *state = step(np.array([[code]], np.int32), *state)
            code = sample_code(engine.to_numpy(logits)[0], rng, temperature, top_k)
            out.append(code)
        return vocab.decode(out)


def sample_code(logits: np.ndarray, rng: np.random.Generator, temperature: float, top_k: int | None) -> int:
    """One code drawn from softmax(logits / temperature), restricted to the top k."""
    z = logits.astype(np.float64) / temperature
    if top_k is not None and 0 < top_k < len(z):
        cut = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= cut, z, -np.inf)
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))
