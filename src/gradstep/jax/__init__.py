"""The JAX front: gradstep transforms under ``jax.jit`` and as optax transformations.

- :func:`to_optax` turns any gradstep transform into an
  ``optax.GradientTransformationExtraArgs``: pure ``init``/``update`` on pytrees,
  jit-able, vmap-able, usable inside ``optax.chain`` next to optax's own
  transforms. Keyword arguments of ``update`` override hyperparameters by name for
  that step (``learning_rate=lr``, a Python number or a traced scalar); other
  keywords (optax's extra args such as ``value``) are ignored.
- :func:`from_optax` is the reverse: an optax transform as a stage of a gradstep
  chain.
- :class:`JaxEngine` is the engine underneath (:mod:`gradstep.engines.jax`).

The math is the rules' own: element functions run with :mod:`jax.numpy`, per-step
scalars come from each stage's Python ``prepare`` (see the engine's docstring for
how they reach the traced step). JAX is an optional dependency: importing
:mod:`gradstep` does not import it; importing this module does.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._core.transform import Transform
from .._core.validate import check
from ..engines.jax import JaxEngine, NotTraceable, register

try:  # optax is optional: without it the same pair is a plain NamedTuple
    from optax import GradientTransformationExtraArgs as _Base
except ImportError:  # pragma: no cover - exercised only without optax

    class _Base(NamedTuple):  # type: ignore[no-redef]
        init: Any
        update: Any


__all__ = [
    "GradstepTransformation",
    "JaxEngine",
    "NotTraceable",
    "apply_updates",
    "from_optax",
    "register",
    "to_optax",
]


class GradstepTransformation(_Base):
    """An ``optax.GradientTransformationExtraArgs`` running a gradstep transform.

    ``init(params) -> state`` and ``update(updates, state, params=None, **extra)``
    as optax's; ``transform`` is the gradstep transform, ``engine`` its
    :class:`JaxEngine`. The state is a dict pytree named like the transform's
    stages (``state["scale_by_adam"]["mu"]``).
    """

    transform: Transform
    engine: JaxEngine


def to_optax(
    transform: Transform, *, scalars: str = "auto", fallback: str = "error"
) -> GradstepTransformation:
    """``transform`` as an optax gradient transformation run by the JAX engine.

    Complex parameters are stepped as their real and imaginary parts, as torch.optim
    and gradstep's other fronts do (``torch.view_as_real``); the state holds those
    real views. (:mod:`gradstep.compat.optax` refuses complex parameters for stateful
    stages, whose meaning in optax differs.)

    Args:
      transform: a gradstep transform (an optimizer from :mod:`gradstep` or a chain).
      scalars: ``"auto"`` (default: per-step scalars traced where the stage's
        ``prepare`` is plain arithmetic, else computed on the host) or ``"host"``
        (always on the host: the NumPy engine's very scalars); see :class:`JaxEngine`.
      fallback: ``"error"`` (default) or ``"host"``: a stage that cannot be traced
        (a NumPy transform such as Lasagne's norm constraints) runs its eager update on
        the host through a callback instead of raising :class:`NotTraceable`.

    Example:
      >>> import jax, jax.numpy as jnp, gradstep
      >>> from gradstep.jax import to_optax
      >>> opt = to_optax(gradstep.adam(0.1))
      >>> params = {"w": jnp.array([1.0, 1.0])}
      >>> state = opt.init(params)
      >>> updates, state = jax.jit(opt.update)({"w": jnp.array([0.5, -2.0])}, state, params)
      >>> updates["w"]
      Array([-0.1,  0.1], dtype=float32)
    """
    if isinstance(transform, OptaxStage):
        return transform.optax
    engine = JaxEngine(transform, scalars=scalars, fallback=fallback)
    return _transformation(transform, engine, real_views=True)


def _transformation(
    transform: Transform, engine: JaxEngine, *, real_views: bool
) -> GradstepTransformation:
    """The optax pair running ``engine``; ``real_views``: complex leaves stepped as
    their real and imaginary parts (:func:`to_optax`), else as they are (complex
    element math, for :mod:`gradstep.compat.optax`, which checks that every stage's
    math is written for it)."""
    known = transform.hyperparameters()
    views = _real_views if real_views else _as_they_are

    def init(params: Any) -> Any:
        return engine.init(views(params))

    def update(updates: Any, state: Any, params: Any = None, **extra: Any):
        for name, value in extra.items():
            if known.get(name) is not None and not isinstance(value, (jax.Array, jax.core.Tracer)):
                check("update", name, value, known[name])
        new, state = engine.update(views(updates), state, views(params), **extra)
        return (_complex_like(new, updates) if real_views else new), state

    out = GradstepTransformation(init, update)
    out.transform = transform
    out.engine = engine
    return out


def _real_views(tree: Any) -> Any:
    """Complex leaves as their real and imaginary parts in a last axis of 2, as every
    other gradstep engine steps them (``torch.view_as_real``); others as they are."""
    if tree is None:
        return None
    return jax.tree_util.tree_map(
        lambda x: jnp.stack([x.real, x.imag], axis=-1) if jnp.iscomplexobj(x) else x, tree
    )


def _as_they_are(tree: Any) -> Any:
    return tree


def _complex_like(updates: Any, like: Any) -> Any:
    """The updates of complex leaves of ``like`` back as complex arrays."""

    def back(u: Any, g: Any) -> Any:
        if not jnp.iscomplexobj(g):
            return u
        return jax.lax.complex(u[..., 0], u[..., 1]).astype(jnp.result_type(g))

    return jax.tree_util.tree_map(back, updates, like)


class OptaxStage(Transform):
    """An optax gradient transformation as a gradstep stage (see :func:`from_optax`)."""

    def __init__(self, optax_transform: Any, name: str):
        self.optax = optax_transform
        self.name = name
        self._extra_args = _takes_extra_args(optax_transform)

    def init(self, params: Any) -> Any:
        return self.optax.init(params)

    def update(self, grads: Any, state: Any, params: Any = None, **ctx: Any):
        if self._extra_args:
            return self.optax.update(grads, state, params, **ctx)
        return self.optax.update(grads, state, params)


def _takes_extra_args(t: Any) -> bool:
    try:
        import optax
    except ImportError:  # pragma: no cover
        return False
    return isinstance(t, optax.GradientTransformationExtraArgs)


def from_optax(optax_transform: Any, name: str = "optax") -> Transform:
    """An optax ``GradientTransformation`` as a stage of a gradstep chain.

    Its state is optax's own state, under ``name`` in the chain's state. It runs
    wherever its arrays can: on the JAX engine (and so inside :func:`to_optax`), or
    on the eager engine with JAX arrays.

    Example:
      >>> import jax.numpy as jnp, gradstep, optax
      >>> from gradstep.jax import from_optax, to_optax
      >>> opt = to_optax(gradstep.chain(from_optax(optax.clip(0.1)), gradstep.sgd(1.0)))
      >>> params = [jnp.zeros(2)]
      >>> opt.update([jnp.array([1.0, -0.05])], opt.init(params), params)[0][0]
      Array([-0.1 ,  0.05], dtype=float32)
    """
    if not (hasattr(optax_transform, "init") and hasattr(optax_transform, "update")):
        raise TypeError(
            f"from_optax: expected an optax GradientTransformation, got "
            f"{type(optax_transform).__name__}"
        )
    if isinstance(optax_transform, GradstepTransformation):
        return optax_transform.transform
    return OptaxStage(optax_transform, name)


def apply_updates(params: Any, updates: Any) -> Any:
    """``params + updates`` leaf by leaf, each result in its parameter's dtype (as
    ``optax.apply_updates``)."""
    return jax.tree_util.tree_map(
        lambda p, u: None if p is None else (jnp.asarray(p) + u).astype(jnp.asarray(p).dtype),
        params,
        updates,
        is_leaf=lambda x: x is None,
    )
