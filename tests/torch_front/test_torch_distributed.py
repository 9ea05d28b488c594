"""gradstep.torch under torch.distributed: two processes (gloo, localhost) train a
small model under DDP, ZeroRedundancyOptimizer and FSDP2 (fully_shard, DTensor
parameters) and end with the parameters of the same training in one process. Norms
(global clipping, per-tensor clipping, LAMB's trust ratios) are reduced across ranks
under FSDP2, so sharding does not change them, also where a masked stage reduces a
part of a group whose parameters are sharded and replicated."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

WORKER = Path(__file__).with_name("dist_worker.py")
WORLD = 2
TIMEOUT = 150  # seconds for both processes, start-up included


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_worker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dist_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip(reason="torch.distributed with gloo is not available in this torch build")
    # the one-process runs first: they also compile the kernels the ranks then load
    worker = load_worker()
    expected = {name: worker.single(name) for name in worker.OPTIMIZERS}
    expected.update({name: worker.single_mixed(name) for name in worker.MIXED})
    out = tmp_path_factory.mktemp("dist") / "results.pt"
    port = str(free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(rank), str(WORLD), port, str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(WORLD)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    codes = [p.returncode for p in procs]
    assert codes == [0] * WORLD, "\n".join(
        f"rank {rank} (exit code {code}):\n{log[-3000:]}"
        for rank, (code, log) in enumerate(zip(codes, logs))
    )
    return torch.load(out, weights_only=False), expected


def test_distributed_runs_equal_one_process(distributed_results):
    results, expected = distributed_results
    settings = {key.split("/")[0] for key in results}
    assert settings == {"ddp", "zero", "fsdp", "mixed"}
    assert len(results) == 3 + 2 + 6 + 2
    for key, params in results.items():
        name = key.split("/")[1]
        assert len(params) == len(expected[name])
        for p, q in zip(params, expected[name]):
            torch.testing.assert_close(
                p, q, rtol=1e-9, atol=1e-11, msg=lambda m, k=key: f"{k}: {m}"
            )
