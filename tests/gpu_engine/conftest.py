"""Triton kernels run under Triton's CPU interpreter here: set before Triton is imported."""

import os

import pytest

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "0")

pytest.importorskip("triton", reason="the Triton engine's tests need Triton (pip install triton)")
