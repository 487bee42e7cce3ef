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

import codecs
import dataclasses
import hashlib
import io
import sys
from typing import BinaryIO, NamedTuple

import numpy as np

from longmem.compress import archive
from longmem.compress.archive import FORMAT, MAGIC, describe, differs, fingerprint, most_words, pack, unpack
from longmem.compress.mixing import letter_codes
from longmem.compress.online import OnlineModel, blocks, code_grid, row_length
from longmem.config import CompressConfig, check_compress
from longmem.errors import UserError
from longmem.nets import lstm
from longmem.signals import StopFlag

__all__ = ["FORMAT", "MAGIC", "Base", "compress", "compress_stream", "decompress", "decompress_stream", "pack",
           "stats", "unpack"]

LARGE = 300_000  # bytes: a progress bar above this


class Base(NamedTuple):
    """A trained run that an archive starts from (`--model RUN`)."""

    params: dict
    digest: str  # SHA-256 of its parameters (checkpoint.digest)
    chars: str  # its vocabulary


CHUNK = 1 << 20  # bytes read at a time


class Source:
    """The data to compress, from a seekable binary file, read a piece at a time: first
    scanned whole (its length, SHA-256 and symbols), then read again as codes, a block at a
    time. As bytes (the symbols present, sorted) or, with `chars`, as a run's characters
    (it must be UTF-8 made of them only)."""

    def __init__(self, file: BinaryIO, chars: str | None = None):
        self.file, self.chars = file, chars
        digest, self.bytes, counts, length = hashlib.sha256(), 0, np.zeros(256, np.int64), 0
        index = None if chars is None else {ch: i for i, ch in enumerate(chars)}
        decoder = codecs.getincrementaldecoder("utf-8")()
        file.seek(0)
        while piece := file.read(CHUNK):
            digest.update(piece)
            if index is None:
                counts += np.bincount(np.frombuffer(piece, np.uint8), minlength=256)
            else:
                length += len(_known(_decoded(decoder, piece, self.bytes), index))
            self.bytes += len(piece)
        if index is not None:
            _decoded(decoder, b"", self.bytes, final=True)
        self.sha256 = digest.hexdigest()
        if index is None:
            self.present = np.flatnonzero(counts).astype(np.uint8)
            self.lookup = np.zeros(256, np.uint8)
            self.lookup[self.present] = np.arange(len(self.present))
            self.length = self.bytes
        else:
            self.index, self.length = index, length
        file.seek(0)
        self.decoder, self.pending, self.again = codecs.getincrementaldecoder("utf-8")(), "", hashlib.sha256()

    def codes(self, n: int) -> np.ndarray:
        """The next `n` symbols' codes."""
        if self.chars is None:
            piece = self.file.read(n)
            self.again.update(piece)
            raw = np.frombuffer(piece, np.uint8)
            if len(raw) < n or np.any(self.present[self.lookup[raw]] != raw):
                raise self.changed()
            return self.lookup[raw]
        while len(self.pending) < n:
            piece = self.file.read(CHUNK)
            if not piece:
                raise self.changed()
            self.again.update(piece)
            self.pending += self.decoder.decode(piece, final=False)
        text, self.pending = self.pending[:n], self.pending[n:]
        try:
            return np.fromiter((self.index[ch] for ch in text), dtype=np.int32, count=n)
        except KeyError:
            raise self.changed() from None

    def check_unchanged(self) -> None:
        """Once every symbol has been read: the data read the second time was the first's."""
        self.again.update(self.file.read())
        if self.again.hexdigest() != self.sha256:
            raise self.changed()

    @staticmethod
    def changed() -> UserError:
        return UserError("the input changed while it was being compressed; compress it again")


def _decoded(decoder, piece: bytes, offset: int, final: bool = False) -> str:
    """`piece` (at byte `offset` of the data) decoded as UTF-8, or a UserError."""
    before = len(decoder.getstate()[0])
    try:
        return decoder.decode(piece, final=final)
    except UnicodeDecodeError as e:
        raise UserError(f"--model codes text in the run's characters, and this is not UTF-8 "
                        f"(byte {offset - before + e.start})") from None


def _known(text: str, index: dict) -> str:
    missing = sorted(set(text) - set(index))
    if missing:
        raise UserError(f"--model: the data has characters the run never saw, e.g. {missing[0]!r}; "
                        "compress it without --model")
    return text


def compress(data: bytes, settings: CompressConfig, base: Base | None = None, quiet: bool = True) -> bytes:
    """The archive of `data`, whole (`compress_stream` writes it as it goes)."""
    sink = io.BytesIO()
    compress_stream(io.BytesIO(data), sink, settings, base, quiet)
    return sink.getvalue()


def compress_stream(file: BinaryIO, sink: BinaryIO, settings: CompressConfig, base: Base | None = None,
                    quiet: bool = True) -> dict:
    """Write the archive of the seekable `file` to `sink`, a block at a time, optionally
    starting from a trained run's LSTM; return its header, with the statistics."""
    check_compress(settings)
    if base is None:
        source = Source(file)
        symbols = {"kind": "bytes", "present": bytes(source.present).hex()}
        n_symbols, params, letters = len(source.present), None, letter_codes(source.present)
    else:
        layers, hidden = lstm.sizes(base.params)
        settings = dataclasses.replace(settings, hidden=hidden, layers=layers)
        source = Source(file, base.chars)
        symbols = {"kind": "run", "digest": base.digest}
        n_symbols, params, letters = len(base.chars), lstm.add_symbol(base.params), letter_codes(base.chars)
    fmt = archive.FORMAT  # read now: a test makes archives of an earlier format
    length, sizes = source.length, blocks(source.length, settings, fmt)
    header = {"format": fmt, "settings": dataclasses.asdict(settings), "symbols": symbols, "length": length,
              "bytes": source.bytes, "sha256": source.sha256, "fingerprint": fingerprint()}
    writer = archive.Writer(sink, header, fmt)
    columns = sum(row_length(size, settings) for size in sizes)
    bits_per_tenth, counts = np.zeros(10), np.zeros(10)  # bits and symbols per tenth of the coding
    bar = _progress(source.bytes, quiet, "compress")

    def block(code, size, done):
        grid = np.zeros(settings.segments * row_length(size, settings), _code_type(n_symbols))
        grid[:size] = source.codes(size)
        grid = grid.reshape(settings.segments, -1)
        coder, family = _coder("encode")

        def column(t, probabilities, real):
            chosen = grid[:, t]
            if real.any():
                coder.encode(chosen[real].astype(np.int32), family, probabilities[real])
                bits = -np.log2(probabilities[real, chosen[real]])
                tenth = (done + t) * 10 // columns
                bits_per_tenth[tenth] += bits.sum()
                counts[tenth] += real.sum()
                bar.update(int(real.sum()))
                bar.set_postfix({"bits/symbol": f"{bits_per_tenth.sum() / max(1, counts.sum()):.3f}"}, refresh=False)
            return chosen

        code(size, column)
        writer.block(coder.get_compressed())

    _run(lambda: OnlineModel(settings, n_symbols, params, letters, fmt), settings, n_symbols, sizes, block, bar)
    source.check_unchanged()
    stats = {"bits": round(float(bits_per_tenth.sum()), 1),
             "deciles": [round(float(b / c), 4) if c else None for b, c in zip(bits_per_tenth, counts)]}
    writer.close(stats)
    return header | {"stats": stats}


def decompress(packed: bytes, base: Base | None = None, quiet: bool = True, name: str = "the archive") -> bytes:
    """The original data of a whole archive, checked against its SHA-256."""
    sink = io.BytesIO()
    decompress_stream(io.BytesIO(packed), sink, base, quiet, name)
    return sink.getvalue()


def decompress_stream(file: BinaryIO, sink: BinaryIO, base: Base | None = None, quiet: bool = True,
                      name: str = "the archive") -> None:
    """Decode the archive read from `file`, writing the data to `sink` a block at a time,
    and check it against its SHA-256 at the end (a UserError if it fails: the caller
    keeps or drops what was written)."""
    reader = archive.Reader(file, name)
    header = reader.header
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
    sizes = blocks(length, settings, reader.version)
    payloads = reader.payloads(len(sizes), most_words(settings))
    digest = hashlib.sha256()
    bar = _progress(header.get("bytes", length), quiet, "decompress")

    def block(code, size, done):
        decoder, family = _coder("decode", next(payloads))
        grid = np.zeros((settings.segments, row_length(size, settings)), _code_type(n_symbols))

        def column(t, probabilities, real):
            if real.any():
                grid[real, t] = decoder.decode(family, probabilities[real])
                bar.update(int(real.sum()))
            return grid[:, t]

        try:
            code(size, column)
        except (ValueError, RuntimeError) as e:
            raise UserError(_mismatch(name, elsewhere, f"the decoder failed: {e}")) from None
        codes = grid.reshape(-1)[:size]
        data = bytes(table[codes]) if symbols["kind"] == "bytes" else "".join(base.chars[c] for c in codes).encode()
        digest.update(data)
        sink.write(data)

    _run(lambda: OnlineModel(settings, n_symbols, params, letters, reader.version), settings, n_symbols, sizes,
         block, bar)
    reader.trailer()
    if digest.hexdigest() != header["sha256"]:
        raise UserError(_mismatch(name, elsewhere, "the decoded data does not match its checksum"))


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


def _run(model, settings: CompressConfig, n_symbols: int, sizes: list[int], block, bar) -> None:
    """Code the blocks of `sizes` symbols in order, `block(code, size, columns before it)`,
    where `code(size, column)` runs one online model, made by `model()`, over a block's grid
    (nothing to predict with one symbol or none: then it does nothing); then close the
    progress bar. SIGINT and SIGTERM stop it between columns: an interrupt raised wherever
    Python happens to be can land in one of JAX's garbage-collection callbacks, which
    swallow it, and the coding went on to the end."""
    try:
        with StopFlag() as stop:
            made = model() if sizes and n_symbols > 1 else None

            def code(size, column):
                def checked(t, probabilities, real):
                    if stop.signal is not None:
                        raise KeyboardInterrupt
                    return column(t, probabilities, real)

                if made is not None:
                    code_grid(made, settings, size, checked)

            done = 0
            for size in sizes:
                block(code, size, done)
                done += row_length(size, settings)
            if stop.signal is not None:
                raise KeyboardInterrupt
    finally:
        bar.close()


def _mismatch(name: str, elsewhere: bool, what: str) -> str:
    cause = ("most likely because this machine computes the model's floats differently (see the warning "
             "above): decompress it where it was made") if elsewhere else "the archive is damaged"
    return f"{name}: {what}; {cause}"


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
