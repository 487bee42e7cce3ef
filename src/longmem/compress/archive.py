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

from longmem.config import CompressConfig
from longmem.errors import UserError
from longmem.files import versions

MAGIC = b"LMZ\x00"
FORMAT = 2  # 2: context models mixed in (`orders`); format 1 archives had none


def fingerprint() -> dict:
    """What the floats depend on: backend, library versions, the CPU and how many cores
    this process may use (XLA splits its products over them, and the sums' order follows)."""
    found = versions(("longmem", "pytensor", "jax", "jaxlib", "numpy", "constriction"), missing=None)
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


def describe(fp: dict) -> str:
    """A fingerprint in words, for the warning that a machine differs."""
    v = fp.get("versions", {})
    return (f"{fp.get('backend')} on {fp.get('machine')} (cpu {fp.get('cpu')}, {fp.get('cores')} cores), "
            f"pytensor {v.get('pytensor')}, "
            f"jax {v.get('jax')}, numpy {v.get('numpy')}")


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
        header["settings"] = CompressConfig(**({"orders": []} if version == 1 else {}) | header["settings"])
    except (ValueError, TypeError, KeyError, zlib.error):
        raise UserError(f"{name} has a header this longmem cannot read") from None
    payload = np.frombuffer(archive[end_head + 8 : total - 4], dtype="<u4").astype(np.uint32)
    return header, payload
