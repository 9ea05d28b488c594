"""Which ``gradstep compare`` options apply where: the options that configure a race
(refused with ``--from``, which re-renders saved results), ``--engine`` (not with
``--backend jax``), ``--animate`` (only where a 2-D function is drawn) and the options
of the stochastic problems (``--seeds``, ``--batch-size``). An option that would be
ignored is refused, naming it."""

from __future__ import annotations

from . import _compare_race as race

#: the 2-D functions, the only problems --animate draws
SURFACES = ("rosenbrock", "beale", "saddle", "rastrigin")
#: the options that configure a race (argparse dest -> the value a race takes when the
#: option is left out). They default to None, False or [] on the command line, so that
#: given or not can be told apart even when given their default value: --from, which
#: re-renders saved results, refuses them rather than ignoring them. The other options
#: (--out, --animate, --no-figures, --no-progress) apply to a re-rendering as well.
RACE_OPTIONS = {
    "optimizers": None,
    "problems": None,
    "set": [],
    "quick": False,
    "full": False,
    "no_tune": False,
    "seeds": None,
    "steps": None,
    "batch_size": None,
    "seed": 0,
    "backend": "numpy",
    "engine": "eager",
}
#: the backends whose fronts take --engine (jax runs under jax.jit, with no engine)
ENGINE_BACKENDS = ("numpy", "torch")


def option_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _given(value) -> bool:
    """Whether an option of RACE_OPTIONS was given (0, a given --seed, counts)."""
    return not (value is None or value is False or value == [])


def given_race_options(args) -> list[str]:
    """The race-configuring options given on the command line, as typed."""
    return [option_name(dest) for dest in RACE_OPTIONS if _given(getattr(args, dest))]


def fill_race_defaults(args) -> None:
    for dest, default in RACE_OPTIONS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)


def refuse_race_options(args) -> None:
    given = given_race_options(args)
    if given:
        verb, them = ("configure", "them") if len(given) > 1 else ("configures", "it")
        raise race.InputError(
            f"{', '.join(given)} {verb} a race; --from re-renders saved results: leave {them} out"
        )


def check_animate(args, problem_names) -> None:
    """--animate draws the paths on the 2-D functions: refused where it would draw none."""
    if not args.animate:
        return
    if args.no_figures:
        raise race.InputError(
            "--animate writes trajectories.gif and --no-figures writes no figure: "
            "leave one of them out"
        )
    if problem_names is not None and not any(n in SURFACES for n in problem_names):
        where = f"--from {args.from_json} holds" if args.from_json else "--problems names"
        raise race.InputError(
            f"--animate draws the paths on the 2-D functions ({', '.join(SURFACES)}) and "
            f"{where} none of them ({', '.join(problem_names)}): leave --animate out"
        )


def check_backend_options(args) -> None:
    """Refuse the options that the chosen backend does not use."""
    backend = args.backend or RACE_OPTIONS["backend"]
    if args.engine is not None and backend not in ENGINE_BACKENDS:
        raise race.InputError(
            f"--engine is an option of --backend {' and '.join(ENGINE_BACKENDS)}; "
            f"--backend {backend} runs under jax.jit, with no engine: leave --engine out"
        )


def check_problem_options(args, problems, all_problems) -> None:
    """Refuse --seeds and --batch-size where no problem of the race uses them."""
    if any(p.stochastic for p in problems):
        return
    names = ", ".join(p.name for p in problems)
    stochastic = ", ".join(n for n, p in all_problems.items() if p.stochastic)
    for dest, what in (("seeds", "seeds"), ("batch_size", "mini-batches")):
        if getattr(args, dest) is not None:
            option = option_name(dest)
            raise race.InputError(
                f"{option} sets the {what} of the stochastic problems ({stochastic}) and "
                f"--problems {names} names none of them: leave {option} out"
            )
