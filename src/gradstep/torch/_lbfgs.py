"""``gradstep.torch.LBFGS``: torch.optim.LBFGS's arguments and state keys over
``gradstep.lbfgs``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._core.transform import Transform
from .._core.validate import ranges_waived
from ._base import LR, TorchOptimizer, rule_factory
from ._rule import _number


class LBFGS(TorchOptimizer):
    """``torch.optim.LBFGS`` on ``gradstep.lbfgs``: all parameters as one vector, a
    step re-evaluates the loss through ``closure`` (required), one param group.

    The rule keeps its history in fixed buffers; between steps the state is kept
    under torch's keys (``func_evals``, ``n_iter``, ``d``, ``t``, ``old_dirs``,
    ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, in the first parameter's
    state), so checkpoints move both ways. The math runs on NumPy: parameters must be
    CPU float32/float64 tensors.
    """

    # its own step() evaluates a closure; GradScaler unscales for it, as for torch's
    _step_supports_amp_scaling = False

    _args = {
        "lr": ("learning_rate",),
        "max_iter": ("max_iter",),
        "max_eval": ("max_eval",),
        "tolerance_grad": ("tolerance_grad",),
        "tolerance_change": ("tolerance_change",),
        "history_size": ("history_size",),
        "line_search_fn": ("line_search_fn",),
    }
    _rules = ("lbfgs",)
    _torch_checks = (LR,)
    _keys = tuple(_args)

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        self._init_from(locals())
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]

    def _check_group(self, group: dict) -> None:
        self._check_args(group)
        self._transform_for(group)
        for p in group["params"]:
            if not (p.is_complex() or p.is_floating_point()):
                raise TypeError(f"LBFGS: parameters must be floating-point tensors, got {p.dtype}")

    def _transform_for(self, g: dict) -> Transform:
        # torch checks only lr: every value it takes is built (e.g. tolerance_grad=-inf)
        with ranges_waived():
            return self._lbfgs(g)

    def _lbfgs(self, g: dict) -> Transform:
        # torch takes any line_search_fn when made and refuses an unknown one at the
        # step (below): built without one until then
        search = g["line_search_fn"] if g["line_search_fn"] in _LINE_SEARCHES else None
        return rule_factory("lbfgs")(
            _number(g["lr"]),
            g["max_iter"],
            g["max_eval"],
            g["tolerance_grad"],
            g["tolerance_change"],
            g["history_size"],
            search,
        )

    def step(self, closure: Callable) -> Any:  # type: ignore[override]
        """One optimisation step; ``closure`` re-evaluates the model and returns the
        loss. Returns the loss of the first evaluation, as torch."""
        if closure is None:
            raise RuntimeError("LBFGS requires a closure that re-evaluates the loss")
        group = self.param_groups[0]
        if group["line_search_fn"] not in _LINE_SEARCHES:
            raise RuntimeError("only 'strong_wolfe' is supported")  # torch's error, at its time
        return closure_step(
            "LBFGS", self._transform_for(group), group["params"], self.state, closure, group["lr"]
        )


_LINE_SEARCHES = (None, "strong_wolfe")


def closure_step(
    owner: str, transform: Any, params: list, state: Any, closure: Callable, lr: Any
) -> Any:
    """One step of a rule that re-evaluates the loss itself (``transform`` has
    ``step_with_closure``, e.g. ``gradstep.lbfgs``) over all ``params`` as one
    vector; its state lives under torch.optim.LBFGS's keys in the first parameter's
    entry of ``state``. Returns the loss of the first evaluation, as torch."""
    import numpy as np

    real = [torch.view_as_real(p) if p.is_complex() else p for p in params]
    for p, r in zip(params, real):
        if r.device.type != "cpu" or r.dtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"{owner}: gradstep.torch runs L-BFGS on CPU float32/float64 (or "
                f"complex64/complex128) tensors, got {p.dtype} on {p.device}"
            )
    # a complex parameter is its real and imaginary parts, as in torch.optim.LBFGS
    views = [r.detach().numpy() for r in real]
    entry = state[params[0]]
    first: list = []

    def loss_and_grad(trial):
        with torch.no_grad():
            for view, value in zip(views, trial):
                np.copyto(view, value, casting="same_kind")
        with torch.enable_grad():
            loss = closure()
        first.append(loss)
        grads = []
        for p, view in zip(params, views):
            g = p.grad
            if g is None:
                grads.append(np.zeros_like(view))
            else:
                g = g.to_dense() if g.is_sparse else g
                g = torch.view_as_real(g.resolve_conj()) if g.is_complex() else g
                grads.append(g.detach().numpy())
        value = loss.detach() if isinstance(loss, torch.Tensor) else loss
        return float(value), grads

    start = [np.array(v, copy=True) for v in views]
    try:
        _, new_params, new_state = transform.step_with_closure(
            loss_and_grad,
            views,
            _lbfgs_state(transform, views, entry),
            **({} if lr is None else {"learning_rate": _number(lr)}),
        )
    except BaseException:
        for view, value in zip(views, start):
            np.copyto(view, value)
        raise
    for view, value in zip(views, new_params):
        np.copyto(view, value, casting="same_kind")
    torch.autograd.graph.increment_version(params)
    _torch_lbfgs_state(new_state, entry, views[0].dtype if views else np.float64)
    return first[0] if first else None


def _lbfgs_state(transform: Any, views: list, state: dict) -> dict:
    """gradstep's L-BFGS state from torch's keys."""
    import numpy as np

    out = transform.init(views)
    if not state:
        return out
    out["n_iter"] = np.asarray(int(state.get("n_iter", 0)), np.int64)
    out["func_evals"] = np.asarray(int(state.get("func_evals", 0)), np.int64)
    dtype = out["direction"].dtype
    if state.get("d") is not None:
        out["direction"][:] = _flat_numpy(state["d"])
    if state.get("t") is not None:
        out["step_size"] = np.asarray(float(state["t"]), dtype)
    if state.get("prev_flat_grad") is not None:
        out["prev_grad"][:] = _flat_numpy(state["prev_flat_grad"])
    if state.get("H_diag") is not None:
        out["h_diag"] = np.asarray(float(state["H_diag"]), dtype)
    dirs, steps, ro = state.get("old_dirs", []), state.get("old_stps", []), state.get("ro", [])
    size = out["s"].shape[0]
    keep = min(len(dirs), size)
    for i, (y, s, r) in enumerate(zip(dirs[-keep:], steps[-keep:], ro[-keep:])):
        out["y"][i] = _flat_numpy(y)
        out["s"][i] = _flat_numpy(s)
        out["rho"][i] = float(r)
    out["history_len"] = np.asarray(keep, np.int64)
    out["history_start"] = np.asarray(0, np.int64)
    return out


def _torch_lbfgs_state(new: dict, state: dict, dtype: Any) -> None:
    """Write gradstep's L-BFGS state under torch's keys."""
    size = new["s"].shape[0]
    start, length = int(new["history_start"]), int(new["history_len"])
    rows = [(start + i) % size for i in range(length)]
    tensor = lambda a: torch.from_numpy(a.copy())  # noqa: E731
    state["func_evals"] = int(new["func_evals"])
    state["n_iter"] = int(new["n_iter"])
    if state["n_iter"] == 0:
        return
    state["d"] = tensor(new["direction"])
    state["t"] = float(new["step_size"])
    state["old_dirs"] = [tensor(new["y"][i]) for i in rows]
    state["old_stps"] = [tensor(new["s"][i]) for i in rows]
    state["ro"] = [torch.tensor(float(new["rho"][i]), dtype=state["d"].dtype) for i in rows]
    state["H_diag"] = torch.tensor(float(new["h_diag"]), dtype=state["d"].dtype)
    state["prev_flat_grad"] = tensor(new["prev_grad"])


def _flat_numpy(x: Any) -> Any:
    import numpy as np

    if isinstance(x, torch.Tensor):
        return x.detach().cpu().reshape(-1).numpy()
    return np.asarray(x).reshape(-1)
