"""Lasagne's update formulas, written out from its source (lasagne/updates.py at
5d3c63c; Dandelion's clear_nan from dandelion/update.py) as a float64 oracle.

Theano cannot be installed today, so the compat module is checked against these
hand-derived values. Each function takes the current parameter values, the gradients
and a dict of accumulators (created here as zeros on the first call, as Lasagne
creates its shared variables) and returns the new parameter values, updating the
accumulators: the same simultaneous assignment a compiled Theano update performs.

Derivation notes (semantics reference, section 2):
- adam: t <- t + 1; a_t = lr * sqrt(1 - b2^t) / (1 - b1^t); m <- b1 m + (1 - b1) g;
  v <- b2 v + (1 - b2) g^2; w <- w - a_t m / (sqrt(v) + eps)   (one t per call)
- amsgrad: as adam, plus v_hat <- max(v_hat, v) and sqrt(v_hat) in the step
- adamax: a_t = lr / (1 - b1^t); m as adam; u <- max(b2 u, |g|); w <- w - a_t m / (u + eps)
- adagrad: a <- a + g^2; w <- w - lr g / sqrt(a + eps)
- rmsprop: a <- rho a + (1 - rho) g^2; w <- w - lr g / sqrt(a + eps)
- adadelta: a <- rho a + (1 - rho) g^2; d = g sqrt(s + eps) / sqrt(a + eps);
  w <- w - lr d; s <- rho s + (1 - rho) d^2
- momentum: v <- mu v - lr g; w <- w + v.  nesterov: v <- mu v - lr g; w <- w + mu v - lr g
- apply_momentum(updates): x = mu v + u; v <- x - w; w <- x
- clear_nan (Dandelion): NaN -> 0 in the new parameter and in the new accumulators
"""

from __future__ import annotations

import numpy as np


def _zeros(acc, key, like):
    if key not in acc:
        acc[key] = [np.zeros_like(x) for x in like]
    return acc[key]


def _clear(x, on):
    return np.where(np.isnan(x), 0.0, x) if on else x


def sgd(w, g, acc, learning_rate=1e-4, clear_nan=False):
    return [_clear(x - learning_rate * gx, clear_nan) for x, gx in zip(w, g)]


def momentum(w, g, acc, learning_rate, momentum=0.9):
    v = _zeros(acc, "v", w)
    out = []
    for i, (x, gx) in enumerate(zip(w, g)):
        new = momentum * v[i] + (x - learning_rate * gx)
        v[i] = new - x
        out.append(new)
    return out


def nesterov_momentum(w, g, acc, learning_rate, momentum=0.9):
    v = _zeros(acc, "v", w)
    out = []
    for i, (x, gx) in enumerate(zip(w, g)):
        step = x - learning_rate * gx
        new_v = momentum * v[i] + step - x
        v[i] = new_v
        out.append(momentum * new_v + step)
    return out


def adagrad(w, g, acc, learning_rate=1.0, epsilon=1e-6):
    a = _zeros(acc, "a", w)
    out = []
    for i, (x, gx) in enumerate(zip(w, g)):
        a[i] = a[i] + gx**2
        out.append(x - learning_rate * gx / np.sqrt(a[i] + epsilon))
    return out


def rmsprop(w, g, acc, learning_rate=1.0, rho=0.9, epsilon=1e-6):
    a = _zeros(acc, "a", w)
    out = []
    for i, (x, gx) in enumerate(zip(w, g)):
        a[i] = rho * a[i] + (1 - rho) * gx**2
        out.append(x - learning_rate * gx / np.sqrt(a[i] + epsilon))
    return out


def adadelta(w, g, acc, learning_rate=1.0, rho=0.95, epsilon=1e-6, clear_nan=False):
    a, s = _zeros(acc, "a", w), _zeros(acc, "s", w)
    out = []
    for i, (x, gx) in enumerate(zip(w, g)):
        a_new = _clear(rho * a[i] + (1 - rho) * gx**2, clear_nan)
        d = gx * np.sqrt(s[i] + epsilon) / np.sqrt(a_new + epsilon)
        out.append(_clear(x - learning_rate * d, clear_nan))
        s[i] = _clear(rho * s[i] + (1 - rho) * d**2, clear_nan)
        a[i] = a_new
    return out


def _adam_like(w, g, acc, learning_rate, beta1, beta2, epsilon, ams, clear_nan):
    m, v = _zeros(acc, "m", w), _zeros(acc, "v", w)
    vhat = _zeros(acc, "vhat", w)
    acc["t"] = acc.get("t", 0) + 1
    t = acc["t"]
    a_t = learning_rate * np.sqrt(1 - beta2**t) / (1 - beta1**t)
    out = []
    for i, (x, gx) in enumerate(zip(w, g)):
        m[i] = _clear(beta1 * m[i] + (1 - beta1) * gx, clear_nan)
        v[i] = _clear(beta2 * v[i] + (1 - beta2) * gx**2, clear_nan)
        if ams:
            vhat[i] = np.maximum(vhat[i], v[i])
        denom = np.sqrt(vhat[i] if ams else v[i]) + epsilon
        out.append(_clear(x - a_t * m[i] / denom, clear_nan))
    return out


def adam(w, g, acc, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, clear_nan=False):
    return _adam_like(w, g, acc, learning_rate, beta1, beta2, epsilon, False, clear_nan)


def amsgrad(w, g, acc, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8):
    return _adam_like(w, g, acc, learning_rate, beta1, beta2, epsilon, True, False)


def adamax(w, g, acc, learning_rate=0.002, beta1=0.9, beta2=0.999, epsilon=1e-8):
    m, u = _zeros(acc, "m", w), _zeros(acc, "u", w)
    acc["t"] = acc.get("t", 0) + 1
    a_t = learning_rate / (1 - beta1 ** acc["t"])
    out = []
    for i, (x, gx) in enumerate(zip(w, g)):
        m[i] = beta1 * m[i] + (1 - beta1) * gx
        u[i] = np.maximum(beta2 * u[i], np.abs(gx))
        out.append(x - a_t * m[i] / (u[i] + epsilon))
    return out
