"""The NumPy front's closure-driven step: ``gradstep.closure_step(optimizer, closure)``
for transforms that re-evaluate the loss (:func:`gradstep.lbfgs`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._core import tree as _tree


def closure_step(optimizer: Any, closure: Callable[[], tuple[Any, Any]], **ctx: Any) -> float:
    """Run one closure-driven step of ``optimizer`` (a :class:`gradstep.Optimizer`
    whose transform has ``step_with_closure``, such as :func:`lbfgs`).

    ``closure()`` returns ``(loss, grads)`` for the optimizer's parameters as they
    are when it is called: the step writes each trial point into the parameter
    arrays before calling it, and leaves the arrays at the new point. ``ctx``
    overrides hyperparameters for this step, as in ``Optimizer.step``. Returns the
    loss at the starting point, as torch's ``LBFGS.step``.
    """
    transform = optimizer.transform
    if not hasattr(transform, "step_with_closure"):
        raise TypeError(
            f"closure_step: {getattr(transform, 'name', type(transform).__name__)!r} does not "
            "step with a closure; use Optimizer.step(grads)"
        )
    overrides = optimizer._check_overrides({**optimizer.hyperparams, **ctx})
    live = _tree.leaves(optimizer.params)

    def write(tree: Any) -> None:
        for target, value in zip(live, _tree.leaves(tree)):
            np.copyto(target, value, casting="same_kind")

    def loss_and_grad(trial: Any):
        write(trial)
        return closure()

    start = [np.array(p, copy=True) for p in live]
    try:
        loss, new_params, optimizer.state = transform.step_with_closure(
            loss_and_grad, optimizer.params, optimizer.state, **overrides
        )
    except BaseException:
        for target, value in zip(live, start):
            np.copyto(target, value)
        raise
    write(new_params)
    return loss
