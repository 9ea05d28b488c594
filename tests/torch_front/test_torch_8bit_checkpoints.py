"""Checkpoints of the torch front across 8-bit and floating-point state: the optimizer
keeps its own ``state_dtype`` and ``min_8bit_size`` through ``load_state_dict``, so an
unedited state dict saved with 8-bit state (codes and ``*_absmax`` block scales) loads
into a group that keeps floats (dequantised), floats load into an 8-bit group
(quantised), and a checkpoint saved under another ``min_8bit_size`` loads tensor by
tensor; what cannot be converted is refused before anything changes."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

import gradstep.torch as gt  # noqa: E402
from gradstep._core import blockwise8 as q8  # noqa: E402

BIG, TINY = 5000, 21  # above and below the default min_8bit_size (4096)
#: AdamW's slots: (torch key, signed)
SLOTS = (("exp_avg", True), ("exp_avg_sq", False))
ENGINES = pytest.mark.parametrize("fused", [True, False], ids=["fused", "eager"])


def _problem(steps, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    w0 = [torch.randn(BIG, generator=gen).to(dtype), torch.randn(TINY, generator=gen).to(dtype)]
    grads = [[torch.randn(w.shape, generator=gen).to(dtype) for w in w0] for _ in range(steps)]
    return w0, grads


def _params(w0):
    return [torch.nn.Parameter(w.clone()) for w in w0]


def _run(opt, params, grads):
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()


def _saved(fused, steps=2, seed=0, **options):
    """A state dict of AdamW after ``steps`` steps under the storage ``options``."""
    w0, grads = _problem(steps + 1, seed)
    params = _params(w0)
    opt = gt.AdamW(params, lr=0.01, fused=fused, **options)
    _run(opt, params, grads[:steps])
    return params, opt, copy.deepcopy(opt.state_dict()), grads[steps:]


def _assert_states_equal(have, want):
    assert sorted(have) == sorted(want)
    for key, value in want.items():
        assert have[key].dtype == value.dtype, key
        assert torch.equal(have[key], value), key


def _hand_set(params, fused, states, **options):
    """AdamW whose state is set by hand to ``states`` (one dict per parameter)."""
    opt = gt.AdamW(params, lr=0.01, fused=fused, **options)
    for p, state in zip(params, states):
        opt.state[p] = {k: v.clone() for k, v in state.items()}
    return opt


def _resumes_as(loaded, params, states, grads, fused, **options):
    """A step after loading equals one of AdamW whose state was set to ``states``."""
    ref_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    ref = _hand_set(ref_params, fused, states, **options)
    _run(loaded, params, grads)
    _run(ref, ref_params, grads)
    for p, r in zip(params, ref_params):
        assert torch.equal(p, r)
        _assert_states_equal(loaded.state[p], ref.state[r])


@ENGINES
def test_an_8bit_checkpoint_loads_into_float32_state_dequantised(fused):
    params, eight, saved, grads = _saved(fused, state_dtype="int8")
    loaded = gt.AdamW(params, lr=0.01, fused=fused)
    loaded.load_state_dict(saved)
    big, tiny = (eight.state[p] for p in params)
    want_big = {"step": big["step"]}
    for key, signed in SLOTS:
        want_big[key] = q8.dequantised(big[key], big[q8.absmax_name(key)], signed)
    want_tiny = {k: v for k, v in tiny.items() if not k.endswith(q8.ABSMAX_SUFFIX)}
    _assert_states_equal(loaded.state[params[0]], want_big)  # no block scales left
    _assert_states_equal(loaded.state[params[1]], want_tiny)
    assert loaded.param_groups[0].get("state_dtype") is None
    _resumes_as(loaded, params, [want_big, want_tiny], grads, fused)


@ENGINES
@pytest.mark.parametrize("saved_dtype", [None, torch.bfloat16], ids=["float32", "bfloat16"])
def test_float_checkpoints_load_into_8bit_state_quantised(fused, saved_dtype):
    params, full, saved, grads = _saved(fused, state_dtype=saved_dtype)
    loaded = gt.AdamW(params, lr=0.01, fused=fused, state_dtype="int8")
    loaded.load_state_dict(saved)
    big, tiny = (full.state[p] for p in params)
    want_big, want_tiny = {"step": big["step"]}, {"step": tiny["step"]}
    for key, signed in SLOTS:
        codes, scales = q8.quantised(big[key].float(), signed)  # the engines' quantiser
        want_big[key], want_big[q8.absmax_name(key)] = codes, scales
        # the small tensor keeps float32 with no block scales
        want_tiny[key] = tiny[key].float()
        want_tiny[q8.absmax_name(key)] = torch.zeros(0)
    _assert_states_equal(loaded.state[params[0]], want_big)
    _assert_states_equal(loaded.state[params[1]], want_tiny)
    _resumes_as(loaded, params, [want_big, want_tiny], grads, fused, state_dtype="int8")


@ENGINES
def test_an_8bit_checkpoint_loads_into_bfloat16_state(fused):
    params, eight, saved, grads = _saved(fused, state_dtype="int8")
    loaded = gt.AdamW(params, lr=0.01, fused=fused, state_dtype=torch.bfloat16)
    loaded.load_state_dict(saved)
    big, tiny = (eight.state[p] for p in params)
    want_big, want_tiny = {"step": big["step"]}, {"step": tiny["step"]}
    for key, signed in SLOTS:
        values = q8.dequantised(big[key], big[q8.absmax_name(key)], signed)
        want_big[key] = values.to(torch.bfloat16)  # rounded once, to the nearest
        want_tiny[key] = tiny[key].to(torch.bfloat16)
    _assert_states_equal(loaded.state[params[0]], want_big)
    _assert_states_equal(loaded.state[params[1]], want_tiny)
    _resumes_as(loaded, params, [want_big, want_tiny], grads, fused, state_dtype=torch.bfloat16)


@ENGINES
def test_checkpoints_move_between_min_8bit_sizes_both_ways(fused):
    # the default threshold: the small tensor's moments float32, quantised under 0
    params, mixed, saved, grads = _saved(fused, state_dtype="int8")
    every = gt.AdamW(params, lr=0.01, fused=fused, state_dtype="int8", min_8bit_size=0)
    every.load_state_dict(saved)
    big, tiny = (mixed.state[p] for p in params)
    want_tiny = {"step": tiny["step"]}
    for key, signed in SLOTS:
        want_tiny[key], want_tiny[q8.absmax_name(key)] = q8.quantised(tiny[key], signed)
    _assert_states_equal(every.state[params[0]], big)  # already codes: kept as saved
    _assert_states_equal(every.state[params[1]], want_tiny)
    states = [copy.deepcopy(big), want_tiny]
    _resumes_as(every, params, states, grads, fused, state_dtype="int8", min_8bit_size=0)

    # and back: the small tensor's codes dequantised, the large one's kept
    params, quantised, saved, grads = _saved(fused, seed=1, state_dtype="int8", min_8bit_size=0)
    back = gt.AdamW(params, lr=0.01, fused=fused, state_dtype="int8")
    back.load_state_dict(saved)
    big, tiny = (quantised.state[p] for p in params)
    want_tiny = {"step": tiny["step"]}
    for key, signed in SLOTS:
        want_tiny[key] = q8.dequantised(tiny[key], tiny[q8.absmax_name(key)], signed)
        want_tiny[q8.absmax_name(key)] = torch.zeros(0)
    _assert_states_equal(back.state[params[0]], big)
    _assert_states_equal(back.state[params[1]], want_tiny)
    _resumes_as(back, params, [copy.deepcopy(big), want_tiny], grads, fused, state_dtype="int8")

    # a threshold above every tensor: all float32, with empty block scales
    params, _, saved, _ = _saved(fused, state_dtype="int8")
    none = gt.AdamW(params, lr=0.01, fused=fused, state_dtype="int8", min_8bit_size=10**6)
    none.load_state_dict(saved)
    for p in params:
        for key, _ in SLOTS:
            assert none.state[p][key].dtype == torch.float32
            assert none.state[p][q8.absmax_name(key)].shape == (0,)


def test_the_optimizer_keeps_its_storage_options_and_takes_the_hyperparameters():
    """``state_dtype`` and ``min_8bit_size`` stay the loading optimizer's (a group
    that did not set them keeps the defaults); lr, betas and the other
    hyperparameters come from the checkpoint, as torch.optim takes them."""
    w0, grads = _problem(3)
    params = _params(w0)
    first = gt.AdamW(params, lr=0.01, betas=(0.8, 0.9), state_dtype="int8", min_8bit_size=0)
    _run(first, params, grads[:2])
    saved = copy.deepcopy(first.state_dict())
    plain = gt.AdamW(params, lr=0.5)
    plain.load_state_dict(saved)
    group = plain.param_groups[0]
    assert "state_dtype" not in group and "min_8bit_size" not in group
    assert group["lr"] == 0.01 and group["betas"] == (0.8, 0.9)
    assert all(plain.state[p]["exp_avg"].dtype == torch.float32 for p in params)
    # per group: the first keeps floats, the second 8-bit codes above its own threshold
    own = {"state_dtype": "int8", "min_8bit_size": 4096}
    two = gt.AdamW([{"params": [params[0]]}, {"params": [params[1]], **own}], lr=0.5)
    one = first.state_dict()
    one["param_groups"] = [
        {**one["param_groups"][0], "params": [0]},
        {**one["param_groups"][0], "params": [1]},
    ]
    two.load_state_dict(copy.deepcopy(one))
    assert [g.get("state_dtype") for g in two.param_groups] == [None, "int8"]
    assert [g.get("min_8bit_size") for g in two.param_groups] == [None, 4096]
    assert two.state[params[0]]["exp_avg"].dtype == torch.float32
    assert q8.absmax_name("exp_avg") not in two.state[params[0]]
    # the small tensor (below 4096) dequantised, with the empty block scales of its kind
    assert two.state[params[1]]["exp_avg"].dtype == torch.float32
    assert two.state[params[1]][q8.absmax_name("exp_avg")].shape == (0,)
    assert all(g["lr"] == 0.01 for g in two.param_groups)
    _run(two, params, grads[2:])


def _snapshot(opt):
    return copy.deepcopy(opt.state_dict())


def _assert_unchanged(opt, before):
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert sorted(after["state"]) == sorted(before["state"])
    for pid, state in before["state"].items():
        _assert_states_equal(after["state"][pid], state)


@pytest.mark.parametrize("target", ["float32", "int8"])
@pytest.mark.parametrize(
    "spoil, message",
    [
        (
            lambda s: s.pop("exp_avg_absmax"),
            r"state\['exp_avg'\] of parameter 0 of param group 0 holds 8-bit codes, but "
            r"state\['exp_avg_absmax'\], its block scales, is missing",
        ),
        (
            lambda s: s.update(exp_avg_absmax=torch.ones(3)),
            r"state\['exp_avg_absmax'\] of parameter 0 of param group 0 has shape \(3,\)",
        ),
        (
            lambda s: s.update(exp_avg=torch.zeros(4999, dtype=torch.uint8)),
            r"state\['exp_avg'\] of parameter 0 of param group 0 has shape \(4999,\)",
        ),
        (
            lambda s: s.update(exp_avg=torch.zeros(BIG, dtype=torch.int32)),
            r"state\['exp_avg'\] of parameter 0 of param group 0 has dtype torch.int32",
        ),
    ],
    ids=["no-scales", "scales-of-another-shape", "codes-of-another-shape", "not-codes"],
)
def test_what_cannot_be_converted_is_refused_and_the_state_stays(spoil, message, target):
    _, _, saved, _ = _saved(True, state_dtype="int8")
    spoil(saved["state"][0])
    w0, grads = _problem(1, seed=3)
    params = _params(w0)
    opt = gt.AdamW(params, lr=0.02, state_dtype=None if target == "float32" else "int8")
    _run(opt, params, grads)  # a state of its own, which must stay as it is
    before = _snapshot(opt)
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(saved)
    _assert_unchanged(opt, before)
    assert opt.param_groups[0]["lr"] == 0.02


def test_loading_leaves_the_given_state_dict_as_it_was():
    params, _, saved, _ = _saved(True, state_dtype="int8")
    kept = copy.deepcopy(saved)
    gt.AdamW(params, lr=0.01).load_state_dict(saved)
    for pid, state in kept["state"].items():
        _assert_states_equal(saved["state"][pid], state)
    assert saved["param_groups"] == kept["param_groups"]


@pytest.mark.filterwarnings("ignore:.*bfloat16.*")
@pytest.mark.parametrize("min_8bit_size", [q8.MIN_8BIT_SIZE, 0])
def test_bfloat16_parameters_resume_8bit_state_bit_exact(min_8bit_size):
    """The block scales (and a small tensor's float32 moments) of a bfloat16
    parameter stay float32 through torch's loading, which casts state to the
    parameter's dtype."""
    w0, grads = _problem(4, seed=2, dtype=torch.bfloat16)

    def make(p):
        return gt.AdamW(p, lr=0.01, state_dtype="int8", min_8bit_size=min_8bit_size)

    whole = _params(w0)
    whole_opt = make(whole)
    _run(whole_opt, whole, grads)
    half = _params(w0)
    first = make(half)
    _run(first, half, grads[:2])
    again = make(half)
    again.load_state_dict(copy.deepcopy(first.state_dict()))
    for p in half:
        _assert_states_equal(again.state[p], first.state[p])
    _run(again, half, grads[2:])
    for a, b in zip(half, whole):
        assert torch.equal(a, b)
    for a, b in zip(half, whole):
        _assert_states_equal(again.state[a], whole_opt.state[b])


def test_a_complex_parameters_8bit_checkpoint_loads_into_float32_state_and_back():
    gen = torch.Generator().manual_seed(4)
    z0 = torch.randn(8, 80, dtype=torch.complex64, generator=gen)
    grads = [[torch.randn(8, 80, dtype=torch.complex64, generator=gen)] for _ in range(3)]
    z = [torch.nn.Parameter(z0.clone())]
    eight = gt.Adam(z, lr=0.1, state_dtype="int8", min_8bit_size=16)
    _run(eight, z, grads[:2])
    saved = copy.deepcopy(eight.state_dict())
    full = gt.Adam(z, lr=0.1)
    full.load_state_dict(saved)
    state = eight.state[z[0]]
    want = {"step": state["step"]}
    for key, signed in SLOTS:
        values = q8.dequantised(state[key], state[q8.absmax_name(key)], signed)
        want[key] = torch.view_as_complex(values)  # complex, as torch keeps it
    _assert_states_equal(full.state[z[0]], want)
    again = gt.Adam(z, lr=0.1, state_dtype="int8", min_8bit_size=16)
    again.load_state_dict(full.state_dict())
    for key, signed in SLOTS:  # quantised from the real view
        codes, scales = q8.quantised(torch.view_as_real(want[key]), signed)
        assert torch.equal(again.state[z[0]][key], codes)
        assert torch.equal(again.state[z[0]][q8.absmax_name(key)], scales)
    _run(again, z, grads[2:])


def test_master_weights_8bit_state_loads_into_float32_state_and_back():
    """Under ``master_weights`` the state is the float32 master copy's: dequantised
    into float32 (not the bfloat16 parameter's dtype) and quantised back."""
    w0, grads = _problem(3, seed=5, dtype=torch.bfloat16)
    params = _params(w0)
    eight = gt.AdamW(params, lr=0.01, master_weights=True, state_dtype="int8")
    _run(eight, params, grads[:2])
    saved = copy.deepcopy(eight.state_dict())
    full = gt.AdamW(params, lr=0.01, master_weights=True)
    full.load_state_dict(saved)
    big = eight.state[params[0]]
    for key, signed in SLOTS:
        want = q8.dequantised(big[key], big[q8.absmax_name(key)], signed)
        _assert_states_equal({key: full.state[params[0]][key]}, {key: want})
        assert q8.absmax_name(key) not in full.state[params[0]]
    assert torch.equal(full.state[params[0]]["master_param"], big["master_param"])
    again = gt.AdamW(params, lr=0.01, master_weights=True, state_dtype="int8")
    again.load_state_dict(full.state_dict())
    for key, signed in SLOTS:
        codes, scales = q8.quantised(full.state[params[0]][key], signed)
        assert torch.equal(again.state[params[0]][key], codes)
        assert torch.equal(again.state[params[0]][q8.absmax_name(key)], scales)
    _run(again, params, grads[2:])


@pytest.mark.parametrize("engine", ["fused", "eager"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_a_transform_declaring_8bit_state_resumes_bit_exact(engine, dtype):
    """8-bit slots declared by the transform itself (no group ``state_dtype``) get
    their codes back as uint8 (and a bfloat16 parameter's block scales float32)
    after torch's loading, which casts every state tensor to its parameter's dtype."""
    import gradstep

    gen = torch.Generator().manual_seed(6)
    w0 = [torch.randn(n, generator=gen).to(dtype) for n in (7, 5003)]
    grads = [[torch.randn(w.shape, generator=gen).to(dtype) for w in w0] for _ in range(3)]

    def make(params):
        rule = gradstep.adamw(1e-3, state_dtype="int8", min_8bit_size=100)
        return gt.TransformOptimizer(params, rule, engine=engine)

    params = _params(w0)
    first = make(params)
    _run(first, params, grads[:1])
    assert first.state[params[1]]["mu"].dtype == torch.uint8
    copies = _params([p.detach() for p in params])
    again = make(copies)
    again.load_state_dict(copy.deepcopy(first.state_dict()))
    for p, c in zip(params, copies):
        _assert_states_equal(again.state[c], first.state[p])
    _run(first, params, grads[1:])
    _run(again, copies, grads[1:])
    for p, c in zip(params, copies):
        assert torch.equal(p, c)
        _assert_states_equal(again.state[c], first.state[p])


def test_a_torch_optim_checkpoint_loads_into_8bit_state():
    """A checkpoint of ``torch.optim.AdamW`` (no storage options in its groups) loads
    into ``gt.AdamW(state_dtype="int8")`` quantised: the group keeps its own options."""
    w0, grads = _problem(3)
    params = _params(w0)
    theirs = torch.optim.AdamW(params, lr=0.01)
    _run(theirs, params, grads[:2])
    ours = gt.AdamW(params, lr=0.5, state_dtype="int8")
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    assert ours.param_groups[0]["state_dtype"] == "int8"
    assert ours.param_groups[0]["lr"] == 0.01
    big = theirs.state[params[0]]
    for key, signed in SLOTS:
        codes, scales = q8.quantised(big[key], signed)
        assert torch.equal(ours.state[params[0]][key], codes)
        assert torch.equal(ours.state[params[0]][q8.absmax_name(key)], scales)
    _run(ours, params, grads[2:])
