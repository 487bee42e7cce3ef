"""Ctrl-C stops a command even when JAX swallows its first KeyboardInterrupt; a StopFlag
still holds it back for the work to stop where it can."""

import signal
import time

import numpy as np
import pytest

from longmem import engine, signals
from longmem.config import ModelConfig
from longmem.corpus import Vocab
from longmem.nets import NETS
from longmem.predict import Predictor


def swallowed_ctrl_c(held: signals.Interrupts):
    """Ctrl-C to this process, its KeyboardInterrupt dropped: caught here, or swallowed by
    JAX's garbage-collection callback if the handler happens to run inside it."""
    try:
        signal.raise_signal(signal.SIGINT)
        for _ in range(1000):  # the handler runs between bytecodes, soon after
            if held.pending:
                break
            time.sleep(0.001)
    except KeyboardInterrupt:
        pass
    assert held.pending, "the SIGINT handler did not run"


def test_a_swallowed_ctrl_c_stops_the_next_window(rng):
    cfg = ModelConfig(hidden=4)
    predictor = Predictor(engine.share_all(NETS["lstm"].init_params(cfg, 5, rng)), cfg, "JAX")
    x = np.zeros((3, 2), np.int32)
    before = signal.getsignal(signal.SIGINT)  # Python's own handler (pytest-xdist's workers ignore SIGINT)
    with signals.Interrupts() as held:
        signals.check()  # nothing pending yet
        swallowed_ctrl_c(held)
        with pytest.raises(KeyboardInterrupt):
            predictor.window(x, x, predictor.zero_state(2))
        with pytest.raises(KeyboardInterrupt):
            predictor.generate(Vocab("abcde"), "a", 3, rng)  # sampling checks before each character
    assert signal.getsignal(signal.SIGINT) is before
    signals.check()  # the handler from before again: nothing to raise


def test_under_a_stop_flag_ctrl_c_only_sets_the_flag():
    with signals.Interrupts() as held, signals.StopFlag() as stop:
        signal.raise_signal(signal.SIGINT)
        time.sleep(0.01)
        signals.check()  # the work under the flag decides when to stop
        assert stop.signal == signal.SIGINT and not held.pending
