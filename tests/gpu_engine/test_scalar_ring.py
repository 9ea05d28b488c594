"""The ring that stages per-step scalars into device rows (:mod:`gradstep.engines.scalar_ring`):
each step's row holds its values, and a row is written again only a whole ring later."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

from gradstep.engines.scalar_ring import ROWS, ScalarRing  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_each_step_gets_its_values_and_rows_last_a_whole_ring(dtype):
    ring = ScalarRing(3, dtype, torch.device("cpu"))
    rows = []
    for k in range(3 * ROWS + 5):
        values = [k + 0.5, -k * 0.25, 1e-8 * k]
        row = ring.put(values)
        assert row.dtype == dtype and row.shape == (3,)
        assert row.tolist() == torch.tensor(values, dtype=dtype).tolist()
        rows.append((row, list(row.tolist())))
        # the row of ROWS - 1 steps ago still holds its values
        if k >= ROWS - 1:
            old, kept = rows[k - (ROWS - 1)]
            assert old.tolist() == kept
    # a ring's rows are reused, not allocated: ROWS distinct rows in all
    assert len({r.data_ptr() for r, _ in rows}) == ROWS
