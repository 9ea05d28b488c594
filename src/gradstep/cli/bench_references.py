"""``gradstep bench --references``: each rule against its torch-family reference implementation.

:data:`REFERENCES` maps registry names to the reference classes the conformance fixtures
were recorded from (pytorch-optimizer, timm, prodigyopt, dadaptation, schedulefree,
came-pytorch) and heavyball's classes that compute the same updates
(:mod:`gradstep.cli._references_heavyball`), with the hyperparameters of the
comparison: the same gradstep arguments set both sides, translated onto the
reference's constructor by ``kwargs``, so that both compute the same update
(``tests/cli/test_bench_references.py`` checks it). Each case
steps gradstep (its fused engine where it runs the rule, else the eager one) and the
reference on CPU tensors with ``.grad`` set, interleaved, on the same layout; a
reference whose constructor takes ``foreach`` is timed with ``foreach=False`` and
``foreach=True`` (heavyball: ``multi_tensor``), heavyball also in its default
``compiled`` mode (``torch.compile``, which it switches off with
``heavyball.utils.compile_mode = None``: every other mode runs with it off; on
layouts of at most :data:`COMPILED_MAX_TENSORS` tensors), and the fastest mode is the
one compared. None of these packages is a requirement: a missing
one is reported as not installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradstep

from ._bench_report import markdown_table, median_time, ms, ratio
from ._reference import Reference
from ._reference import adam_args as _adam
from ._reference import betas as _betas
from ._references_heavyball import HEAVYBALL, HEAVYBALL_EXCLUDED


def _lion(hp: dict) -> dict:
    return {"lr": hp["learning_rate"], "betas": _betas(hp), "weight_decay": hp["weight_decay"]}


def _projected(hp: dict) -> dict:
    return {"delta": hp["delta"], "wd_ratio": hp["wd_ratio"]}


def _dadapt(hp: dict, *names: str) -> dict:
    out = {"lr": hp["learning_rate"], "d0": hp["d0"], "growth_rate": hp["growth_rate"]}
    return {**out, **{k: hp[k] for k in names}}


def _schedule_free(hp: dict, **extra) -> dict:
    names = ("weight_decay", "warmup_steps", "r", "weight_lr_power")
    return {"lr": hp["learning_rate"], **{k: hp[k] for k in names}, **extra}


PO = "pytorch-optimizer"
POM = "pytorch_optimizer"
TIMM = "timm.optim"

#: rule -> its references, as the conformance fixtures construct them (then heavyball's)
REFERENCES: tuple[Reference, ...] = (
    Reference("lion", PO, POM, "Lion", lambda hp: {**_lion(hp), "weight_decouple": True},
              {"learning_rate": 0.01}),
    Reference("lion", "timm", TIMM + ".lion", "Lion", _lion, {"learning_rate": 0.01}),
    Reference(
        "adabelief", PO, POM, "AdaBelief",
        lambda hp: _adam(hp, weight_decouple=hp["decoupled_weight_decay"],
                         rectify=hp["rectify"]),
        {"learning_rate": 0.05},
    ),
    Reference(
        "yogi", PO, POM, "Yogi",
        lambda hp: _adam(hp, initial_accumulator=hp["initial_accumulator_value"],
                         weight_decouple=hp["decoupled_weight_decay"]),
        {"learning_rate": 0.05},
    ),
    Reference(
        "madgrad", PO, POM, "MADGRAD",
        lambda hp: {"lr": hp["learning_rate"], "momentum": hp["momentum"], "eps": hp["epsilon"],
                    "weight_decay": hp["weight_decay"],
                    "weight_decouple": hp["decoupled_weight_decay"]},
        {"learning_rate": 0.05},
    ),
    Reference(
        "adan", PO, POM, "Adan",
        lambda hp: {**_adam(hp), "betas": _betas(hp, 3),
                    "weight_decouple": hp["weight_decay_mode"] != "proximal"},
        {"learning_rate": 0.05},
    ),
    Reference("laprop", PO, POM, "LaProp", _adam, {"learning_rate": 0.05, "eps_root": 1e-15}),
    Reference(
        "adopt", PO, POM, "ADOPT",
        lambda hp: _adam(hp, weight_decouple=hp["decoupled_weight_decay"]),
        {"learning_rate": 0.01, "beta2": 0.99},
    ),
    Reference(
        "ademamix", PO, POM, "AdEMAMix",
        lambda hp: {**_adam(hp), "betas": _betas(hp, 3), "alpha": hp["alpha"],
                    "t_alpha_beta3": hp["warmup_steps"],
                    "weight_decouple": hp["decoupled_weight_decay"]},
        {"learning_rate": 0.05, "beta3": 0.99, "alpha": 2.0},
    ),
    Reference(
        "schedule_free_sgd", "schedulefree", "schedulefree", "SGDScheduleFree",
        lambda hp: _schedule_free(hp, momentum=hp["momentum"]),
        {"learning_rate": 0.5}, train=True,
    ),
    Reference(
        "schedule_free_adamw", "schedulefree", "schedulefree", "AdamWScheduleFree",
        lambda hp: _schedule_free(hp, betas=_betas(hp), eps=hp["epsilon"]),
        {"learning_rate": 0.1}, train=True,
    ),
    Reference("adamp", PO, POM, "AdamP", lambda hp: _adam(hp, **_projected(hp)),
              {"learning_rate": 0.05}),
    Reference("adamp", "timm", TIMM + ".adamp", "AdamP", lambda hp: _adam(hp, **_projected(hp)),
              {"learning_rate": 0.05, "epsilon_placement": "outside"}),
    Reference(
        "sgdp", PO, POM, "SGDP",
        lambda hp: {"lr": hp["learning_rate"], "eps": hp["epsilon"],
                    **{k: hp[k] for k in ("momentum", "dampening", "nesterov", "weight_decay")},
                    **_projected(hp)},
        {"learning_rate": 0.05},
    ),
    Reference(
        "sgdp", "timm", TIMM + ".sgdp", "SGDP",
        lambda hp: {"lr": hp["learning_rate"], "eps": hp["epsilon"],
                    **{k: hp[k] for k in ("momentum", "dampening", "nesterov", "weight_decay")},
                    **_projected(hp)},
        {"learning_rate": 0.05},
    ),
    Reference(
        "novograd", PO, POM, "NovoGrad",
        lambda hp: _adam(hp, grad_averaging=hp["grad_averaging"],
                         weight_decouple=hp["decoupled_weight_decay"]),
        {"learning_rate": 0.02, "beta1": 0.95, "beta2": 0.98, "epsilon": 1e-8},
    ),
    Reference(
        "came", "came-pytorch", "came_pytorch", "CAME",
        lambda hp: {"lr": hp["learning_rate"], "eps": (hp["epsilon1"], hp["epsilon2"]),
                    "clip_threshold": hp["clipping_threshold"], "betas": _betas(hp, 3),
                    "weight_decay": hp["weight_decay"]},
        {"learning_rate": 0.01},
    ),
    Reference(
        "came", PO, POM, "CAME",
        lambda hp: {"lr": hp["learning_rate"], "eps1": hp["epsilon1"], "eps2": hp["epsilon2"],
                    "clip_threshold": hp["clipping_threshold"], "betas": _betas(hp, 3),
                    "weight_decay": hp["weight_decay"]},
        {"learning_rate": 0.01},
    ),
    Reference(
        "mars", PO, POM, "MARS",
        lambda hp: _adam(hp, gamma=hp["gamma"], mars_type=hp["variant"], optimize_1d=True),
        {"learning_rate": 0.05, "epsilon_placement": "outside_uncorrected", "eps_root": 1e-15},
    ),
    Reference("stable_adamw", PO, POM, "StableAdamW", _adam,
              {"learning_rate": 0.05, "weight_decay": 0.0}),
    Reference(
        "prodigy", "prodigyopt", "prodigyopt", "Prodigy",
        lambda hp: {**_adam(hp), **{k: hp[k] for k in (
            "beta3", "decouple", "use_bias_correction", "safeguard_warmup", "d0", "d_coef",
            "growth_rate")}},
        {"learning_rate": 1.0, "d0": 0.001},
    ),
    Reference(
        "dadapt_adam", "dadaptation", "dadaptation", "DAdaptAdam",
        lambda hp: {**_adam(hp), **_dadapt(hp, "decouple", "use_bias_correction")},
        {"learning_rate": 1.0, "d0": 0.001},
    ),
    Reference(
        "dadapt_sgd", "dadaptation", "dadaptation", "DAdaptSGD",
        lambda hp: _dadapt(hp, "momentum", "weight_decay"),
        {"learning_rate": 1.0, "d0": 0.001, "momentum": 0.9},
    ),
    Reference(
        "dadapt_adagrad", "dadaptation", "dadaptation", "DAdaptAdaGrad",
        lambda hp: {**_dadapt(hp, "momentum", "weight_decay"), "eps": hp["epsilon"]},
        {"learning_rate": 1.0, "d0": 0.001},
    ),
    Reference("cautious_adamw", "timm", TIMM + ".adamw", "AdamWLegacy",
              lambda hp: _adam(hp, caution=True), {"learning_rate": 0.05, "weight_decay": 0.0}),
    Reference("cautious_lion", PO, POM, "Lion",
              lambda hp: {**_lion(hp), "weight_decouple": True, "cautious": True},
              {"learning_rate": 0.01, "normalization": "count_plus_one"}),
    Reference("cautious_lion", "timm", TIMM + ".lion", "Lion",
              lambda hp: {**_lion(hp), "caution": True}, {"learning_rate": 0.01}),
    Reference(
        "ranger", PO, POM, "Ranger",
        lambda hp: _adam(hp, alpha=hp["slow_step_size"], k=hp["sync_period"],
                         degenerated_to_sgd=True),
        {"learning_rate": 0.05},
    ),
    # the defaults on both sides (the recorded default case pins them to each other)
    Reference("ranger21", PO, POM, "Ranger21",
              lambda hp: {"lr": hp["learning_rate"], "num_iterations": hp["num_iterations"]},
              {"learning_rate": 0.02, "num_iterations": 1000}),
    # the authors' packages (tests/conformance/record_author_fixtures.py: the mappings)
    Reference(
        "adabelief", "adabelief-pytorch", "adabelief_pytorch", "AdaBelief",
        lambda hp: {"lr": hp["learning_rate"], "print_change_log": False},
        {"learning_rate": 0.02, "epsilon": 1e-16, "eps_root": 1e-16, "rectify": True},
    ),
    Reference(
        "adan", "adan-pytorch", "adan_pytorch", "Adan",
        lambda hp: {"lr": hp["learning_rate"],
                    "betas": tuple(1.0 - b for b in _betas(hp, 3))},
        {"learning_rate": 0.02, "beta1": 0.98, "beta2": 0.92, "beta3": 0.99,
         "skip_first_step": True},
    ),
) + HEAVYBALL  # fmt: skip

#: reference classes named like a mapped rule that compute another update, and why
EXCLUDED_REFERENCES: dict[str, str] = dict(HEAVYBALL_EXCLUDED)

#: rules with a torch-family reference that the bench leaves out, and why
EXCLUDED: dict[str, str] = {
    "sophia": "SophiaH estimates the Hessian from a graph of the loss (create_graph) or "
    "takes one per step; a gradient-only step has neither",
    "adam_mini": "its references partition by parameter names and attention heads of a "
    "model (pytorch_optimizer.AdamMini takes a torch.nn.Module); a flat tensor list has none",
    "shampoo": "a matrix preconditioner: the bench's one-dimensional layouts have no matrices",
    "soap": "a matrix preconditioner: the bench's one-dimensional layouts have no matrices",
    "sam": "needs a closure (two gradients per step)",
    "simplified_ademamix": "pytorch_optimizer.SimplifiedAdEMAMix damps its momentum "
    "(m = beta1 m + (1 - beta1) g) where the paper's rule, and gradstep's, accumulates "
    "m = beta1 m + g: a different update",
    **dict.fromkeys(
        ("lamb", "lars", "adafactor", "muon"),
        "conformance-checked against optax or MXNet only; pytorch_optimizer's class of the "
        "same name is not checked to compute the same update",
    ),
}


def references_for(rule: str) -> list[Reference]:
    return [r for r in REFERENCES if r.rule == rule]


def mapped_rules() -> list[str]:
    """The rules with a reference, in the registry's order."""
    rules = {r.rule for r in REFERENCES}
    return [s.name for s in gradstep.REGISTRY if s.name in rules]


def version(ref: Reference) -> str | None:
    """The installed version of the reference's distribution (None: not installed)."""
    return _dist_version(ref.package)


def _timm_module(path: str) -> types.ModuleType:
    """A module of ``timm/optim`` loaded from its file: ``import timm`` imports the models
    too (and so torchvision); the optimizer files need only torch."""
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        raise ImportError("timm is not installed")
    if "_gradstep_timm_optim" not in sys.modules:
        package = types.ModuleType("_gradstep_timm_optim")
        package.__path__ = [str(Path(spec.origin).parent / "optim")]
        sys.modules["_gradstep_timm_optim"] = package
    return importlib.import_module("_gradstep_timm_optim." + path.rsplit(".", 1)[1])


def load_class(ref: Reference) -> type:
    """The reference class (ImportError when its package is missing or broken)."""
    if ref.module.startswith(TIMM + "."):
        return getattr(_timm_module(ref.module), ref.cls)
    module = importlib.import_module(ref.module)
    if ref.compile_switch is not None:
        _compiled(ref, False)
    return getattr(module, ref.cls)


#: the most tensors a ``compiled`` mode is timed on, and what is recorded past it
COMPILED_MAX_TENSORS = 1
COMPILED_SKIPPED = (
    f"not timed above {COMPILED_MAX_TENSORS} tensor: torch.compile traces the "
    "multi-tensor step over every tensor; heavyball's AdamW compiled for over 8 minutes "
    "at 200 tensors and over 20 at 5000 on a 2-core CPU (38 s at one)"
)

_COMPILE_DEFAULTS: dict[str, Any] = {}  # compile_switch -> the package's own value


def _compiled(ref: Reference, on: bool) -> None:
    """Switch the reference's package's ``torch.compile`` on (its own setting) or off."""
    path, attr = ref.compile_switch.rsplit(".", 1)
    module = importlib.import_module(path)
    _COMPILE_DEFAULTS.setdefault(ref.compile_switch, getattr(module, attr))
    setattr(module, attr, _COMPILE_DEFAULTS[ref.compile_switch] if on else None)


def available(ref: Reference) -> bool:
    if version(ref) is None:
        return False
    try:
        load_class(ref)
    except Exception:  # noqa: BLE001 - any failure to import means "not usable here"
        return False
    return True


def resolved_hyperparams(ref: Reference) -> dict:
    """gradstep's arguments of the comparison, the factory's defaults filled in."""
    return {**gradstep.REGISTRY[ref.rule].defaults, **ref.hyperparams}


def reference_kwargs(ref: Reference) -> dict:
    return ref.kwargs(resolved_hyperparams(ref))


def modes(ref: Reference) -> list[str]:
    """``loop`` and ``foreach`` where the constructor takes ``foreach`` (or the
    reference's ``foreach_arg``), else ``default``."""
    if ref.foreach_arg in inspect.signature(load_class(ref).__init__).parameters:
        return ["loop", "foreach"] + (["compiled"] if ref.compile_switch else [])
    return ["default"]


def make_reference(ref: Reference, tensors: list, mode: str = "default"):
    """The reference optimizer over ``tensors`` (their ``.grad`` set by the caller)."""
    multi = {"loop": False, "foreach": True, "compiled": True}
    flags = {ref.foreach_arg: multi[mode]} if mode in multi else {}
    if ref.storage_arg is not None:
        flags[ref.storage_arg] = str(tensors[0].dtype).removeprefix("torch.")
    opt = load_class(ref)(tensors, **reference_kwargs(ref), **flags)
    if ref.train:
        opt.train()
    return opt


def make_gradstep(ref: Reference, params: list, engine: str = "auto") -> gradstep.Optimizer:
    spec = gradstep.REGISTRY[ref.rule]
    return gradstep.Optimizer(params, spec.factory(**ref.hyperparams), engine=engine)


def time_case(ref: Reference, layout: tuple[int, int], repeats: int) -> dict[str, Any]:
    """Median step times of gradstep, then of each mode of the reference, as the torch.optim
    steps of the main table are timed (float32, separate copies of the same data)."""
    import torch

    from .bench_numpy import make_data

    params, grads = make_data(*layout)
    opt = make_gradstep(ref, params)
    gs = median_time(lambda k: opt.step(grads), repeats)
    ref_times: dict[str, float] = {}
    errors: dict[str, str] = {}
    for mode in modes(ref):
        if mode == "compiled" and layout[0] > COMPILED_MAX_TENSORS:
            errors[mode] = COMPILED_SKIPPED
            continue
        p, g = make_data(*layout)
        tensors = [torch.from_numpy(x) for x in p]
        grads_t = [torch.from_numpy(x) for x in g]
        for t, x in zip(tensors, grads_t):
            t.grad = x
        with torch.no_grad():
            try:
                ref_opt = make_reference(ref, tensors, mode)
                step = _stepper(ref_opt, tensors, grads_t if ref.clears_grads else None)
                if ref.compile_switch is not None:
                    _compiled(ref, mode == "compiled")
                step(0)
                ref_times[mode] = median_time(step, repeats)
            except Exception as e:  # noqa: BLE001 - a mode this class cannot run on CPU
                errors[mode] = f"{type(e).__name__}: {e}"[:200]
            finally:
                if ref.compile_switch is not None:
                    _compiled(ref, False)
        del tensors, grads_t
    best = min(ref_times, key=ref_times.get) if ref_times else None
    return {
        "optimizer": ref.rule,
        "layout": f"{layout[0]}x{layout[1]}",
        "reference": ref.name,
        "reference_package": ref.package,
        "reference_version": version(ref),
        "gradstep_hyperparams": dict(ref.hyperparams),
        "reference_kwargs": {
            k: list(v) if isinstance(v, tuple) else v for k, v in reference_kwargs(ref).items()
        },
        "gradstep_engine": opt.engine,
        "gradstep_s": gs,
        "reference_modes_s": ref_times,
        "reference_mode_errors": errors,
        "reference_mode": best,
        "reference_s": ref_times.get(best) if best else None,
        "vs_reference": gs / ref_times[best] if best and ref_times[best] else None,
    }


def _stepper(opt, tensors: list, grads: list | None) -> Callable[[int], None]:
    """One timed step of ``opt``; with ``grads``, handed to the tensors again first (a
    reference that drops them in ``step()``; the assignments are timed with it)."""
    if grads is None:
        return lambda k: opt.step()

    def step(k: int) -> None:
        for t, x in zip(tensors, grads):
            t.grad = x
        opt.step()

    return step


def format_reference_table(rows: list[dict]) -> str:
    head = (
        "optimizer",
        "layout",
        "reference",
        "engine",
        "gradstep ms",
        "reference ms",
        "reference mode",
        "vs reference",
    )
    cells = [
        [
            r["optimizer"],
            r["layout"],
            f"{r['reference']} {r['reference_version']}",
            r["gradstep_engine"],
            ms(r["gradstep_s"]),
            ms(r["reference_s"]),
            r["reference_mode"] or "n/a",
            ratio(r["gradstep_s"], r["reference_s"]),
        ]
        for r in rows
    ]
    return markdown_table(head, cells)


def select(names: list[str] | None) -> tuple[list[Reference], list[str], list[str]]:
    """The installed references of ``names`` (None: every mapped rule), the references
    not installed (``package (module.Class)``) and the rules without a reference."""
    rules = mapped_rules() if names is None else names
    chosen, missing, unmapped = [], [], []
    for rule in rules:
        refs = references_for(rule)
        if not refs:
            unmapped.append(rule)
        for ref in refs:
            (chosen if available(ref) else missing).append(ref)
    return chosen, [f"{r.rule}: {r.package} ({r.name})" for r in missing], unmapped


def run_references(
    names: list[str] | None, layouts: list[tuple[int, int]], repeats: int
) -> dict[str, Any]:
    """Time every installed reference of ``names`` on ``layouts``; print the table;
    return the JSON part of the report."""
    refs, missing, unmapped = select(names)
    print(f"\nreferences: {len(refs)} installed", flush=True)
    for line in missing:
        print(f"  not installed: {line}")
    rows = []
    for ref in refs:
        for layout in layouts:
            rows.append(time_case(ref, layout, repeats))
            print(format_reference_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(format_reference_table(rows))
    packages = sorted({r.package for r in REFERENCES})
    versions = {p: v for p in packages if (v := _dist_version(p))}
    return {
        "versions": versions,
        "not_installed": missing,
        "without_reference": unmapped,
        "excluded": EXCLUDED,
        "excluded_references": EXCLUDED_REFERENCES,
        "results": rows,
    }


def _dist_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
