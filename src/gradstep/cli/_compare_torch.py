"""``gradstep compare --backend torch``: the stepper of
``gradstep.torch.TransformOptimizer``, with torch parameters and autograd gradients
(optimizers that need a closure get torch's closure convention)."""

from __future__ import annotations

from ._compare_loop import Run, train


class TorchStepper:
    engine = "torch"

    def __init__(self, problem, params: dict, transform, engine: str):
        import torch

        from gradstep.torch import TransformOptimizer

        self.problem = problem
        self.tensors = {
            k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in params.items()
        }
        self.opt = TransformOptimizer(list(self.tensors.values()), transform, engine=engine)

    def params(self) -> dict:
        return {k: t.detach().numpy() for k, t in self.tensors.items()}

    def _loss(self, batch):
        self.opt.zero_grad()
        loss = self.problem.torch_loss(self.tensors, batch)
        loss.backward()
        return loss

    def gradient(self, batch) -> float:
        return float(self._loss(batch).detach())

    def apply(self) -> None:
        self.opt.step()

    def closure_step(self, batch, counted) -> float:
        def closure():
            counted()
            return self._loss(batch)

        return float(self.opt.step(closure))


def run_torch(problem, entry, steps: int, seed: int, engine: str, **overrides) -> Run:
    """One run through ``gradstep.torch.TransformOptimizer`` on ``engine``."""

    def make():
        transform = entry.transform(seed, **overrides)
        return TorchStepper(problem, problem.init(seed), transform, engine)

    return train(problem, entry, steps, seed, make)
