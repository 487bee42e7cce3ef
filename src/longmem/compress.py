"""`longmem compress` and `decompress`: next-symbol prediction as a lossless compressor.

An LSTM predicts each byte from the ones before it and a range coder
(constriction's, with its `Categorical` model, `perfect=False` on both sides)
spends -log2 p bits on it, so the archive's size is the model's bits per
byte. The model is online, as in lstm-compress and nncp: encoder and decoder
start from the same seeded weights and train on the data as it is coded, so
nothing but the archive is needed to decode.

The data is cut into `segments` equal rows coded in lockstep (one batched
step per column); after each `window` columns both sides train one step on
them (truncated backpropagation from the state at the window's start), and
`replay` more steps on earlier windows drawn from a seeded generator. The
decoder can only go one column at a time, so the encoder does too: both get
their probabilities from the same compiled function, called in the same
order with the same inputs, and hand identical floats to the coder.

Archive: MAGIC, format (u16), header length (u32), header (zlib'd JSON: settings,
symbol set, original length and SHA-256, the fingerprint of what makes the
floats reproducible, statistics), payload length (u64, in 32-bit words),
payload, CRC-32 of everything before it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import struct
import sys
import zlib
from dataclasses import dataclass
from importlib import metadata

import numpy as np

from longmem import mixing
from longmem.errors import UserError

MAGIC = b"LMZ\x00"
FORMAT = 2  # 2: context models mixed in (`orders`); format 1 archives had none
LARGE = 300_000  # bytes: a progress bar above this
REPLAY_KEPT = 2000  # earlier windows kept for replay (their inputs, targets and start state)


@dataclass
class Settings:
    # Defaults tuned on Huck Finn (see the README): few rows, short windows, a high
    # learning rate and one replay make an online model learn fast per byte; the
    # context models mixed in carry it where it knows least (early, and long repeats).
    segments: int = 16  # rows coded in lockstep (B)
    window: int = 10  # columns per training step (T)
    hidden: int = 128  # LSTM cells
    layers: int = 1
    lr: float = 0.03
    optimizer: str = "adam"
    replay: int = 1  # extra training steps per window on earlier windows
    seed: int = 0
    # Orders of the context models mixed with the LSTM (mixing.py); empty: the LSTM alone.
    orders: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 8, 12])

    def check(self) -> None:
        for name in ("segments", "window", "hidden", "layers"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1")
        if self.replay < 0:
            raise UserError("--replay must be at least 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError("--lr must be a positive number")
        if any(not 1 <= k <= 32 for k in self.orders) or len(set(self.orders)) != len(self.orders):
            raise UserError("--orders must be different numbers from 1 to 32")


def fingerprint() -> dict:
    """What the floats depend on: backend, library versions, the CPU and how many cores
    this process may use (XLA splits its products over them, and the sums' order follows)."""
    versions = {}
    for name in ("longmem", "pytensor", "jax", "jaxlib", "numpy", "constriction"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"backend": "jax-cpu", "versions": versions, "machine": platform.machine(), "cpu": _cpu_flags(),
            "cores": cores}


def _cpu_flags() -> str:
    """A short digest of the CPU's feature flags (which vector instructions XLA may use)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = platform.processor()
    return hashlib.sha256(" ".join(sorted(flags.split(":")[-1].split())).encode()).hexdigest()[:16]


class Model:
    """The online model both sides run: predict a column, learn from a window."""

    def __init__(self, settings: Settings, symbols: int, params: dict | None = None):
        from longmem import engine
        from longmem.config import ModelConfig, OptimConfig, RunConfig, TrainConfig
        from longmem.nets import lstm
        from longmem.train import Trainer

        s = settings
        self.symbols, self.start = symbols, symbols  # the input before a row's first symbol
        cfg = RunConfig(model=ModelConfig(layers=s.layers, hidden=s.hidden, dropout=0.0, weight_drop=0.0,
                                                 vocab_size=symbols + 1),
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
        self.mixer = mixing.Mixer(symbols, s.segments, s.orders) if s.orders else None

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """After reading column x (B,): the distribution of the next symbol of each row,
        (B, symbols) float64, computed the same way on both sides."""
        logits, *after = self.predict_fn(x[None].astype(np.int32), *self.state.values())
        self.state = dict(zip(self.state, after))
        z = np.asarray(logits, dtype=np.float64)[:, : self.symbols]
        z -= z.max(axis=1, keepdims=True)
        if self.mixer is not None:
            return self.mixer.mix(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))
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


def _row(length: int, settings: Settings) -> int:
    """Symbols per segment: the data cut into `segments` equal rows (the last ones padded)."""
    return -(-length // settings.segments)


def _code(model: Model, settings: Settings, length: int, column) -> None:
    """Run the model over the grid of `length` symbols in `segments` rows; `column(t,
    probabilities (B, V), real (B,) bool)` returns the codes of column t (0 where not real)."""
    B, T = settings.segments, settings.window
    row = _row(length, settings)
    x = np.full(B, model.start, np.int32)
    position = np.arange(B) * row
    for begin in range(0, row, T):
        start = {k: np.array(v) for k, v in model.state.items()}
        inputs, targets = [], []
        for t in range(begin, min(begin + T, row)):
            real = position + t < length
            codes = column(t, model.probabilities(x), real).astype(np.int32)
            model.observe(codes, real)
            inputs.append(x)
            targets.append(codes)
            x = codes
        if len(inputs) == T and begin + T < row:  # nothing is left to code after the last window
            model.learn(np.stack(inputs), np.stack(targets), start)


# --- symbols -----------------------------------------------------------------------------------


def byte_symbols(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The bytes present (sorted) and the data as indices into them."""
    raw = np.frombuffer(data, dtype=np.uint8)
    present = np.flatnonzero(np.bincount(raw, minlength=256))
    lookup = np.zeros(256, np.int32)
    lookup[present] = np.arange(len(present))
    return present.astype(np.uint8), lookup[raw]


# --- the archive -------------------------------------------------------------------------------


def compress(data: bytes, settings: Settings, base=None, quiet: bool = True, stats: bool = False) -> bytes:
    """The archive of `data`. base: (params, digest, vocab chars) of a trained run to start from."""
    import constriction

    settings.check()
    if base is None:
        table, codes = byte_symbols(data)
        symbols = {"kind": "bytes", "present": bytes(table).hex()}
        n_symbols, params = len(table), None
    else:
        params, digest, chars = base
        layers = sum(1 for name in params if name.endswith(".Wh"))
        settings = dataclasses.replace(settings, hidden=params["lstm.0.Wh"].shape[0], layers=layers)
        codes = _run_codes(data, chars)
        symbols = {"kind": "run", "digest": digest}
        n_symbols, params = len(chars), _with_start(params)
    coder = constriction.stream.queue.RangeEncoder()
    family = constriction.stream.model.Categorical(perfect=False)
    length = len(codes)
    deciles, counts = np.zeros(10), np.zeros(10)  # bits and symbols per tenth of the coding
    row = _row(length, settings)
    grid = np.zeros(settings.segments * row, np.int32)
    grid[:length] = codes
    grid = grid.reshape(settings.segments, row)
    bar = _progress(len(data), quiet, "compress")

    def column(t, probabilities, real):
        chosen = grid[:, t]
        if real.any():
            coder.encode(chosen[real].astype(np.int32), family, probabilities[real])
            bits = -np.log2(probabilities[real, chosen[real]])
            deciles[t * 10 // row] += bits.sum()
            counts[t * 10 // row] += real.sum()
            bar.update(int(real.sum()))
            bar.set_postfix({"bits/symbol": f"{deciles.sum() / max(1, bar.n):.3f}"}, refresh=False)
        return chosen

    if length and n_symbols > 1:  # with one symbol there is nothing to code
        _code(Model(settings, n_symbols, params), settings, length, column)
    bar.close()
    payload = coder.get_compressed()
    header = {
        "format": FORMAT, "settings": dataclasses.asdict(settings), "symbols": symbols, "length": length,
        "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "fingerprint": fingerprint(),
        "stats": {"bits": round(float(deciles.sum()), 1),
                  "deciles": [round(float(b / c), 4) if c else None for b, c in zip(deciles, counts)]},
    }
    return pack(header, payload)


def pack(header: dict, payload: np.ndarray) -> bytes:
    head = zlib.compress(json.dumps(header, sort_keys=True).encode(), 9)
    body = MAGIC + struct.pack("<HI", FORMAT, len(head)) + head + struct.pack("<Q", len(payload)) + \
        payload.astype("<u4").tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(archive: bytes, name: str = "the archive") -> tuple[dict, np.ndarray]:
    """The header and payload of an archive; a UserError says what is wrong with a bad one."""
    if archive[:4] != MAGIC:
        raise UserError(f"{name} is not a longmem archive (it does not start with {MAGIC!r})")
    if len(archive) < 10:
        raise UserError(f"{name} is truncated")
    version, head_len = struct.unpack("<HI", archive[4:10])
    if version > FORMAT:
        raise UserError(f"{name} is in archive format {version}, newer than this longmem reads ({FORMAT}); "
                        "upgrade longmem to decompress it")
    end_head = 10 + head_len
    if len(archive) < end_head + 8:
        raise UserError(f"{name} is truncated")
    (words,) = struct.unpack("<Q", archive[end_head : end_head + 8])
    total = end_head + 8 + 4 * words + 4
    if len(archive) < total:
        raise UserError(f"{name} is truncated ({len(archive):,} bytes of {total:,})")
    if len(archive) > total or struct.unpack("<I", archive[-4:])[0] != zlib.crc32(archive[:-4]):
        raise UserError(f"{name} is damaged (its checksum does not match)")
    try:
        header = json.loads(zlib.decompress(archive[10:end_head]))
        header["settings"] = Settings(**({"orders": []} if version == 1 else {}) | header["settings"])
    except (ValueError, TypeError, KeyError, zlib.error):
        raise UserError(f"{name} has a header this longmem cannot read") from None
    payload = np.frombuffer(archive[end_head + 8 : total - 4], dtype="<u4").astype(np.uint32)
    return header, payload


def decompress(archive: bytes, base=None, quiet: bool = True, name: str = "the archive") -> bytes:
    """The original data of an archive, checked against its SHA-256."""
    import constriction

    header, payload = unpack(archive, name)
    settings, symbols, length = header["settings"], header["symbols"], header["length"]
    if symbols["kind"] == "run":
        if base is None:
            raise UserError(f"{name} was made from a trained run (parameters sha256 {symbols['digest'][:16]}...); "
                            "give that run with --model RUN")
        if base[1] != symbols["digest"]:
            raise UserError(f"{name} was made from a run with parameters sha256 {symbols['digest'][:16]}...; "
                            f"--model gives {base[1][:16]}...")
        n_symbols, params, chars = len(base[2]), _with_start(base[0]), base[2]
    elif base is not None:
        raise UserError(f"{name} was made without --model; decompress it without one")
    else:
        table = np.frombuffer(bytes.fromhex(symbols["present"]), dtype=np.uint8)
        n_symbols, params = len(table), None
    here = fingerprint()
    differs = header["fingerprint"] != here
    if differs:
        print(f"longmem: warning: {name} was made with {_describe(header['fingerprint'])}, this is "
              f"{_describe(here)}; if the floats differ, decoding fails", file=sys.stderr)
    decoder = constriction.stream.queue.RangeDecoder(payload)
    family = constriction.stream.model.Categorical(perfect=False)
    row = _row(length, settings)
    grid = np.zeros((settings.segments, row), np.int32)
    bar = _progress(header.get("bytes", length), quiet, "decompress")

    def column(t, probabilities, real):
        if real.any():
            grid[real, t] = decoder.decode(family, probabilities[real])
            bar.update(int(real.sum()))
        return grid[:, t]

    try:
        if length and n_symbols > 1:
            _code(Model(settings, n_symbols, params), settings, length, column)
    except (ValueError, RuntimeError) as e:
        raise UserError(_mismatch(name, differs, f"the decoder failed: {e}")) from None
    finally:
        bar.close()
    codes = grid.reshape(-1)[:length]
    data = bytes(table[codes]) if symbols["kind"] == "bytes" else "".join(chars[c] for c in codes).encode()
    if hashlib.sha256(data).hexdigest() != header["sha256"]:
        raise UserError(_mismatch(name, differs, "the decoded data does not match its checksum"))
    return data


def _mismatch(name: str, differs: bool, what: str) -> str:
    cause = ("most likely because this machine computes the model's floats differently (see the warning "
             "above): decompress it where it was made") if differs else "the archive is damaged"
    return f"{name}: {what}; {cause}"


def _describe(fp: dict) -> str:
    v = fp.get("versions", {})
    return (f"{fp.get('backend')} on {fp.get('machine')} (cpu {fp.get('cpu')}, {fp.get('cores')} cores), "
            f"pytensor {v.get('pytensor')}, "
            f"jax {v.get('jax')}, numpy {v.get('numpy')}")


def _run_codes(data: bytes, chars: str) -> np.ndarray:
    """The data as codes of a run's characters; it must be UTF-8 made of them only."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"--model codes text in the run's characters, and this is not UTF-8 (byte {e.start})") \
            from None
    index = {ch: i for i, ch in enumerate(chars)}
    missing = sorted(set(text) - set(index))
    if missing:
        raise UserError(f"--model: the data has characters the run never saw, e.g. {missing[0]!r} "
                        f"({len(missing)} in all); compress it without --model")
    return np.fromiter((index[ch] for ch in text), dtype=np.int32, count=len(text))


def _with_start(params: dict) -> dict:
    """A run's LSTM with one more input, the start symbol (its embedding zero), and one
    more output (never coded)."""
    out = dict(params)
    out["lstm.0.Wx"] = np.concatenate([params["lstm.0.Wx"], np.zeros_like(params["lstm.0.Wx"][:1])])
    out["out.W"] = np.concatenate([params["out.W"], np.zeros_like(params["out.W"][:, :1])], axis=1)
    out["out.b"] = np.concatenate([params["out.b"], np.full(1, -30.0, params["out.b"].dtype)])
    return out


def stats(header: dict) -> str:
    """Bits per symbol over the whole and per tenth of the coding (each tenth is a tenth of
    every segment, coded at the same time: the online model's learning curve)."""
    s, n = header["stats"], header["length"]
    lines = [f"{n:,} symbols ({header['bytes']:,} bytes): {s['bits'] / max(1, n):.3f} bits per symbol, "
             f"{s['bits'] / max(1, header['bytes']):.3f} bits per byte of the original"]
    for k, bits in enumerate(s["deciles"]):
        if bits is not None:
            lines.append(f"  {10 * k:3d}-{10 * (k + 1):3d}%  {bits:.3f}")
    return "\n".join(lines)


def _progress(total: int, quiet: bool, what: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=what, file=sys.stderr, mininterval=0.5,
                disable=quiet or total < LARGE)
