"""The race of ``gradstep compare``: which optimizers, with which hyperparameters, and
one optimizer run on one problem.

Optimizers come from :data:`gradstep.REGISTRY`; nothing here names one except the
preference list of the default selection, which only picks names registered at run
time. Each optimizer runs with its factory's defaults; an argument the factory
requires (a learning rate without a default) takes the spec's ``test_hyperparams``
value; ``--set`` overrides go through the factory, so its validation applies.

Capabilities are handled by what they ask for, never by name:

- ``needs_closure``: the step gets a closure that re-evaluates the loss and the
  gradient on the step's mini-batch (NumPy front: ``gradstep.closure_step``, or a
  ``closure`` argument of ``Optimizer.step``; torch front: torch's closure
  convention). Where the front cannot take one, the optimizer is skipped with the
  reason.
- ``stochastic``: a factory argument named ``seed`` or ``random_state`` receives the
  run's seed (``rng`` or ``generator``: a NumPy generator seeded with it), so ``--seed``
  reproduces the run; otherwise the result is noted as not reproducible.
- any capability not known here: the optimizer is skipped, with the reason.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import inspect
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import gradstep

from ._compare_loop import DIVERGENCE_FACTOR, Run, train  # noqa: F401 (the race's names)
from ._compare_numpy import NumpyStepper

#: the representative selection, in order of preference; only registered names are used
PREFERRED = (
    "sgd",
    "momentum",
    "adam",
    "adagrad",
    "rmsprop",
    "lion",
    "lbfgs",
    "schedule_free_adamw",
    "nesterov_momentum",
    "adadelta",
    "nadam",
    "radam",
    "adamw",
    "adamax",
    "lamb",
    "adafactor",
    "signum",
    "sgld",
)
DEFAULT_COUNT = 8

_SEED_ARGUMENTS = ("seed", "random_state")
_GENERATOR_ARGUMENTS = ("rng", "generator")
#: capabilities the race knows how to serve; an optimizer declaring another one is
#: skipped with the reason
SUPPORTED_CAPABILITIES = frozenset(
    {"elementwise", "reduction", "needs_closure", "needs_value", "stochastic", "nan_policy"}
)


class InputError(Exception):
    """Bad command-line input: the message says what and what is valid."""


class BackendUnavailable(InputError):
    """The chosen backend cannot run here."""


# -- which optimizers ---------------------------------------------------------------------


def closure_stepper(backend: str):
    """How the NumPy front steps an optimizer that needs a closure, or ``None``.

    ``gradstep.closure_step(optimizer, closure)`` where the library has it (the closure
    returns ``(loss, grads)`` at the parameters' current values), else a ``closure``
    argument of ``Optimizer.step``."""
    if backend != "numpy":
        return None
    step = getattr(gradstep, "closure_step", None)
    if step is not None:
        return step
    if "closure" in inspect.signature(gradstep.Optimizer.step).parameters:
        return lambda opt, closure: opt.step(closure=closure)
    return None


def closure_support(backend: str) -> str | None:
    """``None`` if ``backend`` can step optimizers that need a closure, else why not.
    (torch: torch's closure convention; jax: the transform's ``step_with_closure``.)"""
    if backend in ("torch", "jax") or closure_stepper(backend) is not None:
        return None
    return "needs a closure, and this gradstep's NumPy front has no closure step"


def default_selection(registry=None, backend: str = "numpy", count: int = DEFAULT_COUNT):
    """Up to ``count`` registered names: the preferred ones first, then others in the
    registry's order; optimizers the backend cannot run are left for explicit requests."""
    registry = gradstep.REGISTRY if registry is None else registry
    runnable = [s.name for s in registry if skip_reason(s, backend) is None]
    names = [n for n in PREFERRED if n in runnable]
    names += [n for n in runnable if n not in names]
    return names[:count]


def skip_reason(spec, backend: str, given=()) -> str | None:
    """Why this optimizer cannot race on ``backend`` (``None``: it can); ``given``: the
    arguments set on the command line."""
    unknown = sorted(set(spec.capabilities) - SUPPORTED_CAPABILITIES)
    if unknown:
        return f"gradstep compare cannot serve its capability {', '.join(unknown)}"
    if "needs_closure" in spec.capabilities:
        reason = closure_support(backend)
        if reason:
            return reason
    missing = [r for r in spec.required if r not in spec.test_hyperparams and r not in given]
    if missing:
        return f"its factory requires {', '.join(missing)} and the registry gives no value"
    return None


def parse_names(text: str | None, valid: list[str], what: str, default: list[str]) -> list[str]:
    """Comma-separated names (any case), ``all``, or (``text`` None: the option not
    given) the default; an unknown name raises InputError with the closest valid names,
    and so does a list of no names (an empty ``--optimizers ""`` is most often an unset
    shell variable: racing the default selection instead would hide that)."""
    if text is None:
        return list(default)
    if not text.replace(",", "").strip():
        raise InputError(
            f"--{what}s {text!r} names no {what}; valid {what}s: {', '.join(valid)} "
            f"(or 'all'; leave --{what}s out for the default)"
        )
    if text.strip().lower() == "all":
        return list(valid)
    by_lower = {v.lower(): v for v in valid}
    names, unknown = [], []
    for raw in (n.strip() for n in text.split(",") if n.strip()):
        key = raw.lower().replace("-", "_")
        if key in by_lower:
            names.append(by_lower[key])
        else:
            unknown.append(raw)
    if unknown:
        hints = []
        for raw in unknown:
            close = difflib.get_close_matches(raw.lower(), list(by_lower), n=2, cutoff=0.6)
            if close:
                hints.append(f"did you mean {' or '.join(by_lower[c] for c in close)}?")
        raise InputError(
            f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
            + (f" ({'; '.join(hints)})" if hints else "")
            + f"; valid {what}s: {', '.join(valid)} (or 'all')"
        )
    return list(dict.fromkeys(names))


# -- hyperparameters ------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A --set value: a number, true/false, none, or else the text itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()
    return value if isinstance(value, int | float | str | bool | tuple) else text.strip()


def parse_sets(items: list[str] | None, racing: list[str]) -> dict[str, dict[str, Any]]:
    """``["adam.learning_rate=0.01", ...]`` into ``{"adam": {"learning_rate": 0.01}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        for part in (p for p in item.split(",") if p.strip()) if "=" in item else [item]:
            key, eq, value = part.partition("=")
            name, dot, arg = key.strip().partition(".")
            if not (eq and dot and name and arg):
                raise InputError(f"--set {part!r}: use OPTIMIZER.ARGUMENT=VALUE")
            name = next((n for n in racing if n.lower() == name.strip().lower()), name.strip())
            if name not in gradstep.REGISTRY:
                raise InputError(
                    f"--set {part}: unknown optimizer {name!r}; racing: {', '.join(racing)}"
                )
            if name not in racing:
                raise InputError(
                    f"--set {part}: {name} is not in this race ({', '.join(racing)}); "
                    "add it to --optimizers"
                )
            params = inspect.signature(gradstep.REGISTRY[name].factory).parameters
            if arg not in params:
                raise InputError(
                    f"--set {part}: {name} has no argument {arg!r}; its arguments: "
                    f"{', '.join(params)}"
                )
            out.setdefault(name, {})[arg] = parse_value(value)
    return out


@dataclass
class Entry:
    """One optimizer of the race with the arguments its factory gets."""

    name: str
    spec: Any
    kwargs: dict[str, Any]
    skip: str | None = None
    notes: list[str] = field(default_factory=list)
    seed_argument: str | None = None

    def transform(self, seed: int, **overrides: Any):
        kwargs = {**self.kwargs, **overrides}
        if self.seed_argument in _SEED_ARGUMENTS:
            kwargs.setdefault(self.seed_argument, seed)
        elif self.seed_argument in _GENERATOR_ARGUMENTS:
            kwargs.setdefault(self.seed_argument, np.random.default_rng(seed))
        return self.spec.factory(**kwargs)

    @property
    def learning_rate(self) -> Any:
        lr = self.kwargs.get("learning_rate", self.spec.defaults.get("learning_rate"))
        return lr if isinstance(lr, int | float) else None

    @property
    def schedule(self) -> str | None:
        """The learning rate when it is a schedule (shown instead of a number)."""
        lr = self.kwargs.get("learning_rate", self.spec.defaults.get("learning_rate"))
        if lr is None or isinstance(lr, int | float):
            return None
        return str(lr).removeprefix("<Schedule ").removesuffix(">")


def make_entries(names: list[str], sets: dict, backend: str) -> list[Entry]:
    """Resolve every optimizer's arguments and validate them through its factory."""
    entries = []
    for name in names:
        spec = gradstep.REGISTRY[name]
        kwargs = {r: spec.test_hyperparams[r] for r in spec.required if r in spec.test_hyperparams}
        kwargs.update(sets.get(name, {}))
        entry = Entry(name, spec, kwargs, skip=skip_reason(spec, backend, kwargs))
        if "stochastic" in spec.capabilities:
            params = inspect.signature(spec.factory).parameters
            entry.seed_argument = next(
                (a for a in _SEED_ARGUMENTS + _GENERATOR_ARGUMENTS if a in params), None
            )
            if entry.seed_argument is None:
                entry.notes.append("stochastic and not seedable: runs are not reproducible")
        if entry.skip is None:
            try:
                entry.transform(0)
            except (ValueError, TypeError) as error:
                given = ", ".join(f"{name}.{k}={v!r}" for k, v in sets.get(name, {}).items())
                if given:  # the factory's own message names the argument and its range
                    raise InputError(f"--set {given}: {error}") from None
                entry.skip = f"its factory fails with its defaults: {describe_error(error)}"
        entries.append(entry)
    return entries


def public_hyperparams(entry: Entry) -> dict[str, Any]:
    """The full argument set a run used: factory defaults updated with the given ones."""
    out = {}
    for k, v in {**entry.spec.defaults, **entry.kwargs}.items():
        out[k] = v if isinstance(v, int | float | str | bool) or v is None else repr(v)
    return out


# -- one run ----------------------------------------------------------------------------------


@contextlib.contextmanager
def single_threaded():
    """One thread for BLAS, numba and torch while racing.

    The problems are small: a parallel kernel gains nothing there, and on a small
    machine the thread pools of BLAS and numba spin against each other between
    alternating calls, which made steps up to 50x slower. The previous settings are
    restored afterwards."""
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(1))
        except ImportError:  # pragma: no cover - comes with scikit-learn
            pass
        try:
            import numba

            threads = numba.get_num_threads()
            numba.set_num_threads(1)
            stack.callback(numba.set_num_threads, threads)
        except (ImportError, RuntimeError):  # pragma: no cover
            pass
        torch = sys.modules.get("torch")
        if torch is not None:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            stack.callback(torch.set_num_threads, threads)
        yield


def run_numpy(problem, entry: Entry, steps: int, seed: int, engine: str, **overrides) -> Run:
    """One run through :class:`gradstep.Optimizer` on ``engine``."""
    stepper = closure_stepper("numpy") if "needs_closure" in entry.spec.capabilities else None
    batches = problem.batches(steps, seed)

    def make():
        return NumpyStepper(
            problem,
            problem.init(seed),
            lambda: entry.transform(seed, **overrides),
            engine,
            batches[0] if batches else None,
            closure_step=stepper,
            takes_value="needs_value" in entry.spec.capabilities,
        )

    return train(problem, entry, steps, seed, make)


def describe_error(error: BaseException) -> str:
    """``Type: message`` without terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", f"{type(error).__name__}: {error}").strip()


def run_one(problem, entry: Entry, *, steps: int, seed: int, backend: str, engine: str, **kw):
    """Run, turning a skip or an unexpected failure into a stated result, never a crash.

    On the NumPy front with ``engine="auto"``, a run the fused engine fails on is run
    again on the eager engine, with a note that says why."""
    if entry.skip:
        return Run(entry.name, problem.name, status="skipped", reason=entry.skip, seed=seed)
    fallback = None
    try:
        if backend == "torch":
            from ._compare_torch import run_torch

            run = run_torch(problem, entry, steps, seed, engine, **kw)
        elif backend == "jax":
            from ._compare_jax import run_jax

            run = run_jax(problem, entry, steps, seed, **kw)
        else:
            try:
                run = run_numpy(problem, entry, steps, seed, engine, **kw)
            except Exception as error:
                if engine != "auto":
                    raise
                fallback = describe_error(error).splitlines()[0]
                run = run_numpy(problem, entry, steps, seed, "eager", **kw)
    except Exception as error:  # one optimizer's failure must not stop the race
        return Run(
            entry.name,
            problem.name,
            status="error",
            reason=describe_error(error),
            learning_rate=kw.get("learning_rate", entry.learning_rate),
            seed=seed,
        )
    run.seed = seed
    run.schedule = getattr(entry, "schedule", None) if "learning_rate" not in kw else None
    if "needs_closure" in entry.spec.capabilities:
        run.notes.append(
            "steps with a closure: its steps are counted in gradient evaluations, "
            "line-search evaluations included"
        )
    run.learning_rate = kw.get("learning_rate", entry.learning_rate)
    run.notes = entry.notes + run.notes
    if fallback:
        run.notes.append(f"the fused engine failed ({fallback}); ran on the eager engine")
    if run.status == "diverged":
        run.reason = f"diverged at step {run.diverged_at}"
    return run
