"""The search space: the learning rate, the optimizer, the schedule, warmup and their parameters.

A spec's ``space`` is JSON. Numeric dimensions are ``{"low", "high"}`` (log-uniform for
``lr`` and for parameters marked ``log``, uniform otherwise), ``{"values": [...]}``, or for
grids ``{"low", "high", "num"}`` (log-spaced for ``lr``, linear otherwise). Categorical
dimensions (``optimizer``, ``schedule``, ``nesterov``) are lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from lrsearch.search.catalog import OPTIMIZERS, SCHEDULES, param_specs
from lrsearch.search.errors import SpecError, is_finite_number

MAX_GRID_NUM = 1000  # points along one grid axis


@dataclass(frozen=True)
class Numeric:
    """A numeric dimension: a range to sample, explicit values, or a range split into ``num`` points."""

    name: str
    low: float | None = None
    high: float | None = None
    values: tuple[float, ...] | None = None
    num: int | None = None
    log: bool = False
    integer: bool = False

    def grid_points(self) -> list[float]:
        if self.values is not None:
            return list(self.values)
        assert self.low is not None and self.high is not None and self.num is not None
        if self.num == 1:
            return [self.low]
        if self.log:
            a, b = math.log(self.low), math.log(self.high)
            # 12 significant digits: 0.01, not 0.009999999999999995
            pts = [float(f"{math.exp(a + (b - a) * i / (self.num - 1)):.12g}") for i in range(self.num)]
            pts[0], pts[-1] = self.low, self.high
        else:
            pts = [self.low + (self.high - self.low) * i / (self.num - 1) for i in range(self.num)]
        if self.integer:
            pts = sorted({int(round(p)) for p in pts})
        return pts

    def contains(self, value: float) -> bool:
        if self.values is not None:
            return any(_same(value, v) for v in self.values)
        assert self.low is not None and self.high is not None
        return self.low * (1 - 1e-12) <= value <= self.high * (1 + 1e-12)


@dataclass(frozen=True)
class Categorical:
    name: str
    choices: tuple[Any, ...]

    def grid_points(self) -> list[Any]:
        return list(self.choices)

    def contains(self, value: Any) -> bool:
        return value in self.choices


Dimension = Numeric | Categorical


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


@dataclass(frozen=True)
class SearchSpace:
    """Parsed dimensions by name; ``lr``, ``optimizer``, ``schedule`` and ``warmup_fraction`` always exist."""

    dims: dict[str, Dimension] = field(default_factory=dict)

    @property
    def optimizers(self) -> tuple[str, ...]:
        return self.dims["optimizer"].choices  # type: ignore[union-attr]

    @property
    def schedules(self) -> tuple[str, ...]:
        return self.dims["schedule"].choices  # type: ignore[union-attr]

    def contains(self, config: dict) -> bool:
        """Whether a candidate lies in the space (parameters not in the space are free)."""
        return all(dim.contains(config[name]) for name, dim in self.dims.items() if name in config)

    def grid_size(self) -> int:
        return math.prod(len(d.grid_points()) for d in self.dims.values())


def _finite_number(loc: tuple, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(loc, f"must be a number, got {value!r}")
    if not is_finite_number(value):
        raise SpecError(loc, "must be finite (and within a float's range)")
    return float(value)


def _check_bounds(loc: tuple, value: float, low: float | None, high: float | None, positive: bool) -> None:
    if positive and value <= 0:
        raise SpecError(loc, f"must be > 0, got {value!r}")
    if low is not None and value < low:
        raise SpecError(loc, f"must be >= {low}, got {value!r}")
    if high is not None and value > high:
        raise SpecError(loc, f"must be <= {high}, got {value!r}")


def _parse_numeric(
    name: str,
    raw: Any,
    *,
    log: bool,
    integer: bool,
    low_bound: float | None,
    high_bound: float | None,
    positive: bool,
    grid: bool,
) -> Numeric:
    loc: tuple = ("space", name)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = {"values": [raw]}
    if not isinstance(raw, dict):
        raise SpecError(loc, 'must be {"low": a, "high": b} or {"values": [...]}' + (
            ' or {"low": a, "high": b, "num": k}' if grid else ""))
    allowed = {"values"} if "values" in raw else {"low", "high", "num"}
    extra = set(raw) - allowed
    if extra:
        raise SpecError(loc + (sorted(extra)[0],), f"unknown key; allowed: {sorted(allowed)}")
    if "values" in raw:
        values = raw["values"]
        if not isinstance(values, list) or not values:
            raise SpecError(loc + ("values",), "must be a non-empty list of numbers")
        if len(values) > MAX_GRID_NUM:
            raise SpecError(loc + ("values",), f"at most {MAX_GRID_NUM} values")
        parsed = []
        for i, v in enumerate(values):
            x = _finite_number(loc + ("values", i), v)
            _check_bounds(loc + ("values", i), x, low_bound, high_bound, positive)
            if integer:
                if x != int(x):
                    raise SpecError(loc + ("values", i), "must be an integer")
                x = int(x)
            parsed.append(x)
        unique: list[float] = []
        for x in parsed:
            if not any(_same(x, u) for u in unique):
                unique.append(x)
        return Numeric(name, values=tuple(unique), log=log, integer=integer)
    for key in ("low", "high"):
        if key not in raw:
            raise SpecError(loc + (key,), "is required")
    low = _finite_number(loc + ("low",), raw["low"])
    high = _finite_number(loc + ("high",), raw["high"])
    _check_bounds(loc + ("low",), low, low_bound, high_bound, positive)
    _check_bounds(loc + ("high",), high, low_bound, high_bound, positive)
    if integer:
        for key, x in (("low", low), ("high", high)):
            if x != int(x):
                raise SpecError(loc + (key,), f"must be an integer, got {raw[key]!r}")
    if low >= high:
        raise SpecError(loc + ("low",), f"low ({low}) must be < high ({high})")
    if log and low <= 0:
        raise SpecError(loc + ("low",), "must be > 0 (sampled on a log scale)")
    num = raw.get("num")
    if num is not None:
        if not grid:
            raise SpecError(loc + ("num",), "only grid search takes num")
        if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= MAX_GRID_NUM:
            raise SpecError(loc + ("num",), f"must be an integer in [1, {MAX_GRID_NUM}]")
    elif grid:
        raise SpecError(loc, 'grid search needs {"low", "high", "num"} or {"values": [...]}')
    return Numeric(name, low=low, high=high, num=num, log=log, integer=integer)


def _parse_categorical(name: str, raw: Any, allowed: Sequence[Any]) -> Categorical:
    loc: tuple = ("space", name)
    if isinstance(raw, (str, bool)):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise SpecError(loc, f"must be a non-empty list; allowed: {list(allowed)}")
    seen: list[Any] = []
    for i, v in enumerate(raw):
        if v not in allowed or (isinstance(v, bool) != isinstance(allowed[0], bool)):
            raise SpecError(loc + (i,), f"unknown value {v!r}; allowed: {list(allowed)}")
        if v not in seen:
            seen.append(v)
    return Categorical(name, tuple(seen))


def parse_space(raw: Any, *, grid: bool = False) -> SearchSpace:
    """Parse and validate a spec's ``space``; raises SpecError naming the field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(("space",), "must be an object")
    params = param_specs()
    known = ["lr", "optimizer", "schedule", "warmup_fraction", *params]
    for key in raw:
        if key not in known:
            raise SpecError(("space", key), f"unknown dimension; allowed: {known}")
    if "lr" not in raw:
        raise SpecError(("space", "lr"), "is required")
    dims: dict[str, Dimension] = {
        "lr": _parse_numeric("lr", raw["lr"], log=True, integer=False, low_bound=None,
                             high_bound=1e6, positive=True, grid=grid),
        "optimizer": _parse_categorical("optimizer", raw.get("optimizer", ["sgd"]), list(OPTIMIZERS)),
        "schedule": _parse_categorical("schedule", raw.get("schedule", ["constant"]), list(SCHEDULES)),
        "warmup_fraction": _parse_numeric("warmup_fraction", raw.get("warmup_fraction", {"values": [0.0]}),
                                          log=False, integer=False, low_bound=0.0, high_bound=0.9,
                                          positive=False, grid=grid),
    }
    for name, spec in params.items():
        if name not in raw:
            continue
        if spec.kind == "bool":
            dims[name] = _parse_categorical(name, raw[name], [False, True])
        else:
            dims[name] = _parse_numeric(name, raw[name], log=spec.log, integer=spec.kind == "int",
                                        low_bound=spec.low, high_bound=spec.high, positive=False, grid=grid)
    return SearchSpace(dims)
