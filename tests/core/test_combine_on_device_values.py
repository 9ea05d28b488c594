"""Every per-tensor reduction's ``combine`` (the registered rules' stages and their
fused forms) runs on the values an engine gives it: bound to torch, on tensors NumPy
cannot read (the meta device stands for a GPU's, where the Triton engine keeps the
sums), and bound to JAX, traced (no NumPy operation on a tracer, which would send
the JAX engine to a host callback)."""

from __future__ import annotations

import pytest

import gradstep
from gradstep._core.elementwise import resolve
from gradstep._core.fused_form import fused_form_of
from gradstep._core.per_tensor import PerTensorReduction
from gradstep._core.transform import walk
from gradstep.transforms import adaptive_clip


def _stages(t):
    for visit in walk(t):
        node = visit.transform
        if isinstance(node, PerTensorReduction):
            yield node
        form = fused_form_of(node)
        if form is not None:
            yield from _stages(form.transform)


def _all_stages() -> dict:
    made = {spec.name: spec.factory(**spec.test_hyperparams) for spec in gradstep.REGISTRY}
    made["lbsgd-lars"] = gradstep.lbsgd(0.1, warmup_strategy="lars")
    made["adaptive_clip"] = adaptive_clip(0.1)
    return {f"{name}/{st.name}": st for name, t in made.items() for st in _stages(t)}


STAGES = _all_stages()


def _inputs(stage, column):
    """Columns of sums as the engines pass them (each tensor's sums and size, then
    their totals), every mask flag set, the hyperparameters of the first step."""
    width = (stage.n_terms() + stage.sized) * (2 if stage.totals else 1)
    flags = {name: True for name in stage.flags}
    return tuple(column() for _ in range(width)), flags, resolve(stage.hyperparams, 0, {})


def test_the_new_forms_are_among_them():
    names = set(STAGES)
    for wanted in ("adaptive_clip/adaptive_clip", "ranger21/ranger21_step", "lbsgd-lars/lbsgd"):
        assert wanted in names
    assert any(st.totals for st in STAGES.values())


@pytest.mark.parametrize("key", list(STAGES))
def test_combine_runs_on_device_tensors(key):
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    import gradstep.torch  # noqa: F401  (registers torch's array namespace)
    from gradstep._core.namespaces import element_for, namespace_of

    stage = STAGES[key]
    sums, flags, h = _inputs(stage, lambda: torch.full((3,), 4.0, device="meta"))
    values = element_for(stage.combine, namespace_of(sums[0]))(sums, flags, h)
    assert set(values) == set(stage.tensor_scalars)
    for value in values.values():
        assert not isinstance(value, torch.Tensor) or value.device.type == "meta"


@pytest.mark.parametrize("key", list(STAGES))
def test_combine_traces_under_jax(key):
    jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
    import gradstep.jax  # noqa: F401  (registers JAX's array namespace)
    from gradstep._core.namespaces import element_for, namespace_of

    stage = STAGES[key]
    sums, flags, h = _inputs(stage, lambda: jax.numpy.full((3,), 4.0))
    combine = element_for(stage.combine, namespace_of(sums[0]))
    jax.make_jaxpr(lambda s: combine(s, flags, h))(sums)
