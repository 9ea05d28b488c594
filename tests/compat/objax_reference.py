"""objax's optimizer formulas, written out from its source (objax/optimizer/sgd.py,
momentum.py, adam.py, lars.py, ema.py) as a float64 oracle.

objax cannot be installed next to today's JAX, so the compat module is checked
against these hand-derived values. Each step function takes the current parameter
values, the gradients and a dict of state (zeros on the first call, as objax's
``StateVar(jn.zeros_like(...))``) and returns the new parameter values.

Derivation notes (semantics reference, section 4; the lines of objax's code):
- SGD: w <- w - lr g
- Momentum: m <- g + mu m; w <- w - lr m; nesterov: w <- w - lr (g + mu m_new)
- Adam: t <- t + 1 (one counter); a = lr sqrt(1 - b2^t) / (1 - b1^t);
  m <- m + (1 - b1)(g - m); v <- v + (1 - b2)(g^2 - v); w <- w - a m rsqrt(v + eps)
  (eps inside the root, on the uncorrected v); per-call beta1/beta2 replace both the
  moment decays and the bias correction of that call
- documented Adam (objax docs): w <- w - lr m_hat / (sqrt(v_hat) + eps), with
  m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
- LARS: P = ||w||, G = ||g||; r = tc P / (G + wd P + eps);
  local_lr = lr * max([P == 0 or G == 0], r); m <- mu m + local_lr (g + wd w); w <- w - m
- EMA: t <- t + 1; m <- m + (1 - mu)(x - m) from m = 0; reported m, or with debias
  m / (1 - (1 - eps) mu^t)
"""

from __future__ import annotations

import numpy as np


def _zeros(state, key, like):
    if key not in state:
        state[key] = [np.zeros_like(x) for x in like]
    return state[key]


def sgd(w, g, state, lr):
    return [x - lr * gx for x, gx in zip(w, g)]


def momentum(w, g, state, lr, mu=0.9, nesterov=False):
    m = _zeros(state, "m", w)
    out = []
    for i, (x, gx) in enumerate(zip(w, g)):
        m[i] = gx + mu * m[i]
        out.append(x - lr * (gx + mu * m[i]) if nesterov else x - lr * m[i])
    return out


def adam(w, g, state, lr, beta1=0.9, beta2=0.999, eps=1e-8, documented=False):
    m, v = _zeros(state, "m", w), _zeros(state, "v", w)
    state["t"] = t = state.get("t", 0) + 1
    out = []
    for i, (x, gx) in enumerate(zip(w, g)):
        m[i] = m[i] + (1 - beta1) * (gx - m[i])
        v[i] = v[i] + (1 - beta2) * (gx**2 - v[i])
        if documented:
            m_hat, v_hat = m[i] / (1 - beta1**t), v[i] / (1 - beta2**t)
            out.append(x - lr * m_hat / (np.sqrt(v_hat) + eps))
        else:
            a = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
            out.append(x - a * m[i] / np.sqrt(v[i] + eps))
    return out


def lars(w, g, state, lr, mu=0.9, wd=1e-4, tc=1e-3, eps=1e-5):
    m = _zeros(state, "m", w)
    out = []
    for i, (x, gx) in enumerate(zip(w, g)):
        p_norm, g_norm = np.linalg.norm(x), np.linalg.norm(gx)
        ratio = tc * p_norm / (g_norm + wd * p_norm + eps)
        local_lr = lr * max(float(p_norm == 0 or g_norm == 0), ratio)
        m[i] = mu * m[i] + local_lr * (gx + wd * x)
        out.append(x - m[i])
    return out


def ema(values, state, mu=0.999, debias=False, eps=1e-6):
    m = _zeros(state, "ema", values)
    state["ema_t"] = t = state.get("ema_t", 0) + 1
    for i, x in enumerate(values):
        m[i] = m[i] + (1 - mu) * (x - m[i])
    scale = 1 / (1 - (1 - eps) * mu**t) if debias else 1.0
    return [a * scale for a in m]
