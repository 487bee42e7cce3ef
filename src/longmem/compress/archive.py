"""The .lmz archive: its byte layout, and the fingerprint of what makes the
floats reproducible.

    MAGIC, format (u16), header length (u32), header (zlib'd JSON: settings,
    symbol set, original length and SHA-256, the fingerprint, statistics),
    payload length (u64, in 32-bit words), payload, CRC-32 of everything
    before it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import struct
import zlib

import numpy as np

from longmem.config import CompressConfig, check_compress
from longmem.errors import UserError
from longmem.files import machine_memory, readable_size, versions

MAGIC = b"LMZ\x00"
FORMAT = 3  # 3: hashed bounded tables, word and match models (mixing.py); 2: context models (format2.py);
# 1: the LSTM alone


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


def pack(header: dict, payload: np.ndarray) -> bytes:
    head = zlib.compress(json.dumps(header, sort_keys=True).encode(), 9)
    body = MAGIC + struct.pack("<HI", FORMAT, len(head)) + head + struct.pack("<Q", len(payload)) + \
        payload.astype("<u4").tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(archive: bytes, name: str = "the archive") -> tuple[dict, np.ndarray]:
    """The header and payload of an archive; a UserError says what is wrong with a bad one.

    The checksum is checked first, so a damaged length or version field is called
    damage; "newer format" is said only of an archive whose checksum holds. The header
    is checked whole (`check_header`) before anything is allocated from it.
    """
    if archive[:4] != MAGIC:
        raise UserError(f"{name} is not a longmem archive (it does not start with {MAGIC!r})")
    if len(archive) < 22:  # magic, format, header length, payload length, checksum
        raise UserError(f"{name} is truncated")
    if struct.unpack("<I", archive[-4:])[0] != zlib.crc32(archive[:-4]):
        (head_len,) = struct.unpack("<I", archive[6:10])
        words_at = 10 + head_len
        short = len(archive) < words_at + 12 or \
            len(archive) < words_at + 12 + 4 * struct.unpack("<Q", archive[words_at : words_at + 8])[0]
        raise UserError(f"{name} is {'truncated or damaged' if short else 'damaged'} (its checksum does not match)")
    version, head_len = struct.unpack("<HI", archive[4:10])
    if version > FORMAT:
        raise UserError(f"{name} is in archive format {version}, newer than this longmem reads ({FORMAT}); "
                        "upgrade longmem to decompress it")
    end_head = 10 + head_len
    (words,) = struct.unpack("<Q", archive[end_head : end_head + 8]) if len(archive) >= end_head + 8 else (-1,)
    if end_head + 8 + 4 * words + 4 != len(archive):
        raise UserError(f"{name} has lengths that do not add up to its size; it cannot be read")
    try:
        header = json.loads(zlib.decompress(archive[10:end_head]))
    except (ValueError, zlib.error):
        raise UserError(f"{name} has a header this longmem cannot read") from None
    header["settings"] = check_header(header, version, name)
    payload = np.frombuffer(archive[end_head + 8 : -4], dtype="<u4").astype(np.uint32)
    return header, payload


# The header's fields and their types (settings are a CompressConfig, checked by config).
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
    if header["length"] < 0 or 8 * header["bytes"] > machine_memory():  # the grid and the output, at least
        raise bad(f"length {header['length']:,}: more than this machine's {readable_size(machine_memory())} can hold")
    if version >= 3 and settings.memory * 2**20 > machine_memory():
        raise bad(f"memory {settings.memory} MB: more than this machine's {readable_size(machine_memory())} can hold")
    return settings
