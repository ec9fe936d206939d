"""Errors search/ raises for a bad job spec; the service turns them into 422s."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

Loc = tuple[str | int, ...]


class SpecError(ValueError):
    """A spec problem at ``loc`` (a path into the JobSpec, e.g. ("space", "lr", "low")).

    ``type`` says what kind of mistake, as pydantic names them ("value_error" for a rule of
    search/, "int_type", "extra_forbidden", ...): a 422 lists it with the loc and the message."""

    def __init__(self, loc: Loc, message: str, type: str = "value_error") -> None:  # noqa: A002 - FastAPI's key
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {message}" if loc else message)
        self.loc = loc
        self.message = message
        self.type = type

    @property
    def errors(self) -> tuple[SpecError, ...]:
        """Every mistake this error reports (one here; several in SpecErrors)."""
        return (self,)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by (loc, message), not by the formatted text: crosses process pools and Ray intact.
        return (SpecError, (self.loc, self.message, self.type))


class SpecErrors(SpecError):
    """Several mistakes of one spec, reported together; ``loc`` and ``message`` are the first's."""

    def __init__(self, errors: Iterable[SpecError]) -> None:
        found = tuple(e for error in errors for e in error.errors)
        if not found:
            raise ValueError("SpecErrors needs at least one error")
        first = found[0]
        super().__init__(first.loc, first.message, first.type)
        self.args = ("; ".join(str(e) for e in found),)
        self._errors = found

    @property
    def errors(self) -> tuple[SpecError, ...]:
        return self._errors

    def __reduce__(self) -> tuple[Any, ...]:
        return (SpecErrors, (self._errors,))


def raise_all(errors: Iterable[SpecError]) -> None:
    """Raise the mistakes found, if any: one of them as it is, several as SpecErrors."""
    found = [e for error in errors for e in error.errors]
    if len(found) == 1:
        raise found[0]
    if found:
        raise SpecErrors(found)


def spec_errors(exc: ValidationError, prefix: Loc = ()) -> list[SpecError]:
    """Pydantic's errors for a part of a spec, as SpecErrors at ``prefix`` + their loc."""
    return [SpecError(prefix + tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors(include_url=False)]


def int_at(loc: Loc, value: object, low: int, high: int | None = None, why: str = "") -> int:
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
