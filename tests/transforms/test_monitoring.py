"""monitor / measure_with_ema / snapshot against optax 0.2.8 under jax.jit, the
built-in measures on NumPy and torch, and the monitor's tree protocol."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep import transforms as T
from gradstep._core.transform import map_transform, walk

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="optax is the reference")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402

PARAMS = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([[0.5, -0.5]])}
GRADS = [
    {"a": np.array([0.1, -0.2, 0.3]) * (k + 1), "b": np.array([[k - 1.0, 1.0]])} for k in range(4)
]


def tree_norm(u):
    return jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(u)))


def run(lib) -> list:
    opt = lib.chain(
        lib.sgd(0.1, 0.9),
        lib.monitor(
            {
                "norm": tree_norm,
                "clipped_ema": lib.measure_with_ema(lambda u: tree_norm(u) > 0.1, decay=0.9),
                "raw_ema": lib.measure_with_ema(tree_norm, decay=0.5, debias=False),
            }
        ),
        lib.snapshot("after", lambda u: jax.tree_util.tree_map(jnp.abs, u)),
        lib.clip_by_global_norm(0.1),
    )
    out = []
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
        state = opt.init(params)
        step = jax.jit(opt.update)
        for g in GRADS:
            u, state = step(jax.tree_util.tree_map(jnp.asarray, g), state, params)
            params = optax.apply_updates(params, u)
            got = {k: np.asarray(optax.tree.get(state, k)) for k in ("norm", "raw_ema")}
            got["clipped_ema"] = np.asarray(optax.tree.get(state, "clipped_ema"))
            got["after"] = jax.tree_util.tree_map(np.asarray, optax.tree.get(state, "after"))
            got["params"] = jax.tree_util.tree_map(np.asarray, params)
            out.append(got)
    return out


def test_compat_monitor_matches_optax_under_jit():
    want, got = run(optax), run(cx)
    for k, (a, b) in enumerate(zip(got, want)):
        for key in ("norm", "raw_ema", "clipped_ema"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-12, err_msg=f"{key}, step {k}")
        for key in ("after", "params"):
            for x, y in zip(jax.tree_util.tree_leaves(a[key]), jax.tree_util.tree_leaves(b[key])):
                np.testing.assert_allclose(x, y, rtol=1e-12, err_msg=f"{key}, step {k}")
    assert 0 < want[-1]["clipped_ema"] < 1


def test_builtin_measures_on_the_numpy_front():
    params = {k: v.copy() for k, v in PARAMS.items()}
    t = T.chain(
        gradstep.sgd(0.1),
        T.monitor(
            {
                "update_norm": "update_norm",
                "update_rms": "update_rms",
                "update_max": "update_max",
                "param_norm": "param_norm",
                "ratio": "update_param_ratio",
                "smoothed": T.measure_with_ema("update_max", 0.5),
            }
        ),
    )
    opt = gradstep.Optimizer(params, t)
    maxima = []
    for g in GRADS:
        before = {k: v.copy() for k, v in params.items()}
        opt.step(g)
        u = np.concatenate([(params[k] - before[k]).ravel() for k in params])
        w = np.concatenate([before[k].ravel() for k in params])
        m = opt.state["monitor"]["measurements"]
        np.testing.assert_allclose(float(m["update_norm"]), np.linalg.norm(u), rtol=1e-12)
        np.testing.assert_allclose(float(m["update_rms"]), np.sqrt(np.mean(u * u)), rtol=1e-12)
        np.testing.assert_allclose(float(m["update_max"]), np.max(np.abs(u)), rtol=1e-12)
        np.testing.assert_allclose(float(m["param_norm"]), np.linalg.norm(w), rtol=1e-12)
        np.testing.assert_allclose(
            float(m["ratio"]), np.linalg.norm(u) / np.linalg.norm(w), rtol=1e-12
        )
        maxima.append(np.max(np.abs(u)))
    weights = 0.5 ** np.arange(len(maxima))[::-1]
    np.testing.assert_allclose(
        float(opt.state["monitor"]["measurements"]["smoothed"]),
        np.sum(weights * maxima) * 0.5 / (1 - 0.5 ** len(maxima)),
        rtol=1e-12,
    )


def test_builtin_measures_on_torch_tensors():
    torch = pytest.importorskip("torch", reason="torch is a test dependency")
    import gradstep.torch  # noqa: F401  (registers torch's namespace)

    t = T.monitor({"n": "update_norm", "r": "update_param_ratio", "m": "update_max"})
    as_torch = lambda d: {k: torch.tensor(v) for k, v in d.items()}  # noqa: E731
    state = t.init(as_torch(PARAMS))
    _, state = t.update(as_torch(GRADS[1]), state, as_torch(PARAMS))
    _, want = t.update(GRADS[1], t.init(PARAMS), PARAMS)
    for k in ("n", "r", "m"):
        np.testing.assert_allclose(float(state["measurements"][k]), float(want["measurements"][k]))


@pytest.mark.parametrize("engine", ["eager", "auto"])
def test_torch_front_measures_the_whole_param_group(engine):
    """On gradstep.torch, a group's step is one update of the transform over all its
    parameters: every parameter's state holds the group's measurement, the NumPy
    front's over the same tree (not a per-tensor value)."""
    torch = pytest.importorskip("torch", reason="torch is a test dependency")
    import gradstep.torch as gt

    def make():
        return gradstep.chain(
            gradstep.momentum(0.1, 0.9),
            T.monitor({"n": "update_norm", "r": "update_param_ratio", "m": "update_max"}),
        )

    names = sorted(PARAMS)
    params = [torch.nn.Parameter(torch.tensor(PARAMS[k])) for k in names]
    opt = gt.TransformOptimizer(params, make(), engine=engine)
    ws = [PARAMS[k].copy() for k in names]
    ref = gradstep.Optimizer(ws, make(), engine="eager")
    for g in GRADS:
        for p, k in zip(params, names):
            p.grad = torch.tensor(g[k])
        opt.step()
        ref.step([g[k] for k in names])
        want = ref.state["monitor"]["measurements"]
        for p in params:
            for key in ("n", "r", "m"):
                np.testing.assert_allclose(float(opt.state[p][key]), float(want[key]), rtol=1e-12)


def test_init_on_zero_parameters_warns_of_nothing():
    """init evaluates each measure only for its structure: zero parameters (zero-
    initialised biases; the torch front's probe of a transform's state) give no
    0/0 warning, which under ``-W error`` the torch front would report as a refusal."""
    import warnings

    t = gradstep.chain(gradstep.sgd(0.1), T.monitor({"r": "update_param_ratio"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = t.init([np.zeros(3)])
    assert float(state["monitor"]["measurements"]["r"]) == 0.0


def test_monitor_children_follow_the_tree_protocol():
    ema = T.measure_with_ema("update_norm", 0.9)
    t = T.chain(gradstep.sgd(0.1), T.monitor({"n": "update_norm", "e": ema}))
    visits = [v for v in walk(t) if v.transform is ema]
    assert len(visits) == 1 and visits[0].path == ("monitor", "e.state")
    state = t.init(PARAMS)
    assert visits[0].state(state) is state["monitor"]["e.state"]
    faster = map_transform(lambda x: T.measure_with_ema("update_norm", 0.0) if x is ema else x, t)
    _, new = faster.update(GRADS[0], faster.init(PARAMS), PARAMS)
    norm = np.sqrt(sum(np.sum((0.1 * g) ** 2) for g in GRADS[0].values()))
    np.testing.assert_allclose(float(new["monitor"]["measurements"]["e"]), norm, rtol=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: T.monitor({}), "measures"),
        (lambda: T.monitor({"measurements": "update_norm"}), "measurements"),
        (lambda: T.monitor({"x": "grad_norm"}), "x"),
        (lambda: T.measure_with_ema("update_norm", 1.0), "decay"),
        (lambda: T.monitor({"p": "param_norm"}).update(PARAMS, {"measurements": {}}), "params"),
        (lambda: cx.measure_with_ema(tree_norm, 0.9, accumulator_dtype=jnp.float32), "dtype"),
    ],
)
def test_invalid_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
