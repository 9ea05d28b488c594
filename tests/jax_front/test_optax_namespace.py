"""Every public name of optax 0.2.8 (and optax.contrib) is reachable through
gradstep.compat.optax: gradstep's mapping for optimizers and transformations, optax's
own objects for the names that hold no optimizer (losses, numerics, type aliases)."""

from __future__ import annotations

import pytest

optax = pytest.importorskip("optax", reason="compares with optax (a test dependency)")
jnp = pytest.importorskip("jax.numpy", reason="needs JAX (a test dependency)")

import gradstep.compat.optax as gx  # noqa: E402
from gradstep.compat._optax_passthrough import _PASSED_THROUGH  # noqa: E402


def test_every_optax_name_is_reachable():
    missing = [n for n in dir(optax) if not n.startswith("_") and not hasattr(gx, n)]
    assert missing == []


def test_contrib_names_are_reachable_or_refused_by_name():
    import optax.contrib as oc

    for name in (n for n in dir(oc) if not n.startswith("_")):
        if name in gx.contrib.NOT_PROVIDED:
            with pytest.raises(AttributeError, match="not provide"):
                getattr(gx.contrib, name)
        else:
            assert hasattr(gx.contrib, name), name


def test_names_that_hold_no_optimizer_are_optaxs_own():
    for name in _PASSED_THROUGH:
        assert getattr(gx, name) is getattr(optax, name), name
    logits, labels = jnp.array([[2.0, 0.0, -1.0]]), jnp.array([0])
    assert gx.softmax_cross_entropy_with_integer_labels(logits, labels) == pytest.approx(
        float(optax.softmax_cross_entropy_with_integer_labels(logits, labels)[0])
    )


def test_unknown_names_still_raise():
    with pytest.raises(AttributeError, match="no attribute 'adamw_typo'"):
        gx.adamw_typo  # noqa: B018


def _shared_functions():
    import inspect

    import optax.contrib as oc

    for theirs, ours in ((optax, gx), (oc, gx.contrib)):
        for name in dir(ours):
            if name.startswith("_") or not hasattr(theirs, name):
                continue
            a, b = getattr(theirs, name), getattr(ours, name)
            if callable(a) and not inspect.isclass(a) and a is not b:
                yield name, a, b


def test_every_mapped_function_takes_optaxs_arguments():
    """The same parameter names, in the same order and of the same kinds (positional,
    keyword-only, ...), with equal defaults where they are numbers, strings or None."""
    import inspect

    differ = []
    for name, theirs, ours in _shared_functions():
        try:
            a, b = inspect.signature(theirs).parameters, inspect.signature(ours).parameters
        except (TypeError, ValueError):  # a builtin without a signature
            continue
        if [(p.name, p.kind) for p in a.values()] != [(p.name, p.kind) for p in b.values()]:
            differ.append(name)
            continue
        for p, q in zip(a.values(), b.values()):
            plain = (int, float, str, bool, type(None))
            if isinstance(p.default, plain) and p.default is not inspect.Parameter.empty:
                if not (
                    p.default == q.default or p.default != p.default and q.default != q.default
                ):
                    differ.append(f"{name}({p.name}={p.default!r}, gradstep: {q.default!r})")
    assert differ == []
