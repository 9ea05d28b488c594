"""The cautious wrapper on the Triton engine (under the CPU interpreter in CI): a
reduction pass counting the elements each tensor's mask keeps, the factors on the
device, then the one fused pass; equal to the eager torch engine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import gradstep
from gradstep.engines.triton import TritonEngine
from gradstep.rules.adam import scale_by_adam
from gradstep.rules.cautious import cautious

_spec = importlib.util.spec_from_file_location(
    "triton_engine_tests", Path(__file__).with_name("test_triton_engine.py")
)
_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tests)


def _chain():
    return gradstep.chain(
        cautious(scale_by_adam(), normalization="count_plus_one"), gradstep.sgd(0.1)
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cautious_equals_eager(dtype):
    assert any(st.is_cautious for st in TritonEngine(_chain()).stages)
    got, _ = _tests.run(_chain(), "triton", dtype)
    want, _ = _tests.run(_chain(), "eager", dtype)
    _tests.assert_close(got, want, dtype)


def test_cautious_keeps_nonfinite_directions_as_eager():
    got, _ = _tests.run(gradstep.cautious_adamw(0.05), "triton", nonfinite=True)
    want, _ = _tests.run(gradstep.cautious_adamw(0.05), "eager", nonfinite=True)
    _tests.assert_close(got, want, torch.float32)
