"""``gradstep compare --backend numpy``: the stepper of :class:`gradstep.Optimizer`
(optimizers that need a closure step through ``gradstep.closure_step``)."""

from __future__ import annotations

import gradstep


class NumpyStepper:
    """Steps NumPy parameters in place; a first step on copies loads (or compiles)
    the kernel before the timed steps."""

    def __init__(
        self, problem, params: dict, transform_for, engine: str, first_batch, closure_step=None
    ):
        self.problem = problem
        self._params = params
        self.closure_step_fn = closure_step
        if closure_step is None:
            spare = {k: v.copy() for k, v in self._params.items()}
            warm = gradstep.Optimizer(spare, transform_for(), engine=engine)
            warm.step(problem.loss_and_grad(spare, first_batch)[1])
        self.opt = gradstep.Optimizer(self._params, transform_for(), engine=engine)
        self.engine = self.opt.engine
        self._grads = None

    def params(self) -> dict:
        return self._params

    def gradient(self, batch) -> float:
        loss, self._grads = self.problem.loss_and_grad(self._params, batch)
        return loss

    def apply(self) -> None:
        self.opt.step(self._grads)

    def closure_step(self, batch, counted) -> float:
        def closure():
            counted()
            return self.problem.loss_and_grad(self._params, batch)

        return self.closure_step_fn(self.opt, closure)
