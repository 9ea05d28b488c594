"""The problems of ``gradstep compare``: 2-D test functions and the digits data set.

Every problem gives the same things to the race:

- ``init(seed)``: the starting parameters, a dict of float64 NumPy arrays (the same
  for every optimizer of one run);
- ``loss_and_grad(params, batch)``: the loss and its gradient, in NumPy;
- ``torch_loss(params, batch)``: the same loss written with torch operations, for
  ``--backend torch`` (autograd computes the gradient there);
- ``batches(steps, seed)``: what each step sees (``None`` for the test functions,
  index arrays of a mini-batch for the data sets);
- ``monitor(params)``: what the loss curves record and the target is checked on (the
  function's value; the validation loss for data, which tuning selects on);
- ``evaluate(params)``: the numbers the leaderboard reports after the last step
  (the whole training set's loss and, for data, validation and held-out test loss
  and accuracy).
- ``stochastic``: true where the steps see mini-batches (several seeds are run).

The 2-D functions are classic optimizer test surfaces: a long curved valley
(Rosenbrock), flat plateaus with steep walls (Beale), a saddle point to escape, and a
surface with many local minima (Rastrigin). Each has its global minimum value at 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# -- 2-D test functions ---------------------------------------------------------------


def _rosenbrock(xp, x, y):
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def _rosenbrock_grad(x, y):
    r = y - x * x
    return -2.0 * (1.0 - x) - 400.0 * x * r, 200.0 * r


def _beale(xp, x, y):
    t1 = 1.5 - x + x * y
    t2 = 2.25 - x + x * y * y
    t3 = 2.625 - x + x * y * y * y
    return t1 * t1 + t2 * t2 + t3 * t3


def _beale_grad(x, y):
    t1 = 1.5 - x + x * y
    t2 = 2.25 - x + x * y * y
    t3 = 2.625 - x + x * y * y * y
    dx = 2.0 * (t1 * (y - 1.0) + t2 * (y * y - 1.0) + t3 * (y * y * y - 1.0))
    dy = 2.0 * (t1 * x + t2 * 2.0 * x * y + t3 * 3.0 * x * y * y)
    return dx, dy


def _saddle(xp, x, y):
    # = x^2 - y^2 + y^4/4 + 1: a saddle at the origin between two minima at
    # (0, +-sqrt(2)), where it is exactly 0
    r = y * y - 2.0
    return x * x + 0.25 * r * r


def _saddle_grad(x, y):
    return 2.0 * x, y * (y * y - 2.0)


_TWO_PI = 2.0 * math.pi


def _rastrigin(xp, x, y):
    return 20.0 + x * x - 10.0 * xp.cos(_TWO_PI * x) + y * y - 10.0 * xp.cos(_TWO_PI * y)


def _rastrigin_grad(x, y):
    return (
        2.0 * x + 10.0 * _TWO_PI * np.sin(_TWO_PI * x),
        2.0 * y + 10.0 * _TWO_PI * np.sin(_TWO_PI * y),
    )


@dataclass
class Surface:
    """A 2-D test function ``f(x, y)`` with its start, minima and plotting window."""

    name: str
    title: str
    description: str
    function: Any  # f(xp, x, y), written with operators and xp.cos only
    gradient: Any  # (x, y) -> (df/dx, df/dy) in NumPy
    start: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    window: tuple[float, float, float, float]  # x_min, x_max, y_min, y_max
    target: float
    steps: int = 150
    kind: str = field(default="surface", init=False)
    stochastic: bool = field(default=False, init=False)
    scored: bool = field(default=False, init=False)  # the gallery: pictures, not the score

    def init(self, seed: int) -> dict[str, np.ndarray]:
        # the start is the problem's: every seed races from the same point
        return {"xy": np.array(self.start, dtype=np.float64)}

    def batches(self, steps: int, seed: int) -> list[None]:
        return [None] * steps

    def value(self, x, y):
        """``f`` on NumPy arrays (for contour plots)."""
        return self.function(np, x, y)

    def loss_and_grad(self, params: dict, batch: Any = None) -> tuple[float, dict]:
        x, y = params["xy"]
        dx, dy = self.gradient(x, y)
        return float(self.function(np, x, y)), {"xy": np.array([dx, dy])}

    def loss(self, params: dict, batch: Any = None) -> float:
        x, y = params["xy"]
        return float(self.function(np, x, y))

    monitor = loss

    def torch_loss(self, params: dict, batch: Any = None):
        import torch

        xy = params["xy"]
        return self.function(torch, xy[0], xy[1])

    def evaluate(self, params: dict) -> dict[str, float]:
        return {"loss": self.loss(params)}

    def info(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "kind": self.kind,
            "description": self.description,
            "start": list(self.start),
            "minima": [list(m) for m in self.minima],
            "target_loss": self.target,
        }


# -- the digits data set ----------------------------------------------------------------


class Digits:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), split 60/20/20 into
    training, validation and test sets by the seed (stratified), standardized with the
    training set's statistics."""

    _cache: dict[tuple[int, float], Digits] = {}

    def __init__(self, seed: int, held_out: float = 0.2):
        try:
            from sklearn.datasets import load_digits
        except ImportError as missing:
            raise RuntimeError(
                "the digits problems need scikit-learn: pip install 'gradstep[cli]'"
            ) from missing
        data = load_digits()
        x = np.asarray(data.data, dtype=np.float64) / 16.0
        y = np.asarray(data.target, dtype=np.int64)
        rng = np.random.default_rng([seed, 7])
        part = np.zeros(len(y), dtype=np.int64)  # 0 train, 1 validation, 2 test
        for label in np.unique(y):  # stratified: each class split in the same ratio
            members = rng.permutation(np.flatnonzero(y == label))
            k = round(held_out * len(members))
            part[members[:k]] = 2
            part[members[k : 2 * k]] = 1
        train = part == 0
        mean = x[train].mean(axis=0)
        std = x[train].std(axis=0)
        std[std < 1e-8] = 1.0
        x = (x - mean) / std
        self.x_train, self.y_train = x[train], y[train]
        self.x_val, self.y_val = x[part == 1], y[part == 1]
        self.x_test, self.y_test = x[part == 2], y[part == 2]
        self.classes = 10

    @classmethod
    def get(cls, seed: int) -> Digits:
        key = (seed, 0.2)
        if key not in cls._cache:
            cls._cache[key] = cls(seed)
        return cls._cache[key]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _cross_entropy(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of logits ``z`` and its gradient with respect to ``z``."""
    logp = _log_softmax(z)
    n = len(y)
    loss = -logp[np.arange(n), y].mean()
    dz = np.exp(logp)
    dz[np.arange(n), y] -= 1.0
    return float(loss), dz / n


def shuffled_batches(n: int, batch_size: int, steps: int, seed: int, stream: int) -> list:
    """Index arrays of ``steps`` mini-batches over ``n`` examples: shuffled epochs,
    the same for every optimizer of one run (``stream`` keeps problems apart)."""
    size = min(batch_size, n)
    rng = np.random.default_rng([seed, stream])
    out: list[np.ndarray] = []
    while len(out) < steps:
        order = rng.permutation(n)
        out.extend(order[i : i + size] for i in range(0, n - size + 1, size))
    return out[:steps]


@dataclass
class DigitsProblem:
    """A classifier trained on mini-batches of the digits training set."""

    name: str
    title: str
    summary: str
    hidden: int  # 0: multinomial logistic regression; else one tanh hidden layer
    target: float
    steps: int
    batch_size: int = 128
    kind: str = field(default="data", init=False)
    stochastic: bool = field(default=True, init=False)
    scored: bool = field(default=True, init=False)
    data: Digits | None = field(default=None, init=False, repr=False)

    split_seed: int = 0  # the race sets it: every seed trains on the same split

    def _data(self, seed: int | None = None) -> Digits:
        if self.data is None:
            self.data = Digits.get(self.split_seed)
        return self.data

    def init(self, seed: int) -> dict[str, np.ndarray]:
        d = self._data(seed)
        rng = np.random.default_rng([seed, 11])
        n_in = d.x_train.shape[1]
        if not self.hidden:
            return {
                "W": rng.normal(0.0, 0.01, (n_in, d.classes)),
                "b": np.zeros(d.classes),
            }
        return {
            "W1": rng.normal(0.0, 1.0 / math.sqrt(n_in), (n_in, self.hidden)),
            "b1": np.zeros(self.hidden),
            "W2": rng.normal(0.0, 1.0 / math.sqrt(self.hidden), (self.hidden, d.classes)),
            "b2": np.zeros(d.classes),
        }

    def batches(self, steps: int, seed: int) -> list[np.ndarray]:
        """Mini-batch indices for every step: shuffled epochs, the same for every
        optimizer of one run."""
        return shuffled_batches(len(self._data(seed).y_train), self.batch_size, steps, seed, 13)

    def _forward(self, params: dict, x: np.ndarray):
        if not self.hidden:
            return x @ params["W"] + params["b"], None
        h = np.tanh(x @ params["W1"] + params["b1"])
        return h @ params["W2"] + params["b2"], h

    def _loss_grad_on(self, params: dict, x: np.ndarray, y: np.ndarray):
        z, h = self._forward(params, x)
        loss, dz = _cross_entropy(z, y)
        if not self.hidden:
            return loss, {"W": x.T @ dz, "b": dz.sum(axis=0)}
        dh = (dz @ params["W2"].T) * (1.0 - h * h)
        return loss, {
            "W1": x.T @ dh,
            "b1": dh.sum(axis=0),
            "W2": h.T @ dz,
            "b2": dz.sum(axis=0),
        }

    def loss_and_grad(self, params: dict, batch: np.ndarray | None) -> tuple[float, dict]:
        d = self._data()
        x, y = (d.x_train, d.y_train) if batch is None else (d.x_train[batch], d.y_train[batch])
        return self._loss_grad_on(params, x, y)

    def torch_loss(self, params: dict, batch: np.ndarray | None):
        import torch
        import torch.nn.functional as F

        d = self._data()
        x, y = (d.x_train, d.y_train) if batch is None else (d.x_train[batch], d.y_train[batch])
        x = torch.from_numpy(x)
        if self.hidden:
            h = torch.tanh(x @ params["W1"] + params["b1"])
            z = h @ params["W2"] + params["b2"]
        else:
            z = x @ params["W"] + params["b"]
        return F.cross_entropy(z, torch.from_numpy(y))

    def loss(self, params: dict, batch: Any = None) -> float:
        d = self._data()
        z, _ = self._forward(params, d.x_train)
        return _cross_entropy(z, d.y_train)[0]

    def monitor(self, params: dict) -> float:
        d = self._data()
        z, _ = self._forward(params, d.x_val)
        return _cross_entropy(z, d.y_val)[0]

    def evaluate(self, params: dict) -> dict[str, float]:
        d = self._data()
        out = {}
        for part, x, y in (
            ("", d.x_train, d.y_train),
            ("val_", d.x_val, d.y_val),
            ("test_", d.x_test, d.y_test),
        ):
            z, _ = self._forward(params, x)
            out[f"{part or 'train_'}accuracy"] = float((z.argmax(axis=1) == y).mean())
            out[f"{part}loss"] = _cross_entropy(z, y)[0]
        return out

    @property
    def description(self) -> str:
        d = self._data()
        return (
            f"{self.summary} Mini-batches of {self.batch_size}; {len(d.y_train)} training, "
            f"{len(d.y_val)} validation and {len(d.y_test)} test images (a stratified split "
            "drawn from the seed); the curves and the target are the mean cross-entropy on "
            "the validation set, test numbers are reported only."
        )

    def info(self) -> dict[str, Any]:
        d = self._data()
        return {
            "title": self.title,
            "kind": self.kind,
            "description": self.description,
            "train_size": len(d.y_train),
            "validation_size": len(d.y_val),
            "test_size": len(d.y_test),
            "batch_size": self.batch_size,
            "target_loss": self.target,
        }


def make_problems() -> dict[str, Any]:
    """Every problem, by name, in the order of the report: the scored race first, then
    the 2-D gallery."""
    from ._compare_workloads import ConvDigits, LeastSquares, NextToken

    gallery: list[Any] = [
        Surface(
            "rosenbrock",
            "Rosenbrock",
            "(1-x)^2 + 100 (y-x^2)^2: a long, curved, flat-bottomed valley to (1, 1).",
            _rosenbrock,
            _rosenbrock_grad,
            start=(-1.2, 1.0),
            minima=((1.0, 1.0),),
            window=(-2.0, 2.0, -1.0, 3.0),
            target=1e-2,
        ),
        Surface(
            "beale",
            "Beale",
            "Beale's function: flat plateaus and steep walls; minimum at (3, 0.5).",
            _beale,
            _beale_grad,
            start=(1.0, 1.5),
            minima=((3.0, 0.5),),
            window=(-1.0, 4.5, -2.0, 2.5),
            target=1e-2,
        ),
        Surface(
            "saddle",
            "Saddle point",
            "x^2 - y^2 + y^4/4 + 1: start next to the saddle at the origin, where the "
            "gradient almost vanishes; minima at (0, +-sqrt(2)).",
            _saddle,
            _saddle_grad,
            start=(1.5, 1e-3),
            minima=((0.0, math.sqrt(2.0)), (0.0, -math.sqrt(2.0))),
            window=(-2.0, 2.0, -2.0, 2.0),
            target=1e-2,
        ),
        Surface(
            "rastrigin",
            "Rastrigin",
            "20 + sum(x_i^2 - 10 cos(2 pi x_i)): a bowl covered in local minima; the global "
            "one at the origin.",
            _rastrigin,
            _rastrigin_grad,
            start=(2.6, 3.3),
            minima=((0.0, 0.0),),
            window=(-4.0, 4.0, -4.0, 4.0),
            target=0.5,
        ),
    ]
    race: list[Any] = [
        DigitsProblem(
            "logistic",
            "Logistic regression (digits)",
            "Multinomial logistic regression on scikit-learn's 8x8 digits.",
            hidden=0,
            target=0.15,
            steps=100,
        ),
        DigitsProblem(
            "mlp",
            "MLP (digits)",
            "A 64-32-10 tanh network on scikit-learn's 8x8 digits.",
            hidden=32,
            target=0.12,
            steps=150,
        ),
        LeastSquares(),
        ConvDigits(
            "conv",
            "Conv net (digits)",
            "A 3x3 convolution with 8 tanh channels and a linear layer on the 8x8 digits.",
            hidden=0,
            target=0.1,
            steps=150,
        ),
        NextToken(
            "text",
            "Next token (synthetic language)",
            "Next-token prediction on a generated Markov-chain language of 64 tokens with "
            "Zipf-distributed frequencies, by an embedding of width 16 and a softmax.",
            hidden=0,
            target=3.85,
            steps=150,
        ),
    ]
    return {p.name: p for p in race + gallery}
