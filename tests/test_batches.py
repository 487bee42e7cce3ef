import numpy as np
import pytest

from longmem.batches import Cursor, Streams
from longmem.errors import UserError


def test_windows_read_contiguous_streams_and_targets_are_next_chars():
    codes = np.arange(1000) % 251
    s = Streams(codes.astype(np.uint8), batch=4, seq=10)
    length = 999 // 4
    assert s.windows == length // 10
    x0, y0 = s.window(0)
    x1, _ = s.window(1)
    assert x0.shape == (10, 4) and x0.dtype == np.int32
    for b in range(4):
        stream = codes[b * length : (b + 1) * length + 1]
        np.testing.assert_array_equal(x0[:, b], stream[:10])
        np.testing.assert_array_equal(y0[:, b], stream[1:11])
        # Window 1 continues each stream where window 0 stopped, so the
        # carried hidden state belongs to the text that follows.
        np.testing.assert_array_equal(x1[:, b], stream[10:20])
        assert y0[-1, b] == x1[0, b]


def test_advance_wraps_into_a_new_pass():
    s = Streams(np.zeros(101, np.uint8), batch=2, seq=10)
    assert s.windows == 5
    cursor = Cursor()
    wrapped = [s.advance(cursor) for _ in range(5)]
    assert wrapped == [False, False, False, False, True]
    assert cursor == Cursor(epoch=1, window=0)


def test_too_short_text_is_a_clear_error():
    with pytest.raises(UserError, match="too short.*at least 81"):
        Streams(np.zeros(80, np.uint8), batch=8, seq=10)
    Streams(np.zeros(81, np.uint8), batch=8, seq=10)  # exactly enough
