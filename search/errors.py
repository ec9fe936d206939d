"""Errors search/ raises for a bad job spec; the service turns them into 422s."""

from __future__ import annotations

import math
from typing import Any


class SpecError(ValueError):
    """A spec problem at ``loc`` (a path into the JobSpec, e.g. ("space", "lr", "low"))."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {message}")
        self.loc = loc
        self.message = message

    def __reduce__(self) -> tuple[type[SpecError], tuple[tuple[str | int, ...], str]]:
        # Pickled by (loc, message), not by the formatted text: crosses process pools and Ray intact.
        return (SpecError, (self.loc, self.message))


def int_at(loc: tuple[str | int, ...], value: object, low: int, high: int | None = None, why: str = "") -> int:
    """``value`` if it is an integer (not a bool) in [low, high] (no upper bound when ``high`` is
    None), else SpecError at ``loc``."""
    bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise SpecError(loc, f"must be an integer {bounds}{why}, got {value!r}")
    return value


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is finite as a float: JSON's integers are unbounded, and
    ``math.isfinite`` raises OverflowError for one beyond float's range instead of saying no."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
