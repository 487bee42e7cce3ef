import numpy as np
import pytest

from longmem import plot
from longmem.errors import UserError

STEPS = np.array([10, 20, 30, 40, 50])
VALUES = np.array([[0, 10], [1, 12], [3, 14], [6, 16], [10, 18]], dtype=float)


def test_select_keeps_chosen_elements():
    s, v = plot.transform(STEPS, VALUES, select=[1])
    np.testing.assert_array_equal(v, VALUES[:, [1]])
    with pytest.raises(UserError, match="has 2 elements"):
        plot.transform(STEPS, VALUES, select=[5])


def test_crop_keeps_a_window_of_steps():
    s, v = plot.transform(STEPS, VALUES, crop=plot.parse_crop("20:40"))
    np.testing.assert_array_equal(s, [20, 30])
    s, _ = plot.transform(STEPS, VALUES, crop=plot.parse_crop(":30"))
    np.testing.assert_array_equal(s, [10, 20])


def test_diff_is_the_change_per_record():
    s, v = plot.transform(STEPS, VALUES, diff=True)
    np.testing.assert_array_equal(s, [20, 30, 40, 50])
    np.testing.assert_array_equal(v[:, 0], [1, 2, 3, 4])


def test_smooth_is_a_moving_average_over_whole_windows():
    s, v = plot.transform(STEPS, VALUES, smooth=3)
    np.testing.assert_array_equal(s, [30, 40, 50])
    np.testing.assert_allclose(v[:, 0], [4 / 3, 10 / 3, 19 / 3])
    s, v = plot.transform(STEPS, VALUES, smooth=9)
    assert len(s) == 0


def test_options_apply_in_order_select_crop_diff_smooth():
    s, v = plot.transform(STEPS, VALUES, select=[0], crop=(20, None), diff=True, smooth=2)
    # crop -> steps 20..50 values 1,3,6,10; diff -> 2,3,4 at 30,40,50; smooth 2 -> 2.5,3.5
    np.testing.assert_array_equal(s, [40, 50])
    np.testing.assert_allclose(v[:, 0], [2.5, 3.5])


def test_bad_option_text_is_a_user_error():
    with pytest.raises(UserError):
        plot.parse_crop("10-20")
    with pytest.raises(UserError):
        plot.parse_select("1,x")


def test_select_names_elements_of_the_value_not_positions_among_the_kept():
    indices = [0, 4, 9, 13]  # what --track-max kept of a 14-element value
    assert plot.kept_positions([9, 0], indices, 14) == [2, 0]
    assert plot.kept_positions([-1], indices, 14) == [3]
    assert plot.kept_positions([5, 1], None, 14) == [5, 1]
    with pytest.raises(UserError, match=r"--select 5: element not kept \(--track-max kept 4 of 14: 0, 4, 9, 13\)"):
        plot.kept_positions([5], indices, 14)


def test_transform_of_no_records_is_empty():
    s, v = plot.transform(np.array([], int), np.array([]), crop=(5, 9))
    assert s.shape == (0,) and v.shape[0] == 0
