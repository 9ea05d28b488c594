"""Train a small least-squares model with a few gradstep optimizers and print the
loss falling.

    python -m gradstep.examples.quadratic [--steps 200] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np

import gradstep


def make_problem(seed: int, n: int = 256, d: int = 20):
    """Linear regression ``y = X w* + noise``: loss and gradient in NumPy."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * np.linspace(0.2, 3.0, d)  # ill-conditioned features
    w_true = rng.normal(size=d)
    y = x @ w_true + 0.1 * rng.normal(size=n)

    def loss_and_grad(params):
        residual = x @ params["w"] + params["b"] - y
        loss = 0.5 * float(np.mean(residual**2))
        grads = {"w": x.T @ residual / n, "b": np.asarray(residual.mean())}
        return loss, grads

    return loss_and_grad


def train(transform, loss_and_grad, steps: int) -> list[float]:
    params = {"w": np.zeros(20), "b": np.zeros(())}
    opt = gradstep.Optimizer(params, transform)
    losses = []
    for _ in range(steps):
        loss, grads = loss_and_grad(params)
        losses.append(loss)
        opt.step(grads)
    losses.append(loss_and_grad(params)[0])
    return losses


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    loss_and_grad = make_problem(args.seed)
    contenders = {
        "sgd(0.05)": gradstep.sgd(0.05),
        "momentum(0.02, 0.9)": gradstep.momentum(0.02, 0.9),
        "adam(0.05)": gradstep.adam(0.05),
        "rmsprop(0.01)": gradstep.rmsprop(0.01),
        "adagrad(0.5)": gradstep.adagrad(0.5),
        "adadelta()": gradstep.adadelta(),
    }
    marks = sorted({0, 1, 10, args.steps // 4, args.steps // 2, args.steps})
    print(f"{'loss after step':<20}" + "".join(f"{m:>11}" for m in marks))
    for name, transform in contenders.items():
        losses = train(transform, loss_and_grad, args.steps)
        print(f"{name:<20}" + "".join(f"{losses[m]:>11.4g}" for m in marks))


if __name__ == "__main__":
    main()
