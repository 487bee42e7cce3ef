"""`longmem compress` / `decompress`: exact round trips, and every bad archive refused in one line."""

import dataclasses
import hashlib
import io
import json
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

from helpers import TINY, run_cli
from longmem import compress as lmz
from longmem.compress import archive as lmz_format
from longmem.compress import format2, mixing
from longmem.config import CompressConfig
from longmem.errors import UserError

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
    """Through pipes, in blocks of 4 x 25 symbols: 5 blocks, the last one shorter."""
    data = b"through a pipe " * 30
    args = [sys.executable, "-m", "longmem"]
    packed = subprocess.run([*args, "compress", "-", *map(str, SMALL), "--block", "25"], input=data,
                            capture_output=True, check=True).stdout
    assert packed[:4] == lmz.MAGIC and len(lmz.unpack(packed)[1]) == 5
    unpacked = subprocess.run([*args, "decompress", "-", "--quiet"], input=packed, capture_output=True, check=True)
    assert unpacked.stdout == data


def test_blocks_stream_and_one_block_codes_as_format_3_did(monkeypatch, tmp_path, capsys):
    """Format 4 reads and writes a block at a time, the model going on from block to block;
    a file in one block is coded exactly as format 3 coded it whole, which still decodes.
    A stream cut inside its last block leaves nothing."""
    data = "Blöcke über Blöcke, ünd noch einmal. ".encode() * 12
    settings = CompressConfig(segments=4, window=8, hidden=16)
    one = lmz.compress(data, settings)
    monkeypatch.setattr(lmz, "CHUNK", 7)  # read in pieces that cut characters
    blocked = lmz.compress(data, dataclasses.replace(settings, block=40))
    monkeypatch.setattr(lmz_format, "FORMAT", 3)
    old = lmz.compress(data, settings)
    monkeypatch.undo()
    assert len(data) == 492 and len(lmz.unpack(one)[1]) == 1
    assert len(lmz.unpack(blocked)[1]) == 4  # 160, 160, 160 and 12 bytes
    assert np.array_equal(lmz.unpack(one)[1][0], lmz.unpack(old)[1][0])
    assert lmz.unpack(old)[0]["stats"] == lmz.unpack(one)[0]["stats"]
    assert lmz.decompress(old) == lmz.decompress(one) == lmz.decompress(blocked) == data
    (tmp_path / "b.lmz").write_bytes(blocked[:-40])
    code, _, err = run_cli(capsys, "decompress", tmp_path / "b.lmz", "--quiet")
    assert code == 1 and "is truncated" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.lmz"]  # no output, no temporary


def test_text_for_a_run_is_read_in_pieces_as_characters(monkeypatch):
    chars = "aöb✓\n"
    text = "aö✓b\nöö✓✓a\n" * 3
    monkeypatch.setattr(lmz, "CHUNK", 5)  # every multi-byte character is cut somewhere
    source = lmz.Source(io.BytesIO(text.encode()), chars)
    assert (source.length, source.bytes) == (len(text), len(text.encode()))
    codes = np.concatenate([source.codes(n) for n in (4, 11, 0, len(text) - 15)])
    assert codes.tolist() == [chars.index(c) for c in text]
    with pytest.raises(UserError, match=r"not UTF-8 \(byte 7\)"):
        lmz.Source(io.BytesIO("aöb✓".encode() + b"\xff"), chars)
    with pytest.raises(UserError, match="never saw, e.g. 'x'"):
        lmz.Source(io.BytesIO(b"abx"), chars)


@pytest.mark.parametrize("change", [b"b", b"z"], ids=["a byte it has", "a byte it lacks"])
def test_a_file_that_changes_between_the_two_readings_is_refused(change):
    data = io.BytesIO(b"abcabc")
    source = lmz.Source(data)
    data.getbuffer()[0] = change[0]
    with pytest.raises(UserError, match="changed while it was being compressed"):
        source.codes(6)
        source.check_unchanged()


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
    if how == "future":  # an archive of a newer format: its header's checksum holds
        (head_len,) = struct.unpack("<I", good[6:10])
        fixed = lmz.MAGIC + struct.pack("<H", lmz.FORMAT + 1) + good[6 : 10 + head_len]
        return fixed + struct.pack("<I", zlib.crc32(fixed)) + good[14 + head_len :]
    raise ValueError(how)


def _rewritten(good: bytes, change) -> bytes:
    """The archive with its JSON header changed by `change(header)` and the header's
    checksum made right again, as another writer, a bug or a hostile file would make it."""
    (head_len,) = struct.unpack("<I", good[6:10])
    header = json.loads(zlib.decompress(good[10 : 10 + head_len]))
    change(header)
    head = zlib.compress(json.dumps(header).encode())
    fixed = good[:6] + struct.pack("<I", len(head)) + head
    return fixed + struct.pack("<I", zlib.crc32(fixed)) + good[14 + head_len :]


@pytest.mark.parametrize("change", [
    lambda h: h.pop("symbols"), lambda h: h["settings"].update(segments=0),
    lambda h: h["settings"].update(hidden="abc"), lambda h: h["settings"].update(block=10**12),
    lambda h: h["settings"].update(window=0), lambda h: h.update(settings=[]),
    lambda h: h["symbols"].update(present="zz"), lambda h: h.update(length=-5),
], ids=["no symbols", "segments 0", "hidden abc", "block 10**12", "window 0", "settings a list", "bad hex",
        "negative length"])
def test_a_malformed_header_with_a_good_checksum_is_one_line(archive, capsys, change):
    """Issue 25, item 3: every field is checked in one place before anything is allocated."""
    archive.write_bytes(_rewritten(archive.read_bytes(), change))
    code, _, err = run_cli(capsys, "decompress", archive, "--quiet")
    assert code == 1 and err.count("\n") == 1 and "has a header this longmem cannot read" in err, err
    assert not (archive.parent / "a.txt").exists()


@pytest.mark.parametrize("at", [4, 5, 10 + 3])  # the version, and a byte of the header's checksum (after it)
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
    """A damaged archive whose own CRCs were recomputed still fails: the original's SHA-256."""
    header, payloads = lmz.unpack(archive.read_bytes())
    payloads[0][-2] ^= 0xFF  # inside the coded payload
    header["settings"] = vars(header["settings"])
    archive.write_bytes(lmz.pack(header, payloads))
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
    header["settings"] = {k: v for k, v in dataclasses.asdict(header["settings"]).items()
                          if k not in ("orders", "memory")}
    monkeypatch.setattr(lmz_format, "FORMAT", 1)  # pack writes the format it is given
    old = lmz.pack(header, payload)
    monkeypatch.undo()
    assert struct.unpack("<H", old[4:6])[0] == 1
    assert lmz.decompress(old) == data


def test_archives_of_format_2_decode_with_the_context_models_they_were_made_with(monkeypatch):
    data = b"an archive from before the hashed tables, the words and the match model. " * 20
    monkeypatch.setattr(lmz_format, "FORMAT", 2)  # compress and pack make the format they are given
    old = lmz.compress(data, CompressConfig(segments=4, window=8, hidden=16))
    monkeypatch.undo()
    assert struct.unpack("<H", old[4:6])[0] == 2
    assert old != lmz.compress(data, CompressConfig(segments=4, window=8, hidden=16))  # format 3 codes otherwise
    assert lmz.decompress(old) == data


@pytest.mark.parametrize("halve_at", [60_000, 7])
def test_format_2_context_models_learn_a_pattern_and_give_distributions(monkeypatch, halve_at):
    monkeypatch.setattr(format2, "_HALVE_AT", halve_at)
    m = format2.Mixer(symbols=3, segments=2, orders=[1, 2])
    uniform = np.log(np.full((2, 3), 1 / 3))
    for i, s in enumerate([0, 1, 2] * 40):
        p = m.mix(uniform)
        assert np.allclose(p.sum(axis=1), 1) and (p > 0).all()
        m.update(np.array([s, 2 - s]), np.array([True, i < 60]))  # segment 1 ends early
    assert m.counts.max() < halve_at  # counts are halved before they overflow
    assert m.mix(uniform)[0, 0] > 0.9  # after ... 1, 2 comes 0
    assert m.weights[:, :2].sum() > m.weights[:, 2:].sum()  # the orders earn more weight than the LSTM's guess


def bits_of(mixer: mixing.Mixer, codes: np.ndarray, noise=None) -> np.ndarray:
    """The bits the mixer spends on each column of `codes` (T, B), learning as it goes; the
    LSTM's part is uniform, or random guesses drawn from the generator `noise`."""
    B, V = mixer.t.p.shape
    out = []
    for column in codes:
        real = np.ones(len(column), bool)
        guess = np.full((B, V), 1 / V) if noise is None else noise.dirichlet(np.ones(V), size=B)
        p = mixer.mix(np.log(guess), real)
        assert np.allclose(p.sum(axis=1), 1) and (p > 0).all()
        out.append(-np.log2(p[np.arange(len(column)), column]))
        mixer.update(column, real)
    return np.array(out)


def test_the_mixer_learns_a_pattern_and_its_counts_never_overflow():
    m = mixing.Mixer(symbols=3, segments=2, orders=[1, 2], memory_mb=1, letters=np.zeros(3, np.int64))
    cycle = np.array([[s, 2 - s] for s in [0, 1, 2] * 200])
    bits = bits_of(m, cycle, noise=np.random.default_rng(0))
    assert bits[-30:].mean() < 0.05 < 1.0 < bits[:3].mean()  # after ... 1, 2 comes 0
    assert m.t.counts.max() <= mixing.LIMIT  # rows are halved before a uint8 overflows
    start = mixing.START_WEIGHT * len(m.t.weights)
    weight = m.t.weights.sum(axis=0)
    assert weight[-1] < start < weight[1] and weight[:2].sum() > 2 * weight[-1]  # a guessing LSTM loses weight


def test_the_match_model_codes_a_long_repeat_for_almost_nothing():
    rng = np.random.default_rng(0)
    first = rng.integers(0, 40, 3000)  # random: no order of counts predicts it
    codes = np.concatenate([first, first])[:, None]
    m = mixing.Mixer(symbols=40, segments=1, orders=[1, 2], memory_mb=2, letters=np.zeros(40, np.int64))
    bits = bits_of(m, codes)[:, 0]
    assert bits[:3000].mean() > 5.0  # log2 40 = 5.32
    assert bits[3200:].mean() < 0.2  # the match model found the first copy


def test_the_secondary_estimation_starts_close_to_the_identity():
    rng = np.random.default_rng(1)
    m = mixing.Mixer(symbols=5, segments=3, orders=[1], memory_mb=1, letters=np.zeros(5, np.int64))
    p = rng.dirichlet(np.ones(5), size=3)
    m.t.p[:] = p
    for b in range(3):
        mixing._refine(m.t, b, 5)
    assert np.allclose(m.t.p.sum(axis=1), 1)
    assert np.abs(m.t.p - p).max() < 0.01


def test_count_tables_fit_the_memory_they_are_given_and_a_full_table_still_codes(tmp_path, capsys, small_text):
    assert mixing.table_rows(1, 251) == 4096  # 1 MB over rows of 251 counts, a check and a priority
    assert mixing.table_rows(320, 80) * 85 <= 320 * 2**20
    data = small_text.read_bytes()[:4000]
    tiny = roundtrip(tmp_path, capsys, data, "--memory", 1, name="tiny.txt")  # 4,000 rows for some 20,000 contexts
    assert lmz.unpack(tiny.read_bytes())[0]["settings"].memory == 1
    code, _, err = run_cli(capsys, "compress", small_text, "-o", tmp_path / "x.lmz", "--memory", 0)
    assert code == 1 and "--memory" in err and not (tmp_path / "x.lmz").exists()


def test_letters_are_case_folded_and_bytes_from_128_count():
    assert list(mixing.letter_codes([65, 97, 48, 200, 32])) == [97, 97, 0, 200, 0]
    assert list(mixing.letter_codes(["Q", "q", "é", "\n"])) == [113, 113, 233, 0]


def test_a_fingerprint_differs_only_in_what_the_archive_recorded():
    here = lmz_format.fingerprint()
    older = {**here, "versions": {k: v for k, v in here["versions"].items() if k != "numba"}}  # format 2's
    assert not lmz_format.differs(here, here) and not lmz_format.differs(older, here)
    assert lmz_format.differs({**older, "versions": {**older["versions"], "numpy": "0.1"}}, here)
    assert lmz_format.differs({**here, "cores": here["cores"] + 1}, here)


def test_an_interrupted_compress_leaves_no_file(tmp_path):
    rng = np.random.default_rng(0)
    big = tmp_path / "big.txt"
    big.write_bytes(bytes(rng.choice(list(b"abcdefgh \n"), size=400_000)))  # above the progress bar's size
    out = tmp_path / "big.lmz"
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "longmem", "compress", big, "-o", out, *map(str, SMALL[:-1])],
                                stderr=err)
        for _ in range(1200):  # until it is coding (its progress bar shows bits per symbol)
            if b"bits/symbol" in (tmp_path / "stderr").read_bytes() or proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
    assert "longmem: interrupted" in (tmp_path / "stderr").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt", "stderr"]  # no archive, no temporary


def test_more_than_256_symbols_keep_their_tables_bounded():
    m = mixing.Mixer(symbols=600, segments=2, orders=[1, 2], memory_mb=4, letters=np.zeros(600, np.int64))
    assert m.t.curves.shape[0] == 1 + mixing.BEFORE and m.t.ring.dtype == np.int32
    codes = np.tile(np.array([[599, 3], [300, 598], [7, 599]]), (100, 1))  # a pattern of symbols above 255
    bits = bits_of(m, codes)
    assert bits[-30:].mean() < 0.5 < 5.0 < bits[:3].mean()
