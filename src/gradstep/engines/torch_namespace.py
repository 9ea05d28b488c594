"""Torch's array namespace: the rules' element and array operations on torch tensors,
on the tensors' own device and in their dtype (registered by ``import gradstep.torch``).

Importing this module registers it for ``torch.Tensor`` (see
:mod:`gradstep._core.namespaces`). Nothing here reads a tensor's values on the host:
per-step scalars that come from tensors (norms, RMS) stay 0-d tensors on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .._core.namespaces import Namespace, register_namespace

_WIDE = torch.float64


def _maximum(a, b):
    if not isinstance(a, torch.Tensor):
        a, b = b, a
    return torch.maximum(a, b) if isinstance(b, torch.Tensor) else a.clamp(min=b)


def _minimum(a, b):
    if not isinstance(a, torch.Tensor):
        a, b = b, a
    return torch.minimum(a, b) if isinstance(b, torch.Tensor) else a.clamp(max=b)


def _where(condition, a, b):
    # a per-step boolean scalar (e.g. RAdam's rectification switch) chooses between
    # whole arrays
    if not isinstance(condition, torch.Tensor):
        return a if condition else b
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        like = a if isinstance(a, torch.Tensor) else b
        if isinstance(like, torch.Tensor):
            a = torch.as_tensor(a, dtype=like.dtype, device=like.device)
            b = torch.as_tensor(b, dtype=like.dtype, device=like.device)
    return torch.where(condition, a, b)


def _sign(x):
    # NumPy's sign: NaN stays NaN (torch.sign maps NaN to 0)
    return torch.where(torch.isnan(x), x, torch.sign(x))


def _any_tensor(a, b) -> bool:
    return isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor)


class TorchNamespace(Namespace):
    """See the module docstring."""

    name = "torch"

    def __init__(self) -> None:
        self.ops = {
            "sqrt": torch.sqrt,
            # torch has no cube root: |x|^(1/3) with x's sign (NaN stays NaN)
            "cbrt": lambda x: torch.sign(x) * torch.abs(x).pow(1.0 / 3.0),
            "absolute": torch.abs,
            "sign": _sign,
            "maximum": _maximum,
            "minimum": _minimum,
            "where": _where,
            "isnan": torch.isnan,
            "isfinite": torch.isfinite,
            "exp": torch.exp,
            "log1p": torch.log1p,
            "nan_to_zero": lambda x: torch.where(torch.isnan(x), torch.zeros_like(x), x),
            "finite_or_zero": lambda x: torch.where(torch.isfinite(x), x, torch.zeros_like(x)),
            "clip": lambda x, lo, hi: x.clamp(min=lo, max=hi),
            # the identity on real tensors (no copy, no conjugate-bit view)
            "conj": lambda x: torch.conj(x).resolve_conj() if x.is_complex() else x,
            "real": lambda x: torch.real(x) if x.is_complex() else x,
        }

    def is_float(self, x: Any) -> bool:
        return x.is_floating_point()

    def scalar_caster(self, x: Any) -> Callable[[Any], Any]:
        # Python numbers are weakly typed in torch: the tensor keeps its dtype
        def cast(v):
            if isinstance(v, (bool, np.bool_)):
                return v
            if isinstance(v, torch.Tensor):
                return v.to(x.dtype if x.is_floating_point() else torch.float32)
            return float(v)

        return cast

    def wrap(self, x: Any) -> Any:
        return x

    def float_dtype(self, x: Any) -> Any:
        dtype = x.dtype if isinstance(x, torch.Tensor) else torch.float32
        return dtype if dtype.is_floating_point else torch.float32

    def widened(self, x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.dtype in (torch.float16, torch.bfloat16):
            return x.float()
        return x

    def stored(self, x: Any, name: str) -> Any:
        return x.to(getattr(torch, name))

    def stored_like(self, x: Any, like: Any) -> Any:
        if not isinstance(like, torch.Tensor) or not isinstance(x, torch.Tensor):
            return x
        return x if x.dtype == like.dtype else x.to(like.dtype)

    def stored_bf16_stochastic(self, x: Any, key: int) -> Any:
        """``x`` rounded stochastically to bfloat16 with the stream of ``key``
        (:mod:`gradstep._core.rounding`): its uint32 arithmetic in int64, masked."""
        x = x.float()
        index = torch.arange(x.numel(), dtype=torch.int64, device=x.device).view(x.shape)
        bits = _mix32(_mix32(index) ^ int(key)) >> 16
        u = x.view(torch.int32).to(torch.int64) & _M32
        rounded = (u + bits) >> 16
        rounded = torch.where(rounded >= 0x8000, rounded - 0x10000, rounded)
        out = rounded.to(torch.int16).view(torch.bfloat16)
        return torch.where(torch.isnan(x), x.to(torch.bfloat16), out)

    def _wide(self, x: Any) -> torch.dtype:
        # MPS has no float64: accumulate in float32 there
        return torch.float32 if x.device.type == "mps" else _WIDE

    def constant(self, values, like):
        return torch.as_tensor(values.copy(), device=like.device)

    def as_uint8(self, x):
        return x.to(torch.uint8)

    def as_index(self, x):
        return x.to(torch.int64)

    def full_like(self, x: Any, fill: float) -> Any:
        return torch.full_like(x, fill, dtype=self.float_dtype(x)).detach()

    def zeros_like(self, x: Any) -> Any:
        return torch.zeros_like(x)

    def zeros(self, shape, like):
        return torch.zeros(tuple(shape), dtype=self.float_dtype(like), device=like.device)

    def copy(self, x: Any) -> Any:
        return x.detach().clone()

    def astype(self, x: Any, like: Any) -> Any:
        dtype = self.float_dtype(like)
        if isinstance(x, torch.Tensor):
            return x.to(dtype)
        return torch.as_tensor(float(x), dtype=dtype, device=like.device)

    def reshape(self, x, shape):
        return torch.reshape(x, tuple(shape))

    def ravel(self, x):
        return torch.ravel(x)

    def concatenate(self, xs):
        return torch.cat(list(xs))

    def matrix_transpose(self, x):
        return torch.transpose(x, -1, -2)

    def matmul(self, a, b):
        return torch.matmul(a, b)

    def set_row(self, x, row, value):
        x[row] = value
        return x

    def moveaxis(self, x, source, destination):
        return torch.movedim(x, source, destination)

    def take(self, x, indices, axis):
        return torch.index_select(x, axis, indices)

    def flip(self, x, axis):
        return torch.flip(x, dims=(axis,))

    def eigh(self, a):
        return torch.linalg.eigh(a)

    def qr(self, a):
        return torch.linalg.qr(a, mode="reduced")[0]

    def solve_triangular_right(self, x, a):
        return torch.linalg.solve_triangular(a, x, upper=True, left=False)

    def argsort(self, x):
        return torch.argsort(x, stable=True)

    def sum(self, x, axis=None, keepdims=False):
        if axis is None:
            return torch.sum(x)
        return torch.sum(x, dim=axis, keepdim=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        if axis is None:
            return torch.mean(x)
        return torch.mean(x, dim=axis, keepdim=keepdims)

    def amax(self, x, axis=None):
        return torch.amax(x) if axis is None else torch.amax(x, dim=axis)

    def square_sum(self, x):
        a = x.detach().reshape(-1).to(self._wide(x))
        return torch.dot(a, a)

    def wide_sum(self, x):
        return torch.sum(x.detach().to(self._wide(x)))

    def max_abs(self, x):
        if x.numel() == 0:
            return torch.zeros((), dtype=x.dtype, device=x.device)
        return torch.max(torch.abs(x))

    def vdot(self, a, b):
        return torch.dot(a, b)

    def abs_sum(self, x):
        return torch.sum(torch.abs(x))

    def sqrt(self, x):
        return torch.sqrt(x) if isinstance(x, torch.Tensor) else float(np.sqrt(x))

    def exp(self, x):
        return torch.exp(x) if isinstance(x, torch.Tensor) else float(np.exp(x))

    def log1p(self, x):
        return torch.log1p(x) if isinstance(x, torch.Tensor) else float(np.log1p(x))

    def maximum(self, a, b):
        return _maximum(a, b) if _any_tensor(a, b) else max(a, b)

    def minimum(self, a, b):
        return _minimum(a, b) if _any_tensor(a, b) else min(a, b)

    def where(self, condition, a, b):
        return _where(condition, a, b)

    def eps(self, x):
        return float(torch.finfo(self.float_dtype(x)).eps)

    def count(self, x):
        return int(x)

    def count_array(self, value, like):
        return np.asarray(int(value), np.int64)

    def fresh_seed(self):
        # from torch's default generator, so that torch.manual_seed(k) before the
        # optimizer's first step makes its noise repeat, as torch users expect
        return int(torch.randint(0, 2**31 - 1, ()).item())

    def normals(self, seed, count, likes, std):
        # one generator per step and device, seeded from (seed, count) on the host
        # (both are host integers on this library), drawn leaf after leaf
        seed_value = int(np.random.SeedSequence([int(seed), int(count)]).generate_state(1)[0])
        generators: dict = {}
        out = []
        for x in likes:
            device = x.device
            gen = generators.get(device)
            if gen is None:
                gen = generators[device] = torch.Generator(device=device)
                gen.manual_seed(seed_value)
            noise = torch.randn(tuple(x.shape), generator=gen, dtype=self._wide(x), device=device)
            out.append((noise * std).to(self.float_dtype(x)))
        return out


register_namespace(torch.Tensor, TorchNamespace)


_M32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 on int64 tensors holding uint32 values (products wrap; the low 32
    bits are kept)."""
    from .._core.rounding import MIX1, MIX2

    x = x ^ (x >> 16)
    x = (x * MIX1) & _M32
    x = x ^ (x >> 15)
    x = (x * MIX2) & _M32
    return x ^ (x >> 16)
