"""The search space: the learning rate, the optimizer, the schedule, warmup and their parameters.

A spec's ``space`` is JSON, its shape the SpaceSpec model (what the OpenAPI schema shows). Numeric
dimensions are ``{"low", "high"}`` (log-uniform for ``lr`` and for parameters marked ``log``,
uniform otherwise), ``{"values": [...]}``, or for grids ``{"low", "high", "num"}`` (log-spaced for
``lr``, linear otherwise). Categorical dimensions (``optimizer``, ``schedule``, ``nesterov``) are
lists. A single value stands for a list of it (``"optimizer": "adam"``, ``"momentum": 0.9``).
``lr_points`` (piecewise's ``[[at, lr], ...]``) is one fixed value, never sampled: a space offering
piecewise must give it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, cast

from pydantic import Field, PrivateAttr, ValidationError, WithJsonSchema, create_model, model_validator

from lrsearch.search.catalog import OPTIMIZERS, SCHEDULES, ParamSpec, check_lr_points, param_specs, required_params
from lrsearch.search.errors import Loc, SpecError, SpecErrors, is_finite_number, raise_all, spec_errors
from lrsearch.search.spec_model import Flag, Number, SpecPart

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
        return cast(Categorical, self.dims["optimizer"]).choices  # parse_space makes it categorical

    @property
    def schedules(self) -> tuple[str, ...]:
        return cast(Categorical, self.dims["schedule"]).choices  # parse_space makes it categorical

    def contains(self, config: dict[str, Any]) -> bool:
        """Whether a candidate lies in the space (parameters not in the space are free)."""
        return all(dim.contains(config[name]) for name, dim in self.dims.items() if name in config)

    def grid_size(self) -> int:
        return math.prod(len(d.grid_points()) for d in self.dims.values())

    @property
    def continuous(self) -> bool:
        """Whether a dimension is a real range: random draws from it practically never repeat."""
        return any(isinstance(d, Numeric) and d.values is None and not d.integer for d in self.dims.values())


# -- the shape: what a user may send -----------------------------------------------------------------

class NumericSpec(SpecPart):
    """A numeric dimension: a range ``{"low", "high"}`` to sample (log-uniformly for lr and for log
    parameters), explicit ``{"values": [...]}``, or for grid search ``{"low", "high", "num"}``."""

    shape: ClassVar[str] = '{"low": a, "high": b} or {"values": [...]} (grid: {"low": a, "high": b, "num": k})'

    low: Number | None = Field(default=None, description="the lowest value (inclusive); with high")
    high: Number | None = Field(default=None, description="the highest value (inclusive); above low")
    num: int | None = Field(default=None, description=(
        f"grid search only: this many points from low to high, 1 to {MAX_GRID_NUM} (log-spaced for lr, "
        "linear otherwise)"))
    values: list[Number] | None = Field(default=None, description=(
        f"these values (at most {MAX_GRID_NUM}) instead of a range"))


def _names(names: Sequence[str]) -> Any:
    # The schema lists the names; parse_space checks them, with a message that lists them too.
    return Annotated[str, WithJsonSchema({"type": "string", "enum": list(names)})]


class _SpaceBase(SpecPart):
    """The search space: a dimension per name. Only lr is required (range_test and auto default it
    to 1e-7..10); optimizer defaults to ["sgd"], schedule to ["constant"], warmup_fraction to 0.
    A single value stands for a list of it: "optimizer": "adam", "momentum": 0.9."""

    key_name: ClassVar[str] = "dimension"

    lr: NumericSpec | None = Field(default=None, description=(
        "the base learning rate, > 0 and at most 1e6; sampled log-uniformly from a range"))
    optimizer: list[_names(list(OPTIMIZERS))] | None = Field(  # type: ignore[valid-type]  # a Literal of the catalog's names
        default=None, description="optimizers to try (default [\"sgd\"])")
    schedule: list[_names(list(SCHEDULES))] | None = Field(  # type: ignore[valid-type]  # a Literal of the catalog's names
        default=None, description="learning-rate schedules to try (default [\"constant\"])")
    warmup_fraction: NumericSpec | None = Field(default=None, description=(
        "the fraction of the training steps over which the rate rises linearly from 0, in [0, 0.9] (default 0)"))

    # A single value as the user sent it, by dimension: stored back in that shape.
    _single: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _single_values(cls, raw: Any, handler: Any) -> Any:
        if not isinstance(raw, dict):
            return handler(raw)
        single = {k: v for k, v in raw.items() if isinstance(v, (str, bool, int, float))}
        space = handler({k: _as_list(single[k]) if k in single else v for k, v in raw.items()})
        space._single = single
        return space

    def _sent_value(self, key: str, value: Any) -> Any:
        return self._single.get(key, value)


def _as_list(value: str | bool | int | float) -> Any:
    # A name or a flag is a one-element list; a number, the values {"values": [it]}.
    return [value] if isinstance(value, (str, bool)) else {"values": [value]}


def _param_field(p: ParamSpec) -> tuple[Any, Any]:
    owners = [o for o, params in OPTIMIZERS.items() if p in params] + [
        s for s, params in SCHEDULES.items() if p in params]
    where = f"{p.doc}, for {', '.join(owners)}"
    if p.kind == "points":
        return list[list[Number]] | None, Field(default=None, description=(
            f"{where}: one fixed list, never sampled; required when schedule offers {', '.join(owners)}"))
    if p.kind == "bool":
        return list[Flag] | None, Field(default=None, description=f"{where}: true, false or both")
    kind = "an integer" if p.kind == "int" else "a number"
    scale = "; a range is sampled log-uniformly" if p.log else ""
    return NumericSpec | None, Field(default=None, description=f"{where}: {kind} in [{p.low}, {p.high}]{scale}")


SpaceSpec = create_model(  # the catalog's parameters are dimensions too, each described from it
    "SpaceSpec", __base__=_SpaceBase, __module__=__name__,
    **{name: _param_field(p) for name, p in param_specs().items()},  # type: ignore[call-overload]  # fields from a dict
)
SpaceSpec.__doc__ = _SpaceBase.__doc__


# -- the values -----------------------------------------------------------------------------------------

def _finite_number(loc: Loc, value: Any) -> float:
    if not is_finite_number(value):
        raise SpecError(loc, "must be finite (and within a float's range)")
    return float(value)


def _check_bounds(loc: Loc, value: float, low: float | None, high: float | None, positive: bool) -> None:
    if positive and value <= 0:
        raise SpecError(loc, f"must be > 0, got {value!r}")
    if low is not None and value < low:
        raise SpecError(loc, f"must be >= {low}, got {value!r}")
    if high is not None and value > high:
        raise SpecError(loc, f"must be <= {high}, got {value!r}")


def _parse_numeric(
    name: str,
    raw: NumericSpec,
    *,
    log: bool,
    integer: bool,
    low_bound: float | None,
    high_bound: float | None,
    positive: bool,
    grid: bool,
) -> Numeric:
    loc: Loc = ("space", name)
    given = raw.as_sent()
    if "values" in given:
        if extra := sorted(set(given) - {"values"}):
            raise SpecError(loc + (extra[0],), "not allowed with values: give values, or low and high")
        values = given["values"]
        if not values:
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
        if key not in given:
            raise SpecError(loc + (key,), "is required")
    low = _finite_number(loc + ("low",), given["low"])
    high = _finite_number(loc + ("high",), given["high"])
    _check_bounds(loc + ("low",), low, low_bound, high_bound, positive)
    _check_bounds(loc + ("high",), high, low_bound, high_bound, positive)
    if integer:
        for key, x in (("low", low), ("high", high)):
            if x != int(x):
                raise SpecError(loc + (key,), f"must be an integer, got {given[key]!r}")
    if low >= high:
        raise SpecError(loc + ("low",), f"low ({low}) must be < high ({high})")
    if log and low <= 0:
        raise SpecError(loc + ("low",), "must be > 0 (sampled on a log scale)")
    num = given.get("num")
    if num is not None:
        if not grid:
            raise SpecError(loc + ("num",), "only grid search takes num")
        if not 1 <= num <= MAX_GRID_NUM:
            raise SpecError(loc + ("num",), f"must be an integer in [1, {MAX_GRID_NUM}]")
    elif grid:
        raise SpecError(loc, 'grid search needs {"low", "high", "num"} or {"values": [...]}')
    return Numeric(name, low=low, high=high, num=num, log=log, integer=integer)


def _parse_points(name: str, raw: list[Any]) -> Categorical:
    # One fixed value: a search takes the points as given and never invents others.
    return Categorical(name, (check_lr_points(raw, ("space", name)),))


def _parse_categorical(name: str, raw: list[Any], allowed: Sequence[Any]) -> Categorical:
    loc: Loc = ("space", name)
    if not raw:
        raise SpecError(loc, f"must be a non-empty list; allowed: {list(allowed)}")
    seen: list[Any] = []
    for i, v in enumerate(raw):
        if v not in allowed:
            raise SpecError(loc + (i,), f"unknown value {v!r}; allowed: {list(allowed)}")
        if v not in seen:
            seen.append(v)
    return Categorical(name, tuple(seen))


def parse_space(raw: Any, *, grid: bool = False) -> SearchSpace:
    """Parse and validate a spec's ``space`` (a SpaceSpec, or its JSON): its shape, then each
    dimension's values. Raises SpecError naming the field, SpecErrors when several are wrong."""
    try:
        spec = SpaceSpec.model_validate({} if raw is None else raw)
    except ValidationError as exc:
        raise SpecErrors(spec_errors(exc, ("space",))) from None
    errors: list[SpecError] = []
    dims: dict[str, Dimension] = {}

    def parse(name: str, value: Any, default: Any, parser: Any, **how: Any) -> None:
        try:
            dims[name] = parser(name, default if value is None else value, **how)
        except SpecError as exc:
            errors.append(exc)

    if spec.lr is None:
        errors.append(SpecError(("space", "lr"), "is required"))
    else:
        parse("lr", spec.lr, None, _parse_numeric, log=True, integer=False, low_bound=None, high_bound=1e6,
              positive=True, grid=grid)
    parse("optimizer", spec.optimizer, ["sgd"], _parse_categorical, allowed=list(OPTIMIZERS))
    parse("schedule", spec.schedule, ["constant"], _parse_categorical, allowed=list(SCHEDULES))
    parse("warmup_fraction", spec.warmup_fraction, NumericSpec(values=[0.0]), _parse_numeric, log=False,
          integer=False, low_bound=0.0, high_bound=0.9, positive=False, grid=grid)
    for name, p in param_specs().items():
        value = getattr(spec, name)
        if value is None:
            continue
        if p.kind == "points":
            parse(name, value, None, _parse_points)
        elif p.kind == "bool":
            parse(name, value, None, _parse_categorical, allowed=[False, True])
        else:
            parse(name, value, None, _parse_numeric, log=p.log, integer=p.kind == "int", low_bound=p.low,
                  high_bound=p.high, positive=False, grid=grid)
    schedules = dims.get("schedule")
    for schedule in schedules.choices if isinstance(schedules, Categorical) else ():
        for p in required_params(schedule):
            if getattr(spec, p.name) is None:
                errors.append(SpecError(("space", p.name), f"is required when schedule offers {schedule}: a "
                                                           f"search never invents it ({p.doc})"))
    raise_all(errors)
    return SearchSpace(dims)
