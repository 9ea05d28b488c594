"""The kernel plan both fused code generators render: row kinds and element steps."""

from __future__ import annotations

import gradstep
import gradstep.transforms
from gradstep.engines import kernel_plan as kp
from gradstep.engines.plan import flatten_stages, place_scales, place_stages


def planned(transform, per_tensor: bool = False):
    stages = flatten_stages(transform, per_tensor=per_tensor)
    n_rows, _, _ = place_stages(stages)
    return stages, place_scales(stages, n_rows)


def test_stochastic_rows_are_the_seeded_bfloat16_ones():
    # adamw's moments and its parameter store are seeded; the Kahan compensation is not
    stages, n_rows = planned(gradstep.adamw(0.01, stochastic_rounding=True, kahan_summation=True))
    assert n_rows == 5
    bf16 = kp.row_kinds(stages, ["bfloat16"] * n_rows, "float32")
    assert bf16 == [kp.HALF] + [kp.STOCHASTIC] * 3 + [kp.HALF]
    mixed = kp.row_kinds(
        stages, ["float32", "float32", "float64", "bfloat16", "float16"], "float32"
    )
    assert mixed == [kp.PLAIN, kp.PLAIN, kp.CAST, kp.STOCHASTIC, kp.HALF]


def test_eight_bit_slots_are_quantised_rows():
    stages, n_rows = planned(gradstep.adamw(0.01, state_dtype="blockwise8"))
    rows = ["float32"] * n_rows
    for st in stages:
        for k in st.scale_rows:
            rows[st.slot_rows[k]] = "blockwise8"
    kinds = kp.row_kinds(stages, rows, "float32")
    assert kinds.count(kp.QUANTISED) == 2 and kinds.count(kp.PLAIN) == n_rows - 2
    step = kp.kernels(stages, {})[0]
    scales = [i for i in kp.kernel_inputs(step, stages, rows) if i.table == "scales"]
    assert len(scales) == 2


def test_kahan_parameter_store_steps():
    stages, _ = planned(gradstep.adamw(0.01, kahan_summation=True))
    (store,) = [st for st in stages if st.stage.slots and st.stage.slots[0].name == "compensation"]
    c = f"s{store.index}_0"
    assert kp.parameter_store_steps(store) == [
        kp.LoadSlot(store, 0),
        kp.Let("x", f"x + {c}"),
        kp.Convert("wr", 1, "wi + x", to_storage=True),
        kp.Convert("wn", 1, "wr", to_storage=False),
        kp.Let(c, "x - (wn - wi)"),
        kp.Let("x", "wn - wi"),
    ]
    steps = kp.element_steps(stages, write=True)
    assert steps[-1] == kp.StoreParam("wr", rounded=True)
    assert kp.StoreSlot(store, 0) in steps


def test_a_masked_stage_stores_its_slots_only_where_it_covers():
    stages, _ = planned(
        gradstep.chain(gradstep.masked(gradstep.momentum(0.1), [True, False]), gradstep.adam(0.1))
    )
    masked = [st for st in stages if st.mask is not None]
    steps = kp.element_steps(stages, write=True)
    covered = [s for s in steps if isinstance(s, kp.IfCovered)]
    assert [s.stage for s in covered] == [st.index for st in masked]
    inside = [s for c in covered for s in c.steps if isinstance(s, kp.StoreSlot)]
    after = [s for s in steps if isinstance(s, kp.StoreSlot)]
    with_slots = {st.index for st in masked if st.slot_rows}
    assert with_slots and {s.stage.index for s in inside} == with_slots
    assert not {s.stage.index for s in after} & with_slots
    assert steps[-1] == kp.StoreParam("wi + x", rounded=False)
    # a reduction pass recomputes the stages without storing anything
    reducing = kp.element_steps(stages, write=False)
    covered = [s for s in reducing if isinstance(s, kp.IfCovered)]
    assert not any(isinstance(s, kp.StoreSlot) for c in covered for s in c.steps)


def test_each_reduction_stage_has_its_kernel():
    stages, _ = planned(gradstep.cautious_adamw(0.01))
    names = [k.name for k in kp.kernels(stages, {})]
    ends = [st for st in stages if st.is_cautious]
    assert names == ["step"] + [f"reduce{st.index}" for st in ends]
    (reduce,) = kp.kernels(stages, {})[1:]
    assert kp.reduction_steps(reduce) == [kp.Accumulate("positive", (f"x * gc{ends[0].partner}",))]
