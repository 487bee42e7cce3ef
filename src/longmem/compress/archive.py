"""The .lmz archive: its byte layout, and the fingerprint of what makes the
floats reproducible.

Format 4 is written and read as a stream, in parts that each carry a CRC-32:

    MAGIC, format (u16), header length (u32), header (zlib'd JSON: settings,
    symbol set, original length and SHA-256, the fingerprint), CRC-32 of all that;
    for each block of the data (their number follows from the header):
    payload length (u64, in 32-bit words), payload, CRC-32 of the two;
    trailer length (u32), trailer (zlib'd JSON: statistics), CRC-32 of the two.

Formats 1 to 3 hold one payload and are read whole: MAGIC, format, header length,
header (with the statistics), payload length, payload, CRC-32 of everything before it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from longmem.config import CompressConfig, check_compress
from longmem.errors import UserError
from longmem.files import machine_memory, readable_size, versions

MAGIC = b"LMZ\x00"
FORMAT = 4  # 4: written and read in blocks, as a stream; 3: hashed bounded tables, word and match models
# (mixing.py); 2: context models (format2.py); 1: the LSTM alone
PART_MAX = 1 << 24  # bytes: the most a header or trailer may claim (a damaged length is not allocated)


def fingerprint() -> dict:
    """What the floats depend on: backend, library versions, the CPU and how many cores
    this process may use (XLA splits its products over them, and the sums' order follows)."""
    found = versions(("longmem", "pytensor", "jax", "jaxlib", "numpy", "numba", "constriction"), missing=None)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"backend": "jax-cpu", "versions": found, "machine": platform.machine(), "cpu": _cpu_flags(),
            "cores": cores}


def _cpu_flags() -> str:
    """A short digest of the CPU's feature flags (which vector instructions XLA may use)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = platform.processor()
    return hashlib.sha256(" ".join(sorted(flags.split(":")[-1].split())).encode()).hexdigest()[:16]


def differs(made: dict, here: dict) -> bool:
    """Whether this machine's fingerprint differs from the one an archive was made with, in
    what that archive recorded (archives of format 2 and before did not record numba)."""
    for key, value in made.items():
        if key == "versions" and isinstance(value, dict):
            if any(here["versions"].get(package) != version for package, version in value.items()):
                return True
        elif here.get(key) != value:
            return True
    return False


def describe(fp: dict) -> str:
    """A fingerprint in words, for the warning that a machine differs."""
    v = fp.get("versions", {})
    return (f"{fp.get('backend')} on {fp.get('machine')} (cpu {fp.get('cpu')}, {fp.get('cores')} cores), "
            f"pytensor {v.get('pytensor')}, "
            f"jax {v.get('jax')}, numpy {v.get('numpy')}" + (f", numba {v['numba']}" if "numba" in v else ""))


class Writer:
    """An archive written to `sink` as it is made: the header now, each block's payload as
    it is coded (`block`), the statistics at the end (`close`). Archives before format 4
    (which only tests make now) are one payload with the statistics in the header: their
    parts are kept and written at `close`."""

    def __init__(self, sink: BinaryIO, header: dict, fmt: int):
        self.sink, self.header, self.fmt, self.payloads = sink, header, fmt, []
        if fmt >= 4:
            fixed = _fixed(header, fmt)
            sink.write(fixed + struct.pack("<I", zlib.crc32(fixed)))

    def block(self, payload: np.ndarray) -> None:
        if self.fmt < 4:
            self.payloads.append(payload)
            return
        part = struct.pack("<Q", len(payload)) + payload.astype("<u4").tobytes()
        self.sink.write(part + struct.pack("<I", zlib.crc32(part)))

    def close(self, stats: dict) -> None:
        if self.fmt < 4:
            payload = np.concatenate(self.payloads) if self.payloads else np.zeros(0, np.uint32)
            body = _fixed(self.header | {"stats": stats}, self.fmt) + struct.pack("<Q", len(payload)) + \
                payload.astype("<u4").tobytes()
            self.sink.write(body + struct.pack("<I", zlib.crc32(body)))
            return
        head = zlib.compress(json.dumps({"stats": stats}, sort_keys=True).encode(), 9)
        part = struct.pack("<I", len(head)) + head
        self.sink.write(part + struct.pack("<I", zlib.crc32(part)))


def _fixed(header: dict, fmt: int) -> bytes:
    head = zlib.compress(json.dumps(header, sort_keys=True).encode(), 9)
    return MAGIC + struct.pack("<HI", fmt, len(head)) + head


class Reader:
    """An archive read from `source` as it is decoded: the header, checked whole, on
    opening; then each block's payload (`payloads`), each checked against its CRC-32
    before it is used; then the statistics (`trailer`) and the end of the stream.
    A UserError says what is wrong with a bad archive, in one line.

    The checksum of each part is checked before what it holds is believed, so a damaged
    length or version field is called damage; "newer format" is said only of an archive
    whose header's checksum holds. Archives before format 4 are read whole and checked
    as they always were."""

    def __init__(self, source: BinaryIO, name: str = "the archive"):
        self.source, self.name = source, name
        fixed = source.read(10)
        if not fixed or fixed[:4] != MAGIC[: len(fixed[:4])]:
            raise UserError(f"{name} is not a longmem archive (it does not start with {MAGIC!r})")
        if len(fixed) < 10:
            raise UserError(f"{name} is truncated")
        version, head_len = struct.unpack("<HI", fixed[4:10])
        if version < 4:
            self.header, payload = _unpack_whole(fixed + source.read(), name)
            self.version, self._payloads, self._stats = version, [payload], self.header.pop("stats")
            return
        if head_len > PART_MAX:
            raise UserError(f"{name} is damaged (its header's length is impossible)")
        rest = self._take(head_len + 4)
        if struct.unpack("<I", rest[-4:])[0] != zlib.crc32(fixed + rest[:-4]):
            raise UserError(f"{name} is damaged (its checksum does not match)")
        if version > FORMAT:
            raise UserError(f"{name} is in archive format {version}, newer than this longmem reads ({FORMAT}); "
                            "upgrade longmem to decompress it")
        self.header, self.version, self._payloads, self._stats = _json(rest[:-4], "header", name), version, None, None
        self.header["settings"] = check_header(self.header, version, name)

    def payloads(self, count: int, most: int) -> Iterator[np.ndarray]:
        """The payloads of `count` blocks, each of at most `most` words."""
        if self._payloads is not None:
            yield from self._payloads
            return
        for _ in range(count):
            (words,) = struct.unpack("<Q", self._take(8))
            if words > most:
                raise UserError(f"{self.name} is damaged (a block's length is impossible)")
            rest = self._take(4 * words + 4)
            if struct.unpack("<I", rest[-4:])[0] != zlib.crc32(struct.pack("<Q", words) + rest[:-4]):
                raise UserError(f"{self.name} is damaged (its checksum does not match)")
            yield np.frombuffer(rest[:-4], dtype="<u4").astype(np.uint32)

    def trailer(self) -> dict:
        """The statistics, once every payload has been read; then the archive must end."""
        if self._stats is not None:
            return self._stats
        (length,) = struct.unpack("<I", self._take(4))
        if length > PART_MAX:
            raise UserError(f"{self.name} is damaged (its trailer's length is impossible)")
        rest = self._take(length + 4)
        if struct.unpack("<I", rest[-4:])[0] != zlib.crc32(struct.pack("<I", length) + rest[:-4]):
            raise UserError(f"{self.name} is damaged (its checksum does not match)")
        if self.source.read(1):
            raise UserError(f"{self.name} has bytes after its end; it cannot be read")
        stats = _json(rest[:-4], "trailer", self.name).get("stats")
        if not (isinstance(stats, dict) and isinstance(stats.get("bits"), (int, float))
                and isinstance(stats.get("deciles"), list)):
            raise UserError(f"{self.name} has a trailer this longmem cannot read (stats)")
        return stats

    def _take(self, n: int) -> bytes:
        """The next `n` bytes; fewer is a truncated archive."""
        data = self.source.read(n)
        if len(data) < n:
            raise UserError(f"{self.name} is truncated")
        return data


def _json(packed: bytes, part: str, name: str) -> dict:
    try:
        found = json.loads(zlib.decompress(packed))
    except (ValueError, zlib.error):
        found = None
    if not isinstance(found, dict):
        raise UserError(f"{name} has a {part} this longmem cannot read")
    return found


def pack(header: dict, payloads: list[np.ndarray]) -> bytes:
    """A whole archive in the format FORMAT names now (`header` holds the statistics)."""
    sink = io.BytesIO()
    writer = Writer(sink, {k: v for k, v in header.items() if k != "stats"}, FORMAT)
    for payload in payloads:
        writer.block(payload)
    writer.close(header["stats"])
    return sink.getvalue()


def unpack(archive: bytes, name: str = "the archive") -> tuple[dict, list[np.ndarray]]:
    """The header (with the statistics) and payloads of a whole archive."""
    from longmem.compress.online import blocks

    reader = Reader(io.BytesIO(archive), name)
    settings = reader.header["settings"]
    count = len(blocks(reader.header["length"], settings, reader.version))
    payloads = list(reader.payloads(count, most_words(settings)))
    return reader.header | {"stats": reader.trailer()}, payloads


def most_words(settings: CompressConfig) -> int:
    """The most 32-bit words a block's payload can take: no symbol costs 32 bits."""
    return settings.segments * settings.block + 16


def _unpack_whole(archive: bytes, name: str) -> tuple[dict, np.ndarray]:
    """The header and payload of an archive of formats 1 to 3."""
    if len(archive) < 22:  # magic, format, header length, payload length, checksum
        raise UserError(f"{name} is truncated")
    if struct.unpack("<I", archive[-4:])[0] != zlib.crc32(archive[:-4]):
        (head_len,) = struct.unpack("<I", archive[6:10])
        words_at = 10 + head_len
        short = len(archive) < words_at + 12 or \
            len(archive) < words_at + 12 + 4 * struct.unpack("<Q", archive[words_at : words_at + 8])[0]
        raise UserError(f"{name} is {'truncated or damaged' if short else 'damaged'} (its checksum does not match)")
    version, head_len = struct.unpack("<HI", archive[4:10])
    end_head = 10 + head_len
    (words,) = struct.unpack("<Q", archive[end_head : end_head + 8]) if len(archive) >= end_head + 8 else (-1,)
    if end_head + 8 + 4 * words + 4 != len(archive):
        raise UserError(f"{name} has lengths that do not add up to its size; it cannot be read")
    header = _json(archive[10:end_head], "header", name)
    header["settings"] = check_header(header, version, name)
    payload = np.frombuffer(archive[end_head + 8 : -4], dtype="<u4").astype(np.uint32)
    return header, payload


# The header's fields and their types (settings are a CompressConfig, checked by config).
# From format 4 the statistics are in the trailer.
FIELDS = {"format": int, "settings": dict, "symbols": dict, "length": int, "bytes": int, "sha256": str,
          "fingerprint": dict, "stats": dict}


def check_header(header, version: int, name: str) -> CompressConfig:
    """The header's settings, once every field has been checked: keys, types, ranges, and
    lengths this machine can hold; anything else is one line naming the field."""

    def bad(what: str):
        return UserError(f"{name} has a header this longmem cannot read ({what})")

    if not isinstance(header, dict):
        raise bad("not a JSON object")
    for key, kind in FIELDS.items():
        if key == "stats" and version >= 4:
            continue
        if type(header.get(key)) is not kind:
            raise bad(f"{key}: missing, or not a {kind.__name__}")
    try:
        settings = CompressConfig(**({"orders": []} if version == 1 else {}) | header["settings"])
        check_compress(settings)
    except TypeError:
        raise bad("settings: unknown or missing fields") from None
    except UserError as e:
        raise bad(f"settings: {e}") from None
    symbols = header["symbols"]
    if symbols.get("kind") == "bytes":
        try:
            present = bytes.fromhex(symbols.get("present"))
        except (TypeError, ValueError):
            raise bad("symbols.present: not hexadecimal") from None
        if sorted(set(present)) != list(present) or (not present and header["length"]):
            raise bad("symbols.present: not a sorted set of bytes")
        if header["length"] != header["bytes"]:
            raise bad("length: not the number of bytes")
    elif symbols.get("kind") == "run":
        if not isinstance(symbols.get("digest"), str):
            raise bad("symbols.digest: missing")
        if not header["length"] <= header["bytes"] <= 4 * header["length"]:
            raise bad("bytes: not the UTF-8 size of length characters")
    else:
        raise bad("symbols.kind: neither bytes nor run")
    if header["length"] < 0:
        raise bad("length: negative")
    if version < 4 and 8 * header["bytes"] > machine_memory():  # read whole: the grid and the output, at least
        raise bad(f"length {header['length']:,}: more than this machine's {readable_size(machine_memory())} can hold")
    if version >= 4 and 8 * settings.segments * settings.block > machine_memory():  # a block's grid and data
        raise bad(f"block {settings.block:,}: more than this machine's {readable_size(machine_memory())} can hold")
    if version >= 3 and settings.memory * 2**20 > machine_memory():
        raise bad(f"memory {settings.memory} MB: more than this machine's {readable_size(machine_memory())} can hold")
    return settings
