"""Engines: how one transform runs over many arrays.

- eager: each transform's own ``update`` on whole arrays (the reference);
- fused: the whole chain as one generated numba kernel (:mod:`.fused`).
"""
