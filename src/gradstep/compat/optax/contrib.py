"""optax.contrib's names on gradstep's rules (draft)."""

from __future__ import annotations

from .._optax_contrib import *  # noqa: F403
from .._optax_contrib_free import *  # noqa: F403
from .._optax_contrib_schedule_free import *  # noqa: F403
