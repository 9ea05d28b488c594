"""MXNet 1.9.1's ``mxnet.optimizer`` API on gradstep's rules.

Change ``import mxnet as mx`` / ``mx.optimizer.create(...)`` to
``from gradstep.compat import mxnet`` / ``mxnet.create(...)`` and a training loop over
NumPy weights keeps working:

    >>> import numpy as np
    >>> from gradstep.compat import mxnet
    >>> opt = mxnet.create("adam", learning_rate=0.1, wd=0.01, rescale_grad=0.5)
    >>> updater = mxnet.get_updater(opt)
    >>> w = [np.array([1.0, -2.0], np.float32), np.array([0.5], np.float32)]
    >>> for _ in range(2):
    ...     for i, weight in enumerate(w):
    ...         updater(i, 2 * weight, weight)  # updates the array in place
    >>> w[0].round(4), opt.num_update
    (array([ 0.8004, -1.8002], dtype=float32), 2)

Every name of MXNet 1.9.1's optimizer registry is here (:func:`create`, or the class
by MXNet's name): ``sgd``, ``nag``, ``signum``, ``ftml``, ``lars``, ``lbsgd``,
``lamb``, ``dcasgd``, ``sgld``, ``adam``, ``adagrad``, ``rmsprop``, ``adadelta``,
``ftrl``, ``adamax``, ``nadam``, with MXNet's argument names and defaults. The
optimizer object has MXNet's methods: ``create_state(index, weight)``,
``update(index, weight, grad, state)`` (the NumPy ``weight`` is updated in place),
their ``_multi_precision`` variants, ``set_learning_rate``, ``set_lr_mult``,
``set_wd_mult`` and the ``learning_rate`` property; :func:`get_updater` returns
``updater(index, grad, weight)`` keeping one state per index, as MXNet's.

The bookkeeping is MXNet's:

- Step counts per index, starting at ``begin_num_update``; ``num_update`` is the
  largest count; ``lr_scheduler(num_update)`` is read after the count of this update
  is incremented (LBSGD: before).
- ``lr = learning_rate * lr_mult``, ``wd = wd * wd_mult`` per index (multipliers by
  index or by name through ``param_idx2name``); with ``param_idx2name``, names not
  ending in ``_weight`` or ``_gamma`` get ``wd_mult = 0`` (LARS: not ending in
  ``_weight``).
- ``rescale_grad`` is read at every update (Gluon's ``Trainer`` sets it each step).
- ``clip_gradient``: ``None`` or 0 means no clipping for the kernel-based rules (SGD,
  NAG, Signum, FTML, LARS, LBSGD, LAMB, Adam, RMSProp, Ftrl); the Python-implemented
  ones (DCASGD, SGLD, AdaGrad, AdaDelta, Adamax, Nadam) clip to 0 with 0.
- ``multi_precision=True`` with a float16 weight keeps a float32 master copy in the
  state (``(master, inner_state)``), as ``create_state_multi_precision`` does.
- Nadam's momentum-schedule product is one number on the optimizer, multiplied once per
  parameter update (as MXNet's ``m_schedule``).

The math is gradstep's rules at the option settings recorded from MXNet 1.9.1 (see
``docs/mxnet.md``): each index keeps the rule's own state for one tensor; nothing of the
math is written here.

Differences: weights, gradients and states are NumPy arrays (no NDArray, contexts,
row-sparse storage or aggregated multi-tensor kernels; ``lazy_update`` is accepted and
has no effect on dense arrays, as in MXNet). ``param_dict`` and ``sym`` are not taken
(pass ``set_lr_mult`` / ``set_wd_mult`` dictionaries). SGLD draws its noise from
NumPy (``seed`` is gradstep's addition), not MXNet's generator. The rule transform is
built from the constructor's values; ``wd``, ``rescale_grad``, ``lr_mult`` and
``wd_mult`` may change between updates, ``clip_gradient`` is read at construction.
"""

from __future__ import annotations

from ._mxnet_adaptive import AdaDelta, AdaGrad, Adam, Adamax, Ftrl, Nadam, RMSProp
from ._mxnet_base import Optimizer, Updater, create, get_updater, register
from ._mxnet_sgd import DCASGD, FTML, LAMB, LARS, LBSGD, NAG, SGD, SGLD, Signum

__all__ = [
    "DCASGD",
    "FTML",
    "LAMB",
    "LARS",
    "LBSGD",
    "NAG",
    "SGD",
    "SGLD",
    "AdaDelta",
    "AdaGrad",
    "Adam",
    "Adamax",
    "Ftrl",
    "Nadam",
    "Optimizer",
    "RMSProp",
    "Signum",
    "Updater",
    "create",
    "get_updater",
    "register",
]
