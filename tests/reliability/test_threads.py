"""Two threads stepping their own optimizers are safe on every numba threading layer,
including ``workqueue``, which aborts the process on concurrent parallel launches."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import threading
    import numpy as np
    import gradstep

    def train(seed, out):
        rng = np.random.default_rng(seed)
        params = [rng.normal(size=300000), rng.normal(size=7)]
        opt = gradstep.Optimizer(params, gradstep.adam(1e-3), engine="fused")
        for k in range(60):
            opt.step([np.cos(p + k) for p in params])
        out[seed] = [p.copy() for p in params]

    results = {}
    threads = [threading.Thread(target=train, args=(s, results)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alone = {}
    train(1, alone)
    assert all(np.array_equal(a, b) for a, b in zip(results[1], alone[1]))
    import numba
    print("ok", numba.threading_layer())
    """
)


@pytest.mark.parametrize("layer", ["workqueue", "default"])
def test_two_threads_stepping_their_own_optimizers(layer, tmp_path):
    # a pool of several threads, whatever share of the cores this test worker has
    env = {**os.environ, "GRADSTEP_CACHE_DIR": str(tmp_path), "NUMBA_NUM_THREADS": "2"}
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("ok")
    if layer != "default":
        assert run.stdout.split()[1] == layer
