"""A param group's value edited between steps steps as if the optimizer had been
built with it from there on.

Every step hands the group's values to the transform by name, which is the same as
building with them only where the factory uses a value as nothing but that stage
hyperparameter. Madgrad builds its coupled decay stage only for a nonzero
``weight_decay`` (its own stage also names ``weight_decay``, for the decoupled form:
an edit from zero went there and was ignored); Novograd's decoupled form kept a
``weight_decay`` of zero in its direction stage (an edit applied coupled decay);
SGDP bakes ``1 / (1 - momentum)`` into its decay factor (an edited momentum moved the
buffer but not the factor); SGD with momentum edited to zero kept its buffer. An
edited value now builds the transform again, and a build that differs in more than
the values handed over replaces the old one.
"""

from __future__ import annotations

import inspect

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

import gradstep.torch as gt  # noqa: E402
from gradstep.torch._generated import all_classes  # noqa: E402


def _params():
    gen = torch.Generator().manual_seed(0)
    return [
        torch.nn.Parameter(torch.randn(4, 3, generator=gen)),
        torch.nn.Parameter(torch.randn(3, generator=gen)),
    ]


def _closure(params, opt, k):
    def closure():
        opt.zero_grad()
        loss = sum(
            ((p - 0.3 * (k + 1)) ** 2 * (1 + i)).sum() + torch.sin(p * (k + 2)).sum()
            for i, p in enumerate(params)
        )
        loss.backward()
        return loss

    return closure


def _edited(make, key, value, at, steps):
    """The parameters after ``steps`` steps, ``group[key] = value`` before step ``at``."""
    params = _params()
    opt = make(params)
    for k in range(steps):
        if k == at:
            opt.param_groups[0][key] = value
        opt.step(_closure(params, opt, k))
    return params


def _built_with(make, make_edited, key, value, at, steps):
    """The same steps, with an optimizer built with the edited value from step ``at``
    (the state of the first ``at`` steps loaded into it, the group holding ``value``)."""
    params = _params()
    opt = make(params)
    for k in range(at):
        opt.step(_closure(params, opt, k))
    state = opt.state_dict()
    state["param_groups"][0][key] = value
    opt = make_edited(params)
    opt.load_state_dict(state)
    for k in range(at, steps):
        opt.step(_closure(params, opt, k))
    return params


def _assert_same(got, want):
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, equal_nan=True)


@pytest.mark.parametrize("at", [0, 3])
def test_madgrad_coupled_decay_switched_on_from_zero(at):
    def make(ps, wd=0.0):
        return gt.Madgrad(ps, learning_rate=0.01, weight_decay=wd)

    got = _edited(make, "weight_decay", 0.1, at, 6)
    want = _built_with(make, lambda ps: make(ps, 0.1), "weight_decay", 0.1, at, 6)
    _assert_same(got, want)
    untouched = _edited(make, "weight_decay", 0.0, at, 6)
    assert max((a - b).abs().max().item() for a, b in zip(got, untouched)) > 1e-3


def test_novograd_decoupled_decay_switched_on_from_zero_stays_decoupled():
    def make(ps, wd=0.0):
        return gt.Novograd(ps, learning_rate=0.01, weight_decay=wd, decoupled_weight_decay=True)

    try:
        make(_params())
    except ValueError:
        pytest.skip(reason="the rule refuses decoupled_weight_decay=True with weight_decay=0")
    got = _edited(make, "weight_decay", 0.1, 0, 5)
    want = _built_with(make, lambda ps: make(ps, 0.1), "weight_decay", 0.1, 0, 5)
    _assert_same(got, want)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgdp_momentum_edit_reaches_the_decay_factor(nesterov):
    def make(ps, momentum=0.9):
        kwargs = dict(momentum=momentum, weight_decay=0.05, nesterov=nesterov)
        return gt.Sgdp(ps, learning_rate=0.01, **kwargs)

    for at in (0, 2):
        got = _edited(make, "momentum", 0.45, at, 5)
        want = _built_with(make, lambda ps: make(ps, 0.45), "momentum", 0.45, at, 5)
        _assert_same(got, want)


def test_sgdp_decay_factor_follows_the_group_momentum():
    # one step with a zero gradient isolates the decay: w * (1 - lr * wd / (1 - momentum))
    p = torch.nn.Parameter(torch.ones(4))
    opt = gt.Sgdp([p], learning_rate=0.1, momentum=0.9, weight_decay=0.1)
    opt.param_groups[0]["momentum"] = 0.45
    p.grad = torch.zeros(4)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((4,), 1 - 0.1 * 0.1 / (1 - 0.45)))


def test_sgd_momentum_edited_to_zero_drops_the_buffer_as_torch():
    def run(mod):
        params = _params()
        opt = mod.SGD(params, lr=0.1, momentum=0.5, dampening=0.3)
        for k in range(4):
            if k == 2:
                opt.param_groups[0]["momentum"] = 0.0
            opt.step(_closure(params, opt, k))
        return params

    _assert_same(run(gt), run(torch.optim))


# -- every registered class, every value of its groups --------------------------------

_FRONT = {
    "params", "foreach", "fused", "capturable", "differentiable", "engine", "master_weights",
    "state_dtype", "min_8bit_size", "stochastic_rounding", "rounding_seed", "kahan_summation",
}  # fmt: skip
#: arguments a class has no default for
_REQUIRED = {
    "momentum": {"learning_rate": 0.05},
    "nesterov_momentum": {"learning_rate": 0.05},
    "lars": {"learning_rate": 0.05},
    "ranger21": {"num_iterations": 20},
}
#: classes whose steps this generic loop cannot make: sparse gradients only, 2-D
#: parameters only, train() first (each has tests of its own)
_OWN_TESTS = {"sparse_adam", "muon", "schedule_free_adamw", "schedule_free_sgd"}
#: values that set the state's structure: an edit after the first step raises (the
#: state no longer fits), as loading that state into a class built so would
_STATE_STRUCTURE = {("psgd_kron", "max_size_triangular"), ("psgd_kron", "min_ndim_triangular")}
#: edits whose steps raise as torch's do (L-BFGS keeping no history: IndexError)
_RAISING = {("lbfgs", "history_size", 0.0)}


def _edits(value):
    """Other values to edit ``value`` to: a zero switched on, a nonzero halved or
    switched off, a flag flipped, each entry of a tuple of numbers."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, (int, float)):
        return [0.1] if value == 0 else [value * 0.5, 0.0]
    if isinstance(value, (tuple, list)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        edits = []
        for i, v in enumerate(value):
            edited = list(value)
            edited[i] = 0.1 if v == 0 else v * 0.5
            edits.append(type(value)(edited))
        return edits
    return []


def _bases(group):
    """Defaults, each flag flipped, and every zero value switched on: the starting
    points whose combinations decide which stages a rule builds."""
    yield {}
    for key, value in group.items():
        if key not in _FRONT and isinstance(value, bool) and key != "maximize":
            yield {key: not value}
    zeros = {
        k: 0.05 for k, v in group.items() if k not in _FRONT and type(v) in (int, float) and v == 0
    }
    if zeros:
        yield zeros


@pytest.mark.parametrize("name", sorted(set(all_classes()) - _OWN_TESTS))
def test_group_edit_steps_as_a_build_with_the_edited_value(name):
    cls = all_classes()[name]
    sig = inspect.signature(cls).parameters
    options = dict(_REQUIRED.get(name, {}))
    if "seed" in sig:
        options["seed"] = 0
    if "engine" in sig:
        options["engine"] = "eager"  # the rebuild is the engine's concern in no way
    elif "fused" in sig:
        options["fused"] = False

    def arg(key):
        return "learning_rate" if key == "lr" and "learning_rate" in sig else key

    group = cls(_params(), **options).param_groups[0]
    checked = 0
    for base in _bases(group):
        start = {**options, **{arg(k): v for k, v in base.items() if arg(k) in sig}}
        try:
            opt = cls(_params(), **start)
        except ValueError:
            continue  # a combination the class refuses
        for key, value in opt.param_groups[0].items():
            if key in _FRONT or arg(key) not in sig or (name, key) in _STATE_STRUCTURE:
                continue
            for new in _edits(value):
                if (name, key, new) in _RAISING:
                    continue
                edited = {**start, arg(key): new}
                try:
                    cls(_params(), **edited)
                except (ValueError, TypeError):
                    continue  # not a value the class takes
                make = lambda ps, kw=start: cls(ps, **kw)  # noqa: E731
                got = _edited(make, key, new, 1, 2)
                want = _built_with(make, lambda ps, kw=edited: cls(ps, **kw), key, new, 1, 2)
                try:
                    _assert_same(got, want)
                except AssertionError as error:
                    raise AssertionError(f"{name}{base}: {key} {value!r} -> {new!r}") from error
                checked += 1
    assert checked
