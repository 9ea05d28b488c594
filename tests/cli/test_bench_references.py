"""``gradstep bench --references``: each mapped reference computes gradstep's update, and
the table runs (skipped where no reference package is installed)."""

import functools
import inspect
import json

import numpy as np
import pytest

from gradstep.cli import bench_references as br
from gradstep.cli import main


@functools.cache
def installed() -> tuple:
    """The references importable here: found when a test first asks, not while the
    tests are collected (importing heavyball imports Triton, which must not happen
    before tests/gpu_engine's conftest has switched Triton to its interpreter)."""
    return tuple(r for r in br.REFERENCES if br.available(r))


#: (reference, mode) -> the relative difference its arithmetic allows, and why
LOOSER = {
    # its foreach path keeps the per-tensor step sizes in a float32 tensor
    ("pytorch_optimizer.LaProp", "foreach"): 1e-7,
    # its averaging weight c = lr^2 t^r / sum(...) is a float32 tensor (the step count is
    # an integer tensor, and an integer tensor to a float power is float32)
    **{("heavyball.SFAdamW", mode): 2e-6 for mode in ("loop", "foreach")},
}


def _trajectories(ref: br.Reference, mode: str, steps: int = 3):
    """gradstep's and the reference's parameters after each step, in float64, from the
    same start and gradients (two tensors of 300 elements)."""
    import torch

    rng = np.random.default_rng(0)
    w0 = [rng.standard_normal(300) for _ in range(2)]
    grads = [[0.1 * rng.standard_normal(300) for _ in range(2)] for _ in range(steps)]
    opt = br.make_gradstep(ref, [w.copy() for w in w0])
    tensors = [torch.tensor(w) for w in w0]
    ref_opt = br.make_reference(ref, tensors, mode)
    ours, theirs = [], []
    for g in grads:
        opt.step([x.copy() for x in g])
        for t, x in zip(tensors, g):
            t.grad = torch.tensor(x)
        with torch.no_grad():
            ref_opt.step()
        ours.append([np.array(p) for p in opt.params])
        theirs.append([t.numpy().copy() for t in tensors])
    return w0, ours, theirs


@pytest.mark.parametrize("ref", br.REFERENCES, ids=lambda r: f"{r.rule}-{r.name}")
def test_reference_computes_gradsteps_update(ref):
    if ref not in installed():
        pytest.skip(reason=f"{ref.package} is not installed")
    # heavyball's "compiled" mode is its foreach mode under torch.compile, minutes of
    # compiling on CPU: the uncompiled modes are checked
    for mode in [m for m in br.modes(ref) if m != "compiled"]:
        w0, ours, theirs = _trajectories(ref, mode)
        moved = max(np.max(np.abs(t - w)) for t, w in zip(theirs[-1], w0))
        assert moved > 1e-6, f"{ref.name} ({mode}) did not move: the check would be empty"
        # relative to the distance moved, plus the rounding of parameters near 1
        rounding = 8 * np.finfo(np.float64).eps * max(np.max(np.abs(w)) for w in w0)
        tol = LOOSER.get((ref.name, mode), 1e-12) * moved + rounding
        for k, (a, b) in enumerate(zip(ours, theirs)):
            for x, y in zip(a, b):
                np.testing.assert_allclose(
                    x, y, rtol=0, atol=tol, err_msg=f"{ref.name} ({mode}), step {k + 1}"
                )


def test_every_reference_names_a_rule_and_its_arguments():
    import gradstep

    for ref in br.REFERENCES:
        spec = gradstep.REGISTRY[ref.rule]
        unknown = set(ref.hyperparams) - set(inspect.signature(spec.factory).parameters)
        assert not unknown, f"{ref.rule}: unknown arguments {unknown}"
        assert isinstance(br.reference_kwargs(ref), dict)
    assert not set(br.EXCLUDED) & set(br.mapped_rules())


def test_missing_references_are_listed_not_raised(monkeypatch):
    fake = br.Reference("adabelief", "no-such-package-gs", "no_such_module_gs", "X", dict)
    monkeypatch.setattr(br, "REFERENCES", (fake,))
    chosen, missing, unmapped = br.select(["adabelief", "adam"])
    assert chosen == []
    assert missing == ["adabelief: no-such-package-gs (no_such_module_gs.X)"]
    assert unmapped == ["adam"]


def test_references_need_the_default_backend(capsys):
    assert main(["bench", "--backend", "torch", "--references"]) == 2
    assert "--references" in capsys.readouterr().err


def test_bench_times_the_references(tmp_path, capsys):
    if not installed():
        pytest.skip(reason="no torch-family reference installed (pip install .[bench-references])")
    # rules whose references all run uncompiled (a compiled mode compiles for minutes)
    compiled = {r.rule for r in br.REFERENCES if r.compile_switch}
    rules = sorted({r.rule for r in installed()} - compiled)[:2]
    out = tmp_path / "bench.json"
    names = ",".join(rules + ["sgd"])
    args = ["bench", "--references", "--optimizers", names, "--layouts", "2x1000"]
    code = main(args + ["--repeats", "1", "--no-torch", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())["references"]
    rows = report["results"]
    expected = [r for r in installed() if r.rule in rules]
    assert [(r["optimizer"], r["reference"]) for r in rows] == [
        (r.rule, r.name) for r in sorted(expected, key=lambda r: rules.index(r.rule))
    ]
    for row in rows:
        assert row["layout"] == "2x1000"
        assert row["gradstep_s"] > 0 and row["reference_s"] > 0
        assert row["vs_reference"] == pytest.approx(row["gradstep_s"] / row["reference_s"])
        assert row["reference_version"] == report["versions"][row["reference_package"]]
    assert report["without_reference"] == ["sgd"]
    assert "| vs reference |" in capsys.readouterr().out
