"""The L-BFGS two-loop recursion: the inverse-Hessian approximation times a vector,
written once against the array namespace (gradstep's L-BFGS and optax's
``scale_by_lbfgs`` in :mod:`gradstep.compat._optax_lbfgs` both call it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._core.namespaces import Namespace


def two_loop(
    ns: Namespace,
    v: Any,
    s: Any,
    y: Any,
    rho: Any,
    scale: Any,
    start: Any,
    length: Any,
    vdot: Callable[[Any, Any], Any] | None = None,
) -> Any:
    r""":math:`H v` by the two-loop recursion (Nocedal & Wright Alg. 7.4), :math:`H` the
    L-BFGS inverse-Hessian approximation from the pairs :math:`(s_i, y_i, \rho_i)`
    in rows ``(start + i) % m`` of ``s``, ``y``, ``rho`` for ``i < length`` (oldest
    first) and the initial matrix ``scale`` :math:`\cdot I`: newest to oldest
    :math:`a_i = \rho_i s_i^\top q,\ q \leftarrow q - a_i y_i` from :math:`q = v`,
    then :math:`r = \gamma q` and oldest to newest :math:`r \leftarrow r + (a_i -
    \rho_i y_i^\top r) s_i`.

    ``start``/``length`` may be traced (every row is then visited, those past
    ``length`` masked to 0); ``length`` equal to the buffer size as a Python int visits
    every row unmasked (a row of zeros with :math:`\rho_i = 0` adds nothing, which is
    how optax's ``scale_by_lbfgs`` keeps its not yet filled rows). ``vdot`` replaces
    ``ns.vdot`` (e.g. a sum of per-leaf dot products).
    """
    size = s.shape[0]
    vdot = ns.vdot if vdot is None else vdot
    traced = ns.is_traced(length) or ns.is_traced(start)
    # traced: every buffer row, those past the history's length masked to 0
    n = size if traced else length
    rows = [(start + i) % size for i in range(n)]
    zero = ns.astype(0.0, v)
    need_mask = traced and not (isinstance(length, int) and length >= size)

    def masked(i: int, value: Any) -> Any:
        return ns.where(i < length, value, zero) if need_mask else value

    q = v
    a = [zero] * n
    for i in reversed(range(n)):
        a[i] = masked(i, vdot(s[rows[i]], q) * rho[rows[i]])
        q = q - a[i] * y[rows[i]]
    r = q * scale
    for i in range(n):
        b = masked(i, vdot(y[rows[i]], r) * rho[rows[i]])
        r = r + (a[i] - b) * s[rows[i]]
    return r
