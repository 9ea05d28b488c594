"""Schedules: closed-form values, optax's probe values, validation."""

import pytest

from gradstep import schedules as S


def values(s, counts):
    return [pytest.approx(s(c), abs=1e-12) for c in counts]


def test_polynomial_decay_including_objax_lars_form():
    s = S.polynomial_decay(1.0, 0.0, 2, 10)
    assert [s(n) for n in (0, 5, 10, 20)] == pytest.approx([1.0, 0.25, 0.0, 0.0])
    lars = S.polynomial_decay(0.1, 0.0, 2, 100)
    assert lars(30) == pytest.approx(0.1 * (1 - 30 / 100) ** 2)
    delayed = S.polynomial_decay(1.0, 0.5, 1, 4, transition_begin=2)
    assert [delayed(n) for n in (0, 2, 4, 6, 9)] == pytest.approx([1, 1, 0.75, 0.5, 0.5])


def test_cosine_decay_matches_optax_probe():
    s = S.cosine_decay(1.0, 10, alpha=0.1)
    assert [s(n) for n in (0, 5, 10, 20)] == pytest.approx([1.0, 0.55, 0.1, 0.1])


def test_exponential_and_step_decay():
    s = S.exponential_decay(1.0, 10, 0.5)
    assert [s(n) for n in (0, 10, 20)] == pytest.approx([1.0, 0.5, 0.25])
    st = S.exponential_decay(1.0, 10, 0.5, staircase=True, end_value=0.3)
    assert [st(n) for n in (9, 10, 25)] == pytest.approx([1.0, 0.5, 0.3])
    late = S.exponential_decay(2.0, 5, 0.1, transition_begin=3)
    assert late(2) == 2.0 and late(8) == pytest.approx(0.2)
    step = S.step_decay(1.0, 3, 0.1)
    assert [step(n) for n in (0, 2, 3, 6)] == pytest.approx([1, 1, 0.1, 0.01])


def test_piecewise_constant():
    s = S.piecewise_constant([2, 5], [1.0, 0.1, 0.01])
    assert [s(n) for n in (0, 1, 2, 4, 5, 100)] == [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    with pytest.raises(ValueError, match="values has 2 entries"):
        S.piecewise_constant([2, 5], [1.0, 0.1])
    with pytest.raises(ValueError, match="strictly increasing"):
        S.piecewise_constant([5, 2], [1.0, 0.1, 0.01])


def test_warmup_cosine_decay_gives_zero_first_lr_like_optax():
    s = S.warmup_cosine_decay(0.0, 1.0, 10, 110, end_value=0.1)
    assert s(0) == 0.0 and s(1) == pytest.approx(0.1) and s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55) and s(110) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="decay_steps"):
        S.warmup_cosine_decay(0.0, 1.0, 10, 10)


def test_one_cycle_rises_then_falls():
    s = S.one_cycle(100, 1.0, pct_start=0.3, div_factor=10, final_div_factor=100)
    assert s(0) == pytest.approx(0.1) and s(30) == pytest.approx(1.0)
    assert s(100) == pytest.approx(0.001) and s(200) == pytest.approx(0.001)
    assert s(10) < s(20) < s(30) and s(40) > s(80)


def test_join_passes_local_counts():
    s = S.join([S.constant(1.0), S.linear_warmup(2.0, 4, init_value=0.0)], [3])
    assert [s(n) for n in (0, 2, 3, 5, 7, 50)] == pytest.approx([1, 1, 0, 1, 2, 2])
    with pytest.raises(ValueError, match="need 1 boundaries"):
        S.join([S.constant(1.0), S.constant(2.0)], [])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: S.polynomial_decay(1.0, 0.0, 2, 0), "transition_steps"),
        (lambda: S.cosine_decay(1.0, 10, alpha=2.0), "alpha"),
        (lambda: S.step_decay(1.0, 3, gamma=-1.0), "gamma"),
        (lambda: S.one_cycle(10, 1.0, pct_start=1.0), "pct_start"),
        (lambda: S.linear_warmup(1.0, 0), "warmup_steps"),
    ],
)
def test_invalid_schedule_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
