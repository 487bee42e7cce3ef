"""`longmem compress` / `decompress`: exact round trips, and every bad archive refused in one line."""

import dataclasses
import hashlib
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from helpers import TINY, run_cli
from longmem import compress as lmz
from longmem.compress import archive as lmz_format
from longmem.compress import mixing
from longmem.config import CompressConfig

SMALL = ["--segments", 4, "--window", 8, "--hidden", 16, "--quiet"]  # tiny and quick


def roundtrip(tmp_path, capsys, data: bytes, *flags, name="data.bin"):
    original = tmp_path / name
    original.write_bytes(data)
    code, _, err = run_cli(capsys, "compress", original, *SMALL, *flags)
    assert code == 0, err
    archive = tmp_path / f"{name}.lmz"
    restored = tmp_path / f"{name}.restored"
    code, _, err = run_cli(capsys, "decompress", archive, "-o", restored, "--quiet",
                           *(flags[flags.index("--model"):flags.index("--model") + 2] if "--model" in flags else []))
    assert code == 0, err
    assert restored.read_bytes() == data
    return archive


@pytest.mark.parametrize("data", [
    b"", b"x", bytes(range(256)), "naïve “quotes” ✓\r\n".encode() * 20,
    bytes(np.random.default_rng(3).integers(0, 256, 700, dtype=np.uint8)),  # binary, many columns per segment
], ids=["empty", "one byte", "all 256 values", "utf-8 text", "binary"])
def test_round_trips_exactly(tmp_path, capsys, data):
    archive = roundtrip(tmp_path, capsys, data)
    header, _ = lmz.unpack(archive.read_bytes())
    assert header["length"] == len(data) and header["sha256"] == hashlib.sha256(data).hexdigest()
    assert header["settings"] == CompressConfig(segments=4, window=8, hidden=16)


def test_a_text_longer_than_a_window_per_segment_compresses(tmp_path, capsys, small_text):
    """Several training windows per segment, and the model learns: well under 8 bits a byte."""
    data = small_text.read_bytes()[:3000]
    archive = roundtrip(tmp_path, capsys, data, "--lr", 0.01, name="small.txt")
    header, _ = lmz.unpack(archive.read_bytes())
    assert header["stats"]["bits"] / len(data) < 4.5
    assert header["stats"]["bits"] / 8 < 0.6 * len(data) and archive.stat().st_size < 0.8 * len(data)
    deciles = [d for d in header["stats"]["deciles"] if d is not None]
    assert len(deciles) == 10 and deciles[-1] < deciles[0]  # the online model's learning curve falls
    code, out, _ = run_cli(capsys, "compress", tmp_path / "small.txt", "-o", tmp_path / "again.lmz", "--stats",
                           *SMALL, "--lr", 0.01)
    assert code == 0 and "bits per symbol" in out and out.count("%") == 10
    assert (tmp_path / "again.lmz").read_bytes() == archive.read_bytes()  # deterministic


def test_standard_input_and_output(tmp_path):
    data = b"through a pipe " * 30
    args = [sys.executable, "-m", "longmem"]
    packed = subprocess.run([*args, "compress", "-", *map(str, SMALL)], input=data, capture_output=True,
                            check=True).stdout
    assert packed[:4] == lmz.MAGIC
    unpacked = subprocess.run([*args, "decompress", "-", "--quiet"], input=packed, capture_output=True, check=True)
    assert unpacked.stdout == data


@pytest.fixture(scope="module")
def good_archive(tmp_path_factory) -> bytes:
    """One archive for the tests that damage it (compressing once saves compiling)."""
    from longmem.cli import main

    original = tmp_path_factory.mktemp("good") / "a.txt"
    original.write_bytes(b"an archive to damage, " * 20)
    assert main(["compress", str(original), *map(str, SMALL)]) == 0
    return original.with_name("a.txt.lmz").read_bytes()


@pytest.fixture
def archive(tmp_path, good_archive):
    (tmp_path / "a.txt.lmz").write_bytes(good_archive)
    return tmp_path / "a.txt.lmz"


def _damaged(good: bytes, how: str) -> bytes:
    if how == "truncated":
        return good[: len(good) // 2]
    if how == "flipped":
        i = len(good) - 9
        return good[:i] + bytes([good[i] ^ 0x10]) + good[i + 1 :]
    if how == "magic":
        return b"PK\x03\x04" + good[4:]
    if how == "future":  # a whole archive of a newer format: its checksum holds
        body = lmz.MAGIC + struct.pack("<H", lmz.FORMAT + 1) + good[6:-4]
        return body + struct.pack("<I", zlib.crc32(body))
    raise ValueError(how)


def _rewritten(good: bytes, change) -> bytes:
    """The archive with its JSON header changed by `change(header)` and the checksum
    made right again, as another writer, a bug or a hostile file would make it."""
    (head_len,) = struct.unpack("<I", good[6:10])
    header = json.loads(zlib.decompress(good[10 : 10 + head_len]))
    change(header)
    head = zlib.compress(json.dumps(header).encode())
    body = good[:6] + struct.pack("<I", len(head)) + head + good[10 + head_len : -4]
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("change", [
    lambda h: h.pop("symbols"), lambda h: h["settings"].update(segments=0),
    lambda h: h["settings"].update(hidden="abc"), lambda h: h.update(length=10**12, bytes=10**12),
    lambda h: h["settings"].update(window=0), lambda h: h.update(settings=[]),
    lambda h: h["symbols"].update(present="zz"), lambda h: h.update(length=-5),
], ids=["no symbols", "segments 0", "hidden abc", "length 10**12", "window 0", "settings a list", "bad hex",
        "negative length"])
def test_a_malformed_header_with_a_good_checksum_is_one_line(archive, capsys, change):
    """Issue 25, item 3: every field is checked in one place before anything is allocated."""
    archive.write_bytes(_rewritten(archive.read_bytes(), change))
    code, _, err = run_cli(capsys, "decompress", archive, "--quiet")
    assert code == 1 and err.count("\n") == 1 and "has a header this longmem cannot read" in err, err
    assert not (archive.parent / "a.txt").exists()


@pytest.mark.parametrize("at", [4, 5, 10 + 3])  # the version, and a byte of the payload's length (after the header)
def test_a_flipped_byte_in_the_fixed_header_is_damage(archive, capsys, at):
    """Issue 25, item 12: the checksum is checked first; no "newer format", no absurd length."""
    good = archive.read_bytes()
    (head_len,) = struct.unpack("<I", good[6:10])
    i = at if at < 10 else head_len + at
    archive.write_bytes(good[:i] + bytes([good[i] ^ 0x40]) + good[i + 1 :])
    code, _, err = run_cli(capsys, "decompress", archive, "--quiet")
    assert code == 1 and err.count("\n") == 1 and "damaged (its checksum does not match)" in err, err
    assert "newer" not in err and "bytes of" not in err


@pytest.mark.parametrize("how, said", [("truncated", "is truncated"), ("flipped", "is damaged"),
                                       ("magic", "is not a longmem archive"), ("future", "newer than this")])
def test_bad_archives_are_one_line_and_leave_nothing(archive, capsys, how, said):
    archive.write_bytes(_damaged(archive.read_bytes(), how))
    code, _, err = run_cli(capsys, "decompress", archive, "--quiet")
    assert code == 1 and said in err and err.count("\n") == 1
    assert sorted(p.name for p in archive.parent.iterdir()) == ["a.txt.lmz"]  # no output, no temporary


def test_a_payload_that_decodes_wrong_is_caught_by_the_checksum(archive, capsys):
    """A damaged archive whose own CRC was recomputed still fails: the original's SHA-256."""
    good = archive.read_bytes()
    body = bytearray(good[:-4])
    body[-5] ^= 0xFF  # inside the coded payload
    archive.write_bytes(bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))))
    code, _, err = run_cli(capsys, "decompress", archive, "--quiet")
    assert code == 1 and "a.txt.lmz" in err and ("checksum" in err or "decoder failed" in err)
    assert not (archive.parent / "a.txt").exists()


def test_another_machine_is_warned_about(archive, capsys, monkeypatch):
    header, payload = lmz.unpack(archive.read_bytes())
    header["fingerprint"]["cpu"] = "elsewhere"
    header["settings"] = vars(header["settings"])
    archive.write_bytes(lmz.pack(header, payload))
    code, _, err = run_cli(capsys, "decompress", archive, "--quiet")
    assert code == 0 and "warning" in err and "elsewhere" in err  # same floats here, so it decodes


def test_files_are_never_overwritten_and_missing_ones_are_one_line(tmp_path, capsys, archive):
    (tmp_path / "a.txt").write_bytes(b"keep me")
    code, _, err = run_cli(capsys, "decompress", archive, "--quiet")
    assert code == 1 and "exists" in err and (tmp_path / "a.txt").read_bytes() == b"keep me"
    code, _, err = run_cli(capsys, "compress", tmp_path / "a.txt", "-o", archive)
    assert code == 1 and "exists" in err
    code, _, err = run_cli(capsys, "compress", tmp_path / "missing.txt")
    assert code == 1 and "no such file" in err
    code, _, err = run_cli(capsys, "decompress", tmp_path / "a.txt")
    assert code == 1 and "-o" in err
    code, _, err = run_cli(capsys, "compress", tmp_path / "a.txt", "-o", tmp_path / "b.lmz", "--segments", 0)
    assert code == 1 and "--segments" in err


def test_a_trained_run_as_the_starting_point(tmp_path, capsys, small_text):
    run_dir = tmp_path / "run"
    assert run_cli(capsys, "train", "--text", small_text, "--run-dir", run_dir, "--steps", 30, "--layers", 1,
                   *TINY)[0] == 0
    text = small_text.read_bytes()[:600]
    archive = roundtrip(tmp_path, capsys, text, "--model", run_dir, name="t.txt")
    header, _ = lmz.unpack(archive.read_bytes())
    digest = json.loads(run_cli(capsys, "inspect", run_dir, "--json")[1])["digest"]
    assert header["symbols"] == {"kind": "run", "digest": digest}
    code, _, err = run_cli(capsys, "decompress", archive, "-o", tmp_path / "x", "--quiet")
    assert code == 1 and "--model RUN" in err and not (tmp_path / "x").exists()
    other = tmp_path / "other"
    assert run_cli(capsys, "train", "--text", small_text, "--run-dir", other, "--steps", 5, "--layers", 1,
                   *TINY)[0] == 0
    code, _, err = run_cli(capsys, "decompress", archive, "-o", tmp_path / "x", "--model", other, "--quiet")
    assert code == 1 and "--model gives" in err
    (tmp_path / "b.bin").write_bytes(b"\xff\xfe")
    code, _, err = run_cli(capsys, "compress", tmp_path / "b.bin", "--model", run_dir, *SMALL)
    assert code == 1 and "not UTF-8" in err


def test_the_context_models_help_and_can_be_left_out(tmp_path, capsys, small_text):
    data = small_text.read_bytes()[:3000]
    mixed = roundtrip(tmp_path, capsys, data, "--lr", 0.01, name="mixed.txt")
    alone = roundtrip(tmp_path, capsys, data, "--lr", 0.01, "--orders", name="alone.txt")
    assert lmz.unpack(alone.read_bytes())[0]["settings"].orders == []
    assert lmz.unpack(mixed.read_bytes())[0]["settings"].orders == CompressConfig().orders
    assert mixed.stat().st_size < 0.8 * alone.stat().st_size


def test_archives_of_format_1_decode_without_context_models(monkeypatch):
    data = b"an archive from before the context models, " * 10
    header, payload = lmz.unpack(lmz.compress(data, CompressConfig(segments=4, window=8, hidden=16, orders=[])))
    header["settings"] = {k: v for k, v in dataclasses.asdict(header["settings"]).items() if k != "orders"}
    monkeypatch.setattr(lmz_format, "FORMAT", 1)  # pack writes the format it is given
    old = lmz.pack(header, payload)
    monkeypatch.undo()
    assert struct.unpack("<H", old[4:6])[0] == 1
    assert lmz.decompress(old) == data


@pytest.mark.parametrize("halve_at", [60_000, 7])
def test_context_models_learn_a_pattern_and_give_distributions(monkeypatch, halve_at):
    monkeypatch.setattr(mixing, "_HALVE_AT", halve_at)
    m = mixing.Mixer(symbols=3, segments=2, orders=[1, 2])
    uniform = np.log(np.full((2, 3), 1 / 3))
    for i, s in enumerate([0, 1, 2] * 40):
        p = m.mix(uniform)
        assert np.allclose(p.sum(axis=1), 1) and (p > 0).all()
        m.update(np.array([s, 2 - s]), np.array([True, i < 60]))  # segment 1 ends early
    assert m.counts.max() < halve_at  # counts are halved before they overflow
    assert m.mix(uniform)[0, 0] > 0.9  # after ... 1, 2 comes 0
    assert m.weights[:, :2].sum() > m.weights[:, 2:].sum()  # the orders earn more weight than the LSTM's guess
