"""One rank of the distributed tests (run by test_torch_distributed.py, two processes,
gloo on localhost): trains the same small model under DDP, under
ZeroRedundancyOptimizer and under FSDP2's fully_shard with gradstep.torch optimizers,
and, for masked reductions, parameters of mixed placements (sharded and replicated
in one group); saves the final parameters.

Usage: python dist_worker.py RANK WORLD_SIZE PORT OUTPUT
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

import gradstep
import gradstep.torch as gt
from gradstep import transforms as T

STEPS = 5
BATCH = 16


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 10),
        torch.nn.Tanh(),
        torch.nn.Linear(10, 7),
        torch.nn.Tanh(),
        torch.nn.Linear(7, 3),
    ).double()


def batches():
    g = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(BATCH, 6, generator=g, dtype=torch.float64),
            torch.randn(BATCH, 3, generator=g, dtype=torch.float64),
        )
        for _ in range(STEPS)
    ]


#: ZeroRedundancyOptimizer's optimizer_class and arguments, by name
ZERO = {"adam_plain": (gt.Adam, {"lr": 0.05}), "adamw": (gt.AdamW, {"lr": 0.05, "amsgrad": True})}

#: name -> optimizer factory over parameters (the same in every setting)
OPTIMIZERS = {
    **{name: (lambda ps, c=cls, kw=kwargs: c(ps, **kw)) for name, (cls, kwargs) in ZERO.items()},
    "adam": lambda ps: gt.Adam(ps, lr=0.05, weight_decay=0.01),
    "sgd_nesterov": lambda ps: gt.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "clip_global_adam": lambda ps: gt.TransformOptimizer(
        ps, gradstep.chain(T.clip_by_global_norm(0.05), gradstep.adam(0.05))
    ),
    "clip_per_tensor_rmsprop": lambda ps: gt.TransformOptimizer(
        ps, gradstep.chain(T.clip_by_norm(0.02), gradstep.rmsprop(0.01))
    ),
    "lamb": lambda ps: gt.optimizer_class("lamb")(ps, **gradstep.REGISTRY["lamb"].test_hyperparams),
    # needs whole tensors: runs on all-gathered tensors under FSDP2
    "adafactor": lambda ps: gt.TransformOptimizer(ps, gradstep.adafactor(0.05)),
}


def matrices(params) -> list[bool]:
    """The mask of the mixed-placement runs: the 2-D parameters (one sharded, one
    replicated), so a masked stage sees neither the first parameter nor all of them."""
    return [p.ndim == 2 for p in params]


#: a replicated vector, a sharded matrix, a replicated matrix (see ``main``)
MIXED_SHAPES = ((5,), (6, 3), (2, 2))

#: name -> optimizer factory whose masked stage reduces a part of a group of mixed
#: placements; the global clipping first couples the tensors, so the front steps the
#: whole group at once rather than one shape at a time
MIXED = {
    "masked_lamb": lambda ps: gt.TransformOptimizer(
        ps,
        gradstep.chain(T.clip_by_global_norm(1.0), gradstep.masked(gradstep.lamb(0.05), matrices)),
    ),
    "masked_clip_sgd": lambda ps: gt.TransformOptimizer(
        ps,
        gradstep.chain(
            T.clip_by_global_norm(1.0),
            gradstep.masked(T.clip_by_norm(0.02), matrices),
            gradstep.sgd(0.1),
        ),
    ),
}


def train(model, opt, part: slice, forward=None):
    for x, y in batches():
        opt.zero_grad()
        out = (forward or model)(x[part])
        torch.nn.functional.mse_loss(out, y[part]).backward()
        opt.step()


def single(name: str) -> list[torch.Tensor]:
    model = make_model()
    train(model, OPTIMIZERS[name](model.parameters()), slice(None))
    return [p.detach().clone() for p in model.parameters()]


def full(p):
    return p.full_tensor() if hasattr(p, "full_tensor") else p


def mixed_values() -> list[torch.Tensor]:
    torch.manual_seed(2)
    return [torch.randn(shape, dtype=torch.float64) for shape in MIXED_SHAPES]


def train_mixed(params, opt, distribute=lambda g, p: g) -> list[torch.Tensor]:
    """Steps with gradients that are a function of the parameters (so a wrong step
    changes the later ones); returns the final parameters, whole."""
    for step in range(STEPS):
        for i, p in enumerate(params):
            p.grad = distribute(torch.sin(full(p.detach()) * (step + 1) + i), p)
        opt.step()
    return [full(p.detach()).clone() for p in params]


def single_mixed(name: str) -> list[torch.Tensor]:
    params = [torch.nn.Parameter(x) for x in mixed_values()]
    return train_mixed(params, MIXED[name](params))


def main() -> None:
    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    results: dict[str, list[torch.Tensor]] = {}

    for name in ("adam", "sgd_nesterov", "clip_global_adam"):
        model = make_model()
        ddp = DistributedDataParallel(model)
        train(model, OPTIMIZERS[name](ddp.parameters()), part, ddp)
        results[f"ddp/{name}"] = [p.detach().clone() for p in model.parameters()]

    for name, (cls, kwargs) in ZERO.items():
        model = make_model()
        ddp = DistributedDataParallel(model)
        opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=cls, **kwargs)
        train(model, opt, part, ddp)
        results[f"zero/{name}"] = [p.detach().clone() for p in model.parameters()]

    mesh = init_device_mesh("cpu", (world,))
    for name in [n for n in OPTIMIZERS if n not in ZERO]:
        model = make_model()
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        opt = OPTIMIZERS[name](model.parameters())
        train(model, opt, part)
        results[f"fsdp/{name}"] = [full(p.detach()).clone() for p in model.parameters()]

    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    def distribute(g, p):
        return distribute_tensor(g, p.device_mesh, p.placements)

    placements = ([Replicate()], [Shard(0)], [Replicate()])
    for name, make in MIXED.items():
        params = [
            torch.nn.Parameter(distribute_tensor(x, mesh, placement))
            for x, placement in zip(mixed_values(), placements)
        ]
        results[f"mixed/{name}"] = train_mixed(params, make(params), distribute)

    if rank == 0:
        torch.save(results, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
