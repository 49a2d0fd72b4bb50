"""Validation helpers of the config dataclasses (``owner.field`` names); integers via :mod:`avalanche_rm.validation`."""
from __future__ import annotations

import math
from typing import Any

from ..validation import check_int as _check_int


def _name(owner: str, field: str) -> str:
    return f"{owner}.{field}" if owner else field


def check_finite(owner: str, field: str, value: Any) -> float:
    """Return ``value`` as float, or raise ``ValueError`` naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{_name(owner, field)} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{_name(owner, field)} must be finite, got {value!r}")
    return value


def check_positive(owner: str, field: str, value: Any) -> float:
    value = check_finite(owner, field, value)
    if value <= 0:
        raise ValueError(f"{_name(owner, field)} must be > 0, got {value!r}")
    return value


def check_non_negative(owner: str, field: str, value: Any) -> float:
    value = check_finite(owner, field, value)
    if value < 0:
        raise ValueError(f"{_name(owner, field)} must be >= 0, got {value!r}")
    return value


def check_int(owner: str, field: str, value: Any, minimum: int) -> int:
    """:func:`avalanche_rm.validation.check_int` with the config's field name."""
    return _check_int(value, _name(owner, field), minimum)


def check_fraction(owner: str, field: str, value: Any) -> float:
    value = check_finite(owner, field, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{_name(owner, field)} must lie in [0, 1], got {value!r}")
    return value


def check_choice(owner: str, field: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{_name(owner, field)} must be one of {choices}, got {value!r}")
    return value
