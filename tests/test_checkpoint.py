import errno
import os

import numpy as np
import pytest

from longmem import checkpoint, files
from longmem.checkpoint import CheckpointError
from longmem.errors import UserError


def _save(directory, step, keep=2):
    arrays = {"param/w": np.full((3, 2), step, np.float32), "state/h": np.arange(4, dtype=np.float32)}
    return checkpoint.save(directory, step, arrays, {"step": step, "rng": {"big": 2**100}}, keep)


def test_round_trip(tmp_path):
    path = _save(tmp_path, 7)
    arrays, meta = checkpoint.read(path)
    assert meta == {"step": 7, "rng": {"big": 2**100}}
    np.testing.assert_array_equal(arrays["param/w"], np.full((3, 2), 7, np.float32))
    assert arrays["param/w"].dtype == np.float32


def test_keeps_only_the_newest(tmp_path):
    for step in (10, 20, 30, 40):
        _save(tmp_path, step, keep=2)
    assert [p.name for p in checkpoint.checkpoints(tmp_path)] == ["ckpt-000000030.lmc", "ckpt-000000040.lmc"]


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        i = len(data) - 100
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :])
    elif how == "format":
        path.write_bytes(data.replace(b'"format": 1', b'"format": 9', 1))
    elif how == "garbage":
        path.write_bytes(b"not a checkpoint at all")


@pytest.mark.parametrize(
    "how, message",
    [("truncated", "truncated"), ("flipped", "checksum mismatch"), ("format", "format 9"),
     ("garbage", "not a longmem checkpoint")],
)
def test_damaged_newest_falls_back_to_previous(tmp_path, capsys, how, message):
    _save(tmp_path, 10)
    newest = _save(tmp_path, 20)
    _damage(newest, how)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.read(newest)
    arrays, meta, path = checkpoint.load_latest(tmp_path)
    assert meta["step"] == 10 and path.name == "ckpt-000000010.lmc"
    assert message.split()[0] in capsys.readouterr().err


def test_no_valid_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        checkpoint.load_latest(tmp_path)
    _damage(_save(tmp_path, 5), "flipped")
    with pytest.raises(CheckpointError, match="no valid checkpoint.*checksum"):
        checkpoint.load_latest(tmp_path)


def test_full_disk_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    _save(tmp_path, 10)

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", no_space)
    with pytest.raises(UserError, match="No space left on device.*previous checkpoint is intact"):
        _save(tmp_path, 20)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000000010.lmc"]  # no temporary left
    assert checkpoint.load_latest(tmp_path)[1]["step"] == 10
