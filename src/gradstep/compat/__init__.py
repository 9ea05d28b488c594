"""The seed systems' own APIs mapped onto gradstep's rules.

Each module is a thin mapping of names, defaults and calling conventions; the math is
the rules' own. Import the one you need: ``gradstep.compat.lasagne`` (also
``gradstep.compat.dandelion``), ``gradstep.compat.mxnet``, ``gradstep.compat.objax``,
``gradstep.compat.optax``.
"""
