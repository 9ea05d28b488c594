"""optax's aliases that differ from another optimizer only by defaults (``nadam``,
``nadamw``): one signature, one set of ranges and one construction each."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .._core.validate import declared_ranges, hyperparams
from ..jax import GradstepTransformation
from ._optax_optimizers import adam, adamw


def _variant(base: Callable, name: str, doc: str, **defaults: Any) -> Callable:
    """``base`` under optax's other name ``name``, with other ``defaults``: one
    signature, one set of ranges and one construction, declared once (validated
    under ``name``)."""
    impl = base.__wrapped__  # the factory without its validation
    sig = inspect.signature(impl)
    params = [
        p.replace(default=defaults[p.name]) if p.name in defaults else p
        for p in sig.parameters.values()
    ]
    variant_sig = sig.replace(parameters=params)

    def variant(*args: Any, **kwargs: Any) -> GradstepTransformation:
        bound = variant_sig.bind(*args, **kwargs)
        bound.apply_defaults()
        out = impl(*bound.args, **bound.kwargs)
        out.transform.name = name  # the key of its state inside an outer chain
        return out

    variant.__name__ = variant.__qualname__ = name
    variant.__doc__ = doc
    variant.__signature__ = variant_sig
    variant.__module__ = base.__module__
    return hyperparams(**declared_ranges(base))(variant)


nadam = _variant(
    adam,
    "nadam",
    r"""optax's ``nadam``: :func:`adam` with ``nesterov=True``, i.e. :math:`\hat m =
    \beta_1 m/(1-\beta_1^{t+1}) + (1-\beta_1) g /(1-\beta_1^t)` with a constant
    :math:`\beta_1` (gradstep's ``scale_by_nadam`` with ``schedule_decay=None``).""",
    nesterov=True,
)
nadamw = _variant(
    adamw,
    "nadamw",
    """optax's ``nadamw``: :func:`adamw` with ``nesterov=True`` (the Nesterov direction
    of :func:`nadam`).""",
    nesterov=True,
)
