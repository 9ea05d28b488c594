"""More workloads of ``gradstep compare`` (nothing downloaded): an ill-conditioned
least-squares regression on generated data, where the curvature spans three orders of
magnitude and plain gradient descent crawls along the flat directions, and a small
convolutional net on the bundled 8x8 digits.

It gives the race the same things as the digits problems (see
:mod:`._compare_problems`): ``init``, ``batches``, ``loss_and_grad``, ``torch_loss``,
``monitor`` (validation loss), ``evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._compare_problems import DigitsProblem, _cross_entropy, shuffled_batches


class LeastSquaresData:
    """Rows ``a = z * s @ V.T`` with ``z`` standard normal, singular values ``s`` spaced
    geometrically from 1 to ``1 / sqrt(condition)`` and a random rotation ``V``, so the
    Hessian of the mean squared error has condition number ``condition``; targets
    ``b = a @ x_true + noise``, scaled so that the loss at zero is 0.5."""

    _cache: dict[int, LeastSquaresData] = {}

    def __init__(self, seed: int, rows: int = 1200, dim: int = 40, condition: float = 1e3):
        rng = np.random.default_rng([seed, 17])
        s = np.geomspace(1.0, 1.0 / np.sqrt(condition), dim)
        v, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        a = (rng.normal(size=(rows, dim)) * s) @ v.T
        x_true = v @ rng.normal(size=dim)
        b = a @ x_true + 0.01 * rng.normal(size=rows)
        b /= np.sqrt(np.mean(b * b))
        n_train, n_val = int(0.6 * rows), int(0.2 * rows)
        self.a_train, self.b_train = a[:n_train], b[:n_train]
        self.a_val, self.b_val = a[n_train : n_train + n_val], b[n_train : n_train + n_val]
        self.a_test, self.b_test = a[n_train + n_val :], b[n_train + n_val :]
        self.condition = condition

    @classmethod
    def get(cls, seed: int) -> LeastSquaresData:
        if seed not in cls._cache:
            cls._cache[seed] = cls(seed)
        return cls._cache[seed]


def _mse(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> float:
    r = a @ x - b
    return 0.5 * float(np.mean(r * r))


@dataclass
class LeastSquares:
    """Linear regression by mini-batch gradient steps on an ill-conditioned design."""

    name: str = "lstsq"
    title: str = "Ill-conditioned least squares"
    target: float = 0.002
    steps: int = 150
    batch_size: int = 64
    kind: str = field(default="data", init=False)
    stochastic: bool = field(default=True, init=False)
    scored: bool = field(default=True, init=False)
    data: LeastSquaresData | None = field(default=None, init=False, repr=False)
    split_seed: int = 0  # the race sets it: every seed fits the same data

    def _data(self, seed: int | None = None) -> LeastSquaresData:
        if self.data is None:
            self.data = LeastSquaresData.get(self.split_seed)
        return self.data

    def init(self, seed: int) -> dict[str, np.ndarray]:
        d = self._data(seed)
        return {"x": np.zeros(d.a_train.shape[1])}

    def batches(self, steps: int, seed: int) -> list[np.ndarray]:
        return shuffled_batches(len(self._data(seed).b_train), self.batch_size, steps, seed, 19)

    def loss_and_grad(self, params: dict, batch: Any) -> tuple[float, dict]:
        d = self._data()
        a, b = (d.a_train, d.b_train) if batch is None else (d.a_train[batch], d.b_train[batch])
        r = a @ params["x"] - b
        return 0.5 * float(np.mean(r * r)), {"x": a.T @ r / len(b)}

    def torch_loss(self, params: dict, batch: Any):
        import torch

        d = self._data()
        a, b = (d.a_train, d.b_train) if batch is None else (d.a_train[batch], d.b_train[batch])
        r = torch.from_numpy(a) @ params["x"] - torch.from_numpy(b)
        return 0.5 * (r * r).mean()

    def loss(self, params: dict, batch: Any = None) -> float:
        d = self._data()
        return _mse(d.a_train, d.b_train, params["x"])

    def monitor(self, params: dict) -> float:
        d = self._data()
        return _mse(d.a_val, d.b_val, params["x"])

    def evaluate(self, params: dict) -> dict[str, float]:
        d = self._data()
        return {
            "loss": _mse(d.a_train, d.b_train, params["x"]),
            "val_loss": _mse(d.a_val, d.b_val, params["x"]),
            "test_loss": _mse(d.a_test, d.b_test, params["x"]),
        }

    @property
    def description(self) -> str:
        d = self._data()
        return (
            f"Mean squared error of a linear model on {d.a_train.shape[1]} generated features "
            f"whose Hessian has condition number {d.condition:g}; {len(d.b_train)} training, "
            f"{len(d.b_val)} validation and {len(d.b_test)} test rows, mini-batches of "
            f"{self.batch_size}. The loss at zero is 0.5; curves and target on validation."
        )

    def info(self) -> dict[str, Any]:
        d = self._data()
        return {
            "title": self.title,
            "kind": self.kind,
            "description": self.description,
            "train_size": len(d.b_train),
            "validation_size": len(d.b_val),
            "test_size": len(d.b_test),
            "batch_size": self.batch_size,
            "target_loss": self.target,
        }


def patches(images: np.ndarray) -> np.ndarray:
    """The 3x3 patches of 8x8 images: ``(n, 36, 9)`` for the 6x6 valid positions."""
    x = images.reshape(-1, 8, 8)
    out = np.empty((len(x), 36, 9))
    for i in range(6):
        for j in range(6):
            out[:, 6 * i + j, :] = x[:, i : i + 3, j : j + 3].reshape(len(x), 9)
    return out


@dataclass
class ConvDigits(DigitsProblem):
    """A small convolutional net on the 8x8 digits: ``channels`` filters of 3x3 (valid,
    tanh), then a linear layer on the 6x6 maps. The digits split, batches, monitoring
    and evaluation are :class:`DigitsProblem`'s; the patches of each part of the split
    are cut once."""

    channels: int = 8

    def _patches_of(self, x: np.ndarray) -> np.ndarray:
        d = self._data()
        cache = d.__dict__.setdefault("patches", {})
        for name in ("x_train", "x_val", "x_test"):
            if x is getattr(d, name):
                if name not in cache:
                    cache[name] = patches(x)
                return cache[name]
        return patches(x)

    def init(self, seed: int) -> dict[str, np.ndarray]:
        self._data(seed)
        rng = np.random.default_rng([seed, 23])
        c = self.channels
        return {
            "K": rng.normal(0.0, 1.0 / 3.0, (9, c)),
            "c": np.zeros(c),
            "W": rng.normal(0.0, 1.0 / np.sqrt(36 * c), (36 * c, 10)),
            "b": np.zeros(10),
        }

    def _forward(self, params: dict, x: np.ndarray):
        return self._forward_patches(params, self._patches_of(x))

    def _forward_patches(self, params: dict, p: np.ndarray):
        h = np.tanh(p @ params["K"] + params["c"])  # (n, 36, channels)
        return h.reshape(len(h), -1) @ params["W"] + params["b"], h

    def _batch(self, batch):
        d = self._data()
        p = self._patches_of(d.x_train)
        return (p, d.y_train) if batch is None else (p[batch], d.y_train[batch])

    def loss_and_grad(self, params: dict, batch: np.ndarray | None) -> tuple[float, dict]:
        p, y = self._batch(batch)
        z, h = self._forward_patches(params, p)
        loss, dz = _cross_entropy(z, y)
        flat = h.reshape(len(h), -1)
        dh = (dz @ params["W"].T).reshape(h.shape) * (1.0 - h * h)
        return loss, {
            "K": np.einsum("npk,npc->kc", p, dh),
            "c": dh.sum(axis=(0, 1)),
            "W": flat.T @ dz,
            "b": dz.sum(axis=0),
        }

    def torch_loss(self, params: dict, batch: np.ndarray | None):
        import torch
        import torch.nn.functional as F

        p, y = self._batch(batch)
        h = torch.tanh(torch.from_numpy(p) @ params["K"] + params["c"])
        z = h.reshape(len(p), -1) @ params["W"] + params["b"]
        return F.cross_entropy(z, torch.from_numpy(y))


class MarkovText:
    """A synthetic language: a Markov chain over ``vocab`` tokens whose frequencies are
    heavy-tailed (Zipf), as words are; each token's successors mix the global Zipf law
    with its own random preference. Consecutive pairs, split 60/20/20 in order."""

    _cache: dict[int, MarkovText] = {}

    def __init__(self, seed: int, vocab: int = 64, length: int = 6000):
        rng = np.random.default_rng([seed, 29])
        zipf = 1.0 / np.arange(1, vocab + 1) ** 1.1
        zipf /= zipf.sum()
        rows = np.array([0.5 * zipf + 0.5 * zipf[rng.permutation(vocab)] for _ in range(vocab)])
        cumulative = np.cumsum(rows / rows.sum(axis=1, keepdims=True), axis=1)
        draws = rng.random(length)
        tokens = np.empty(length + 1, dtype=np.int64)
        tokens[0] = 0
        for t in range(length):
            tokens[t + 1] = min(np.searchsorted(cumulative[tokens[t]], draws[t]), vocab - 1)
        x, y = tokens[:-1], tokens[1:]
        n_train, n_val = int(0.6 * length), int(0.2 * length)
        self.x_train, self.y_train = x[:n_train], y[:n_train]
        self.x_val, self.y_val = x[n_train : n_train + n_val], y[n_train : n_train + n_val]
        self.x_test, self.y_test = x[n_train + n_val :], y[n_train + n_val :]
        self.vocab = vocab

    @classmethod
    def get(cls, seed: int) -> MarkovText:
        if seed not in cls._cache:
            cls._cache[seed] = cls(seed)
        return cls._cache[seed]


@dataclass
class NextToken(DigitsProblem):
    """Next-token prediction on :class:`MarkovText` with an embedding of width
    ``width`` and a softmax over the vocabulary (a factorised bigram model): rare
    tokens' rows get rare, small gradients, where adaptive methods and SGD part ways."""

    width: int = 16

    def _data(self, seed: int | None = None):  # the split is MarkovText's
        if self.data is None:
            self.data = MarkovText.get(self.split_seed)
            self.data.classes = self.data.vocab
        return self.data

    def init(self, seed: int) -> dict[str, np.ndarray]:
        d = self._data(seed)
        rng = np.random.default_rng([seed, 31])
        return {
            "E": rng.normal(0.0, 0.1, (d.vocab, self.width)),
            "W": rng.normal(0.0, 1.0 / np.sqrt(self.width), (self.width, d.vocab)),
            "b": np.zeros(d.vocab),
        }

    def _forward(self, params: dict, x: np.ndarray):
        h = params["E"][x]
        return h @ params["W"] + params["b"], h

    def _loss_grad_on(self, params: dict, x: np.ndarray, y: np.ndarray):
        z, h = self._forward(params, x)
        loss, dz = _cross_entropy(z, y)
        d_embedding = np.zeros_like(params["E"])
        np.add.at(d_embedding, x, dz @ params["W"].T)
        return loss, {"E": d_embedding, "W": h.T @ dz, "b": dz.sum(axis=0)}

    def torch_loss(self, params: dict, batch: np.ndarray | None):
        import torch
        import torch.nn.functional as F

        d = self._data()
        x, y = (d.x_train, d.y_train) if batch is None else (d.x_train[batch], d.y_train[batch])
        z = params["E"][torch.from_numpy(x)] @ params["W"] + params["b"]
        return F.cross_entropy(z, torch.from_numpy(y))

    @property
    def description(self) -> str:
        d = self._data()
        return (
            f"{self.summary} {len(d.y_train)} training, {len(d.y_val)} validation and "
            f"{len(d.y_test)} test token pairs, mini-batches of {self.batch_size}; curves "
            "and target on the validation cross-entropy."
        )
