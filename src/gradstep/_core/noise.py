"""Seeded noise stages: a state of a step count and a seed, normals keyed by (seed, count).

A stochastic stage keeps its random key in its state, ``{"count": int64,
"seed": int64}``: the update with step count :math:`k` (0 on the first) draws from
the key ``(seed, k)`` with its array library's generator
(:meth:`~gradstep._core.namespaces.Namespace.normals`). A run is reproducible on
each library, and a run resumed from a checkpoint draws what the uninterrupted run
drew. :class:`SeededNoise` holds that state; :class:`AddNormals` is the stage that
adds ``std`` times the normals to the incoming updates.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import tree as _tree
from .elementwise import resolve
from .gradients import Optional
from .namespaces import NUMPY, namespace_of
from .transform import Transform
from .validate import Interval


def optional_seed(bits: int) -> Optional:
    """The constraint of a ``seed=`` argument: an integer of ``bits`` bits (>= 0) or
    None (fresh entropy)."""
    return Optional(Interval(0, 2**bits - 1, integer=True))


#: a seed the int64 state holds
SEED = optional_seed(63)


#: set by a front whose state is made from stand-in arrays (the torch front makes it
#: from NumPy arrays of the parameters' shapes): the array library the seed is for
_SEEDS_FOR = contextvars.ContextVar("gradstep_seeds_for", default=None)


@contextlib.contextmanager
def seeds_for(namespace: Any) -> Iterator[None]:
    """Within the block, seeds for ``seed=None`` come from ``namespace``."""
    token = _SEEDS_FOR.set(namespace)
    try:
        yield
    finally:
        _SEEDS_FOR.reset(token)


def fresh_seed(params: Any = None) -> int:
    """A seed for ``seed=None``, from the parameters' array library
    (:meth:`~gradstep._core.namespaces.Namespace.fresh_seed`: torch's default
    generator for torch tensors, so ``torch.manual_seed`` repeats a run; fresh
    entropy otherwise)."""
    namespace = _SEEDS_FOR.get()
    if namespace is None:
        first = next(iter(_tree.leaves(params)), None)
        namespace = NUMPY if first is None else namespace_of(first)
    return namespace.fresh_seed()


def normals(likes: list, seed: Any, count: Any, std: Any) -> list:
    """``std`` times standard normal noise shaped like each array of ``likes``, in its
    floating dtype and library, drawn from the key ``(seed, count)``."""
    if not likes:
        return []
    return namespace_of(likes[0]).normals(seed, count, likes, std)


class SeededNoise(Transform):
    """A stage whose state is its step count and the seed of its noise; ``seed`` is
    the constructor's (None: fresh entropy drawn at ``init``)."""

    seed: int | None = None

    def init(self, params: Any) -> dict:
        seed = fresh_seed(params) if self.seed is None else self.seed
        return {"count": np.zeros((), np.int64), "seed": np.asarray(seed, np.int64)}

    def advance(self, state: dict) -> tuple[Any, Any, dict]:
        """``(count, seed, next state)``: this update's key, as Python ints (traced
        arrays under ``jax.jit``), and the state after the update."""
        count_ns = namespace_of(state["count"])
        count = count_ns.count(state["count"])
        seed = namespace_of(state["seed"]).count(state["seed"])
        new_state = {
            "count": count_ns.count_array(count + 1, state["count"]),
            "seed": state["seed"],
        }
        return count, seed, new_state


class AddNormals(SeededNoise):
    """Adds ``std`` times standard normal noise to the incoming updates, each cast to
    its update's dtype (a stochastic stage). Subclasses set ``hyperparams`` and say
    how the hyperparameters of a step give its ``std`` (:meth:`noise_std`)."""

    hyperparams: dict[str, Any]

    def hyperparameters(self) -> dict[str, Any]:
        declared = getattr(self, "declared_ranges", {})
        return {name: declared.get(name) for name in self.hyperparams}

    def noise_std(self, h: dict[str, Any], count: Any, ns: Any) -> Any:
        """The standard deviation of the update with step count ``count``, from the
        resolved hyperparameters ``h``, computed with the namespace ``ns``."""
        raise NotImplementedError

    def draw(self, likes: list, seed: Any, count: Any, std: Any) -> list:
        """The noise of one update (:func:`normals`)."""
        return normals(likes, seed, count, std)

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        leaves, td = _tree.flatten(grads)
        count, seed, new_state = self.advance(state)
        h = resolve(self.hyperparams, count, ctx)
        ns = namespace_of(leaves[0]) if leaves else namespace_of(state["count"])
        noise = self.draw(leaves, seed, count, self.noise_std(h, count, ns))
        out = [ns.wrap(ns.astype(u + xi, xi)) for u, xi in zip(leaves, noise)]
        return _tree.unflatten(td, out), new_state
