"""The compiled pointer-table checks accept exactly what the per-array checks accept."""

from __future__ import annotations

import numpy as np
import pytest

from gradstep.engines import array_table

SHAPES = [(3, 4), (5,), (), (2, 1, 3)]


def _arrays(dtype=np.float32):
    return [np.arange(int(np.prod(s)), dtype=dtype).reshape(s) for s in SHAPES]


def test_the_fast_path_runs_on_this_numpy():
    assert array_table.available()


def test_pointers_are_the_data_addresses():
    arrays = _arrays()
    got = array_table.pointers(arrays, array_table.ShapeTable(SHAPES), arrays[0].dtype, True)
    assert list(got) == [a.__array_interface__["data"][0] for a in arrays]


def _read_only():
    a = np.zeros(5, np.float32)
    a.flags.writeable = False
    return a


class _Sub(np.ndarray):
    pass


DEFECTS = {
    "shape": lambda: np.zeros(6, np.float32),
    "rank": lambda: np.zeros((5, 1), np.float32),
    "dtype": lambda: np.zeros(5, np.float64),
    "strided": lambda: np.zeros(10, np.float32)[::2],
    "read-only": _read_only,
    "subclass": lambda: np.zeros(5, np.float32).view(_Sub),
    "not an array": lambda: [0.0] * 5,
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_any_defect_sends_the_row_to_the_per_array_checks(defect):
    arrays = _arrays()
    arrays[1] = DEFECTS[defect]()
    table = array_table.ShapeTable(SHAPES)
    assert array_table.pointers(arrays, table, np.dtype(np.float32), True) is None


def test_read_only_arrays_pass_where_nothing_is_written():
    arrays = _arrays()
    arrays[1] = _read_only()
    table = array_table.ShapeTable(SHAPES)
    assert array_table.pointers(arrays, table, np.dtype(np.float32), False) is not None


def test_an_array_reshaped_in_place_is_refused():
    arrays = _arrays()
    table = array_table.ShapeTable(SHAPES)
    arrays[0].shape = (4, 3)  # same memory, another shape: the table's entry is stale
    assert array_table.pointers(arrays, table, np.dtype(np.float32), True) is None
