"""Record 8-bit Adam trajectories of bitsandbytes and torchao, for 8-bit blockwise
state (``state_dtype="blockwise8"``, :mod:`gradstep._core.blockwise8`).

Run from the repository root (needs torch, bitsandbytes and torchao; the replay,
``tests/core/test_state_8bit.py``, needs only NumPy)::

    python tests/conformance/record_blockwise8_fixtures.py

The problem: float32 parameters (one tensor of 1000 elements, four blocks, the last
one short; 4096 elements for torchao, which quantises only tensors of at least 4096
elements and whole blocks), the gradient
``g = h * (w - t)`` of a diagonal quadratic with curvatures ``h`` spread over two
decades and each element 0.5 to 1.5 from its target, computed in float32 (one
correctly rounded product and difference, the same in torch and NumPy, so the
replay recomputes it from its own parameters). Both
libraries run on the CPU with blocks of 256 elements, the signed dynamic map for the
first moment and the unsigned one for the second. Recorded: the start, the
parameters after steps 1, 10 and 20, and the final 8-bit states dequantised; arrays
as base64 of little-endian float32 bytes (a fixture of 4096-element arrays as JSON
lists would be ten times larger).

Tolerances (stated in each case of the fixture, with the reason; TOLERANCES below):
- bitsandbytes 0.50.2 (``Adam8bit``/``AdamW8bit``/``Lion8bit``: blockwise, no
  percentile clipping, ``min_8bit_size=0``): the same map and block scales, but its
  CPU quantiser does not always pick the nearest code for small normalised values,
  and it orders the Adam arithmetic differently; step 1 agrees to float32 rounding
  (the state starts at zero, which 8 bits hold exactly), later Adam steps differ by
  a fifth of the distance travelled, as much as float32 Adam differs from it, while
  the 8-bit moments agree ten times better than float32 ones: the replay pins the
  scheme (map, blocks, update from unquantised values), not bitsandbytes' rounding.
  Lion's parameters agree exactly (its signs do).
- torchao 0.18 (``AdamW8bit``, ``block_size=256``): the same map, scales and
  quantiser (bit for bit away from the zero code, tested separately); its moments
  are updated with ``lerp`` rather than ``b * m + (1 - b) * g``, so a value within a
  rounding of the boundary between two codes may take the other code.
"""

from __future__ import annotations

import base64
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent / "fixtures" / "precision"
STEPS = 20
RECORDED = (1, 10, 20)
ADAM = {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
ADAMW = {**ADAM, "weight_decay": 0.1}
LION = {"lr": 0.01, "betas": (0.9, 0.99), "weight_decay": 0.0}

# the replay's tolerances, measured (see the module docstring): parameters within
# ``params_travel_fraction`` of the largest distance any element travelled from its
# start; each 8-bit state within ``moment_fraction`` of its largest magnitude
_BNB = (
    "bitsandbytes' CPU quantiser rounds small normalised values to a code that is not "
    "the nearest one, so its moments carry more quantisation error"
)
TOLERANCES = {
    # parameters measured 0.20 (gradstep's float32 Adam: 0.19); moments 0.0068 (float32
    # Adam's: 0.051, so the 8-bit scheme is what matches)
    "bnb_adam8bit": {"params_travel_fraction": 0.3, "moment_fraction": 0.02, "reason": _BNB},
    # measured 0.18 and 0.011 (float32 AdamW: 0.19 and 0.051)
    "bnb_adamw8bit": {"params_travel_fraction": 0.3, "moment_fraction": 0.02, "reason": _BNB},
    # measured: equal parameters (the signs agree), moment 0.0016 (float32 Lion: 0.068)
    "bnb_lion8bit": {"params_travel_fraction": 1e-6, "moment_fraction": 0.005, "reason": _BNB},
    # measured 9e-4 and 1.1e-6
    "torchao_adamw8bit": {
        "params_travel_fraction": 2e-3,
        "moment_fraction": 1e-5,
        "reason": "torchao updates the moments with lerp; a value within a rounding of the "
        "boundary between two codes may take the other code",
    },
}

# (case id, library, optimizer class, its arguments, registry rule, elements)
CASES = [
    ("bnb_adam8bit", "bitsandbytes", "Adam8bit", ADAM, "adam", 1000),
    ("bnb_adamw8bit", "bitsandbytes", "AdamW8bit", ADAMW, "adamw", 1000),
    ("bnb_lion8bit", "bitsandbytes", "Lion8bit", LION, "lion", 1000),
    ("torchao_adamw8bit", "torchao", "AdamW8bit", ADAMW, "adamw", 4096),
]

# the registry rule's arguments for a reference's, and the reference's 8-bit states
# as the rule's slots: (slot, bitsandbytes' state index, torchao's key, signed)
RULE_ARGS = {
    "adam": lambda h: dict(
        learning_rate=h["lr"], beta1=h["betas"][0], beta2=h["betas"][1], epsilon=h["eps"]
    ),
    "adamw": lambda h: dict(RULE_ARGS["adam"](h), weight_decay=h["weight_decay"]),
    "lion": lambda h: dict(
        learning_rate=h["lr"], beta1=h["betas"][0], beta2=h["betas"][1], weight_decay=0.0
    ),
}
SLOTS = {
    "adam": [("mu", 1, "exp_avg", True), ("nu", 2, "exp_avg_sq", False)],
    "adamw": [("mu", 1, "exp_avg", True), ("nu", 2, "exp_avg_sq", False)],
    "lion": [("mu", 1, None, True)],
}


def encode(a: np.ndarray) -> str:
    return base64.b64encode(np.asarray(a, "<f4").tobytes()).decode("ascii")


def decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<f4").copy()


def problem(seed: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, target and curvatures (float32)."""
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(size).astype(np.float32)
    # every element 0.5 to 1.5 from its target: the gradients of a block stay within
    # a factor 300 of each other, so no second moment is near the zero code (where
    # the libraries' quantisers part ways, see gradstep._core.blockwise8)
    offset = rng.uniform(0.5, 1.5, size) * rng.choice([-1.0, 1.0], size)
    target = (w0 + offset).astype(np.float32)
    curvature = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size)).astype(np.float32)
    return w0, target, curvature


def gradient(w: np.ndarray, target: np.ndarray, curvature: np.ndarray) -> np.ndarray:
    return curvature * (w - target)  # float32: the same rounding in torch and NumPy


def _optimizer(library: str, name: str, params: list, hyper: dict):
    if library == "bitsandbytes":
        import bitsandbytes as bnb

        cls = getattr(bnb.optim, name)
        return cls(params, **hyper, min_8bit_size=0)  # blockwise: always, in 0.50
    import torchao.optim

    return getattr(torchao.optim, name)(params, **hyper, block_size=256)


def _dequantised(library: str, state: dict, rule: str) -> dict[str, np.ndarray]:
    """The reference's 8-bit states, dequantised, by the rule's slot names."""
    out = {}
    for slot, index, key, _ in SLOTS[rule]:
        if library == "bitsandbytes":
            import bitsandbytes.functional as F

            # absmax * qmap[code], block by block (bitsandbytes' own dequantiser)
            codes, absmax = state[f"state{index}"], state[f"absmax{index}"]
            values = F.dequantize_blockwise(
                codes, absmax=absmax, code=state[f"qmap{index}"], blocksize=256
            )
        else:
            values = state[key].dequantize()
        out[slot] = values.float().numpy().ravel()
    return out


def run(library: str, name: str, hyper: dict, rule: str, seed: int, size: int) -> dict:
    import torch

    w0, target, curvature = problem(seed, size)
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = _optimizer(library, name, [p], hyper)
    out = {"params": {}}
    for k in range(1, STEPS + 1):
        w = p.detach().numpy().copy()
        p.grad = torch.from_numpy(gradient(w, target, curvature))
        opt.step()
        if k in RECORDED:
            out["params"][str(k)] = encode(p.detach().numpy())
    states = _dequantised(library, opt.state[p], rule)
    out["slots"] = {slot: encode(values) for slot, values in states.items()}
    return out


def main() -> None:
    import bitsandbytes
    import torch
    import torchao

    HERE.mkdir(parents=True, exist_ok=True)
    cases = []
    for seed, (case_id, library, name, hyper, rule, size) in enumerate(CASES):
        data = run(library, name, hyper, rule, seed, size)
        cases.append(
            {
                "id": f"blockwise8-{case_id}",
                "reference": f"{library}.optim.{name}",
                "seed": seed,
                "size": size,
                "rule": rule,
                "hyperparams": hyper,
                **data,
                **TOLERANCES[case_id],
            }
        )
    (HERE / "blockwise8.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"blockwise8: {len(cases)} trajectories")
    manifest = {
        "generator": "tests/conformance/record_blockwise8_fixtures.py",
        "steps": STEPS,
        "recorded_steps": list(RECORDED),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "bitsandbytes": bitsandbytes.__version__,
            "torchao": torchao.__version__,
        },
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join([Path(sys.executable).name] + sys.argv[:1]),
    }
    (HERE / "MANIFEST-blockwise8.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
