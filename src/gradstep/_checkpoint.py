"""The NumPy front's checkpoint helpers: conversions and checks before a state is loaded."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import tree as _tree
from ._core.transform import Transform

STATE = "state/"


def blockwise8_converted(transform: Transform, state_dict: dict[str, Any]) -> dict[str, Any]:
    """``state_dict`` with each slot saved in another form than this optimizer keeps
    it converted, tensor by tensor (:mod:`gradstep._core.blockwise8`): float values
    quantised into codes and block scales where this optimizer keeps 8-bit codes
    (a tensor of ``min_8bit_size`` elements or more of an 8-bit slot), codes
    dequantised where it keeps floats (a floating-point slot, or a tensor below
    ``min_8bit_size``, which gets its empty scale array); anything else is left for
    the checks."""
    from ._core import blockwise8
    from ._core.elementwise import Elementwise
    from ._core.transform import walk

    out = dict(state_dict)
    for visit in walk(transform):
        t = visit.transform
        if not isinstance(t, Elementwise) or visit.path is None:
            continue
        for slot in t.slots:
            prefix = STATE + "/".join(visit.path + (slot.name,))
            scales = STATE + "/".join(visit.path + (blockwise8.absmax_name(slot.name),))
            keys = [k for k in out if k == prefix or k.startswith(prefix + "/")]
            eight = slot.dtype == blockwise8.BLOCKWISE8
            for key in keys:
                scale_key = scales + key[len(prefix) :]
                value, scale = blockwise8.converted(
                    np.asarray(out[key]),
                    out.get(scale_key),
                    not slot.nonnegative,
                    eight,
                    slot.min_8bit_size,
                )
                out[key] = value
                if scale is None:
                    out.pop(scale_key, None)
                else:
                    out[scale_key] = scale
    return out


def bfloat16_restored(a: np.ndarray) -> np.ndarray:
    """NumPy files ml_dtypes' bfloat16 as raw 2-byte records (``V2``): viewed back."""
    if a.dtype.kind == "V" and a.dtype.itemsize == 2 and a.dtype.names is None:
        from ._core.namespaces import numpy_dtype

        return a.view(numpy_dtype("bfloat16"))
    return a


def check_state_values(owner: str, transform: Transform, state: dict) -> None:
    """Step counts must be non-negative integers, slots declared non-negative must be
    (checked where the stages' state can be located: elementwise chains)."""
    for path, leaf in zip(_tree.leaf_paths(state), _tree.leaves(state)):
        if path.rsplit("/", 1)[-1] == "count":
            value = np.asarray(leaf)
            if value.dtype.kind not in "iu" or np.any(value < 0):
                raise ValueError(
                    f"{owner}: invalid {STATE + path}={value!r}; valid values: an integer >= 0"
                )
    from .engines.plan import NotFusable, flatten_stages

    try:
        stages = flatten_stages(transform)
    except NotFusable:
        return
    for st in stages:
        node = state
        for key in st.state_path:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        for slot in st.stage.slots:
            if not getattr(slot, "nonnegative", False) or slot.name not in node:
                continue
            for path, leaf in zip(_tree.leaf_paths(node[slot.name]), _tree.leaves(node[slot.name])):
                # NaN passes: a NaN gradient makes NaN moments in a real run, and its
                # checkpoint must resume; a negative value comes from no run
                bad = np.asarray(leaf) < 0
                if np.any(bad):
                    name = "/".join(st.state_path + (slot.name,) + ((path,) if path else ()))
                    raise ValueError(
                        f"{owner}: invalid {STATE + name}: {int(np.sum(bad))} elements are "
                        "negative; valid values: >= 0"
                    )
