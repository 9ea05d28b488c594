"""Dandelion's ``update`` module: the same functions as :mod:`gradstep.compat.lasagne`
(Dandelion's module is Lasagne's with Dandelion's defaults and ``clear_nan``, which the
lasagne module already follows)."""

from .lasagne import *  # noqa: F403
from .lasagne import __all__  # noqa: F401
