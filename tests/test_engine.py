"""Backends, devices and the compiled-program cache."""

import os
import subprocess
import sys

import jax
import pytest

from longmem import engine
from longmem.errors import UserError
from test_cli import TINY, run_cli


@pytest.mark.parametrize("flags, message", [
    (["--devices", "0"], "--devices must be a positive number or all, not '0'"),
    (["--devices", "two"], "--devices must be a positive number or all, not 'two'"),
    (["--devices", "2", "--backend", "c"], "--devices needs --backend jax"),
])
def test_bad_device_counts_are_refused_in_one_line(tmp_path, capsys, small_text, flags, message):
    code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", tmp_path / "r", *TINY, *flags)
    assert code == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_devices_cannot_change_once_jax_has_started():
    jax.devices()  # JAX has started (with one CPU device) in this process
    with pytest.raises(UserError, match="JAX has already started with 1 CPU device"):
        engine.configure("jax", "cpu", "2")


def test_compiled_programs_are_kept_between_commands(tmp_path, small_text):
    """Without JAX's own setting, XLA's programs go to longmem's cache folder."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["LONGMEM_CACHE_DIR"] = str(tmp_path / "cache")
    subprocess.run([sys.executable, "-m", "longmem", "train", "--text", str(small_text), "--run-dir",
                    str(tmp_path / "r"), *map(str, TINY), "--steps", "3"], env=env, check=True,
                   capture_output=True)
    assert any((tmp_path / "cache" / "jax").iterdir())
