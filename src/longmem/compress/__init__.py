"""`longmem compress` and `decompress`: next-symbol prediction as a lossless compressor.

An LSTM predicts each byte from the ones before it and a range coder
(constriction's, with its `Categorical` model, `perfect=False` on both sides)
spends -log2 p bits on it, so the archive's size is the model's bits per
byte. The model is online, as in lstm-compress and nncp: encoder and decoder
start from the same seeded weights and train on the data as it is coded, so
nothing but the archive is needed to decode.

    online.py   the model both sides run, and the grid of rows it codes
    mixing.py   the context models mixed with the LSTM's prediction
    format2.py  the context models of format 2 archives, so that they still decode
    archive.py  the archive's bytes and the fingerprint of the floats
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from typing import NamedTuple

import numpy as np

from longmem.compress import archive
from longmem.compress.archive import FORMAT, MAGIC, describe, differs, fingerprint, pack, unpack
from longmem.compress.mixing import letter_codes
from longmem.compress.online import OnlineModel, code_grid, row_length
from longmem.config import CompressConfig, check_compress
from longmem.errors import UserError
from longmem.nets import lstm
from longmem.signals import StopFlag

__all__ = ["FORMAT", "MAGIC", "Base", "compress", "decompress", "pack", "stats", "unpack"]

LARGE = 300_000  # bytes: a progress bar above this


class Base(NamedTuple):
    """A trained run that an archive starts from (`--model RUN`)."""

    params: dict
    digest: str  # SHA-256 of its parameters (checkpoint.digest)
    chars: str  # its vocabulary


def byte_symbols(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The bytes present (sorted) and the data as indices into them."""
    raw = np.frombuffer(data, dtype=np.uint8)
    present = np.flatnonzero(np.bincount(raw, minlength=256))
    lookup = np.zeros(256, np.uint8)
    lookup[present] = np.arange(len(present))
    return present.astype(np.uint8), lookup[raw]


def compress(data: bytes, settings: CompressConfig, base: Base | None = None, quiet: bool = True) -> bytes:
    """The archive of `data`, optionally starting from a trained run's LSTM."""
    check_compress(settings)
    if base is None:
        table, codes = byte_symbols(data)
        symbols = {"kind": "bytes", "present": bytes(table).hex()}
        n_symbols, params, letters = len(table), None, letter_codes(table)
    else:
        layers, hidden = lstm.sizes(base.params)
        settings = dataclasses.replace(settings, hidden=hidden, layers=layers)
        codes = _run_codes(data, base.chars)
        symbols = {"kind": "run", "digest": base.digest}
        n_symbols, params, letters = len(base.chars), lstm.add_symbol(base.params), letter_codes(base.chars)
    coder, family = _coder("encode")
    length = len(codes)
    bits_per_tenth, counts = np.zeros(10), np.zeros(10)  # bits and symbols per tenth of the coding
    row = row_length(length, settings)
    grid = np.zeros(settings.segments * row, _code_type(n_symbols))
    grid[:length] = codes
    grid = grid.reshape(settings.segments, row)
    bar = _progress(len(data), quiet, "compress")

    def column(t, probabilities, real):
        chosen = grid[:, t]
        if real.any():
            coder.encode(chosen[real].astype(np.int32), family, probabilities[real])
            bits = -np.log2(probabilities[real, chosen[real]])
            bits_per_tenth[t * 10 // row] += bits.sum()
            counts[t * 10 // row] += real.sum()
            bar.update(int(real.sum()))
            bar.set_postfix({"bits/symbol": f"{bits_per_tenth.sum() / max(1, bar.n):.3f}"}, refresh=False)
        return chosen

    fmt = archive.FORMAT  # read now: a test makes archives of an earlier format
    _run(lambda: OnlineModel(settings, n_symbols, params, letters, fmt), n_symbols, length, column, bar)
    header = {
        "format": fmt, "settings": dataclasses.asdict(settings), "symbols": symbols, "length": length,
        "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "fingerprint": fingerprint(),
        "stats": {"bits": round(float(bits_per_tenth.sum()), 1),
                  "deciles": [round(float(b / c), 4) if c else None for b, c in zip(bits_per_tenth, counts)]},
    }
    return pack(header, coder.get_compressed())


def decompress(archive: bytes, base: Base | None = None, quiet: bool = True, name: str = "the archive") -> bytes:
    """The original data of an archive, checked against its SHA-256."""
    header, payload = unpack(archive, name)
    settings, symbols, length = header["settings"], header["symbols"], header["length"]
    if symbols["kind"] == "run":
        if base is None:
            raise UserError(f"{name} was made from a trained run (parameters sha256 {symbols['digest'][:16]}...); "
                            "give that run with --model RUN")
        if base.digest != symbols["digest"]:
            raise UserError(f"{name} was made from a run with parameters sha256 {symbols['digest'][:16]}...; "
                            f"--model gives {base.digest[:16]}...")
        n_symbols, params, letters = len(base.chars), lstm.add_symbol(base.params), letter_codes(base.chars)
    elif base is not None:
        raise UserError(f"{name} was made without --model; decompress it without one")
    else:
        table = np.frombuffer(bytes.fromhex(symbols["present"]), dtype=np.uint8)
        n_symbols, params, letters = len(table), None, letter_codes(table)
    here = fingerprint()
    elsewhere = differs(header["fingerprint"], here)
    if elsewhere:
        print(f"longmem: warning: {name} was made with {describe(header['fingerprint'])}, this is "
              f"{describe(here)}; if the floats differ, decoding fails", file=sys.stderr)
    decoder, family = _coder("decode", payload)
    grid = np.zeros((settings.segments, row_length(length, settings)), _code_type(n_symbols))
    bar = _progress(header.get("bytes", length), quiet, "decompress")

    def column(t, probabilities, real):
        if real.any():
            grid[real, t] = decoder.decode(family, probabilities[real])
            bar.update(int(real.sum()))
        return grid[:, t]

    try:
        _run(lambda: OnlineModel(settings, n_symbols, params, letters, header["format"]), n_symbols, length, column,
             bar)
    except (ValueError, RuntimeError) as e:
        raise UserError(_mismatch(name, elsewhere, f"the decoder failed: {e}")) from None
    codes = grid.reshape(-1)[:length]
    data = bytes(table[codes]) if symbols["kind"] == "bytes" else "".join(base.chars[c] for c in codes).encode()
    if hashlib.sha256(data).hexdigest() != header["sha256"]:
        raise UserError(_mismatch(name, elsewhere, "the decoded data does not match its checksum"))
    return data


def _code_type(n_symbols: int):
    """The narrowest type of the grid's codes: a byte each, for bytes (memory: the grid is
    as long as the data)."""
    return np.uint8 if n_symbols <= 256 else np.int32


def _coder(direction: str, payload: np.ndarray | None = None):
    """constriction's range encoder (or decoder of `payload`) and the model family both use."""
    import constriction

    family = constriction.stream.model.Categorical(perfect=False)
    if direction == "encode":
        return constriction.stream.queue.RangeEncoder(), family
    return constriction.stream.queue.RangeDecoder(payload), family


def _run(model, n_symbols: int, length: int, column, bar) -> None:
    """Code the grid with a fresh online model, `model()` (nothing to code with one symbol
    or none), then close the progress bar. SIGINT and SIGTERM stop it between columns: an
    interrupt raised wherever Python happens to be can land in one of JAX's garbage-collection
    callbacks, which swallow it, and the coding went on to the end."""

    def checked(t, probabilities, real):
        if stop.signal is not None:
            raise KeyboardInterrupt
        return column(t, probabilities, real)

    try:
        with StopFlag() as stop:
            if length and n_symbols > 1:
                made = model()
                code_grid(made, made.settings, length, checked)
            if stop.signal is not None:
                raise KeyboardInterrupt
    finally:
        bar.close()


def _mismatch(name: str, elsewhere: bool, what: str) -> str:
    cause = ("most likely because this machine computes the model's floats differently (see the warning "
             "above): decompress it where it was made") if elsewhere else "the archive is damaged"
    return f"{name}: {what}; {cause}"


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
