"""The one set of argument checks every layer uses: a bad value raises ``ValueError`` naming it and its value."""
from __future__ import annotations

import math
from typing import Any


def check_int(value: Any, name: str, minimum: int = 0) -> int:
    """``value`` if it is an int (not a bool) ``>= minimum``; else ``ValueError`` naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_number(value: Any, name: str, minimum: float | None = None, *, strict: bool = False) -> float:
    """``value`` as a finite float (not a bool), ``>= minimum`` (``> minimum`` when ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return value
