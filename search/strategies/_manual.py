"""Manual search: exactly the configs the user listed, in that order."""

from __future__ import annotations

from typing import Any

from lrsearch.search.catalog import (
    OPTIMIZERS,
    SCHEDULES,
    check_lr_points,
    complete_config,
    relevant_params,
    required_params,
)
from lrsearch.search.errors import Loc, SpecError, is_finite_number, raise_all
from lrsearch.search.strategies.base import Strategy, StrategySpec


def _short(value: Any) -> str:
    """A value for an error message: a 5,000-digit integer should not fill the answer."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_manual_config(index: int, raw: Any, epochs: int) -> dict[str, Any]:
    """Check one user-written config and complete it with defaults; SpecError names the field."""
    loc: Loc = ("configs", index)
    if not isinstance(raw, dict):
        raise SpecError(loc, "must be an object with at least lr")
    if "lr" not in raw:
        raise SpecError(loc + ("lr",), "is required")
    lr = raw["lr"]
    if not is_finite_number(lr) or lr <= 0:
        raise SpecError(loc + ("lr",), f"must be a finite number > 0, got {_short(lr)}")
    if lr > 1e6:
        raise SpecError(loc + ("lr",), "must be <= 1000000.0")
    optimizer = raw.get("optimizer", "sgd")
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise SpecError(loc + ("optimizer",), f"unknown optimizer {optimizer!r}; allowed: {list(OPTIMIZERS)}")
    schedule = raw.get("schedule", "constant")
    if not isinstance(schedule, str) or schedule not in SCHEDULES:
        raise SpecError(loc + ("schedule",), f"unknown schedule {schedule!r}; allowed: {list(SCHEDULES)}")
    warmup = raw.get("warmup_fraction", 0.0)
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0.0 <= warmup <= 0.9:
        raise SpecError(loc + ("warmup_fraction",), f"must be a number in [0, 0.9], got {warmup!r}")
    params = {p.name: p for p in relevant_params(optimizer, schedule)}
    for key, value in raw.items():
        if key in ("lr", "optimizer", "schedule", "warmup_fraction"):
            continue
        if key not in params:
            raise SpecError(loc + (key,), f"not a parameter of {optimizer}/{schedule}; allowed: {sorted(params)}")
        p = params[key]
        if p.kind == "points":
            check_lr_points(value, loc + (key,))
            continue
        if p.kind == "bool":
            if not isinstance(value, bool):
                raise SpecError(loc + (key,), "must be true or false")
            continue
        if not is_finite_number(value):
            raise SpecError(loc + (key,), f"must be a finite number, got {_short(value)}")
        if p.kind == "int" and value != int(value):
            raise SpecError(loc + (key,), "must be an integer")
        if (p.low is not None and value < p.low) or (p.high is not None and value > p.high):
            raise SpecError(loc + (key,), f"must be in [{p.low}, {p.high}], got {value!r}")
    for p in required_params(schedule):
        if p.name not in raw:
            raise SpecError(loc + (p.name,), f"is required for the {schedule} schedule: {p.doc}")
    return complete_config({**raw, "optimizer": optimizer, "schedule": schedule,
                            "warmup_fraction": warmup}, epochs)


class ManualStrategy(Strategy):
    name = "manual"
    takes_configs = True
    default_max_trials = None  # every config

    def __init__(self, spec: StrategySpec) -> None:
        super().__init__(spec)
        configs, errors = [], []
        for i, raw in enumerate(spec.configs):
            try:
                configs.append(validate_manual_config(i, raw, spec.epochs))
            except SpecError as exc:
                errors.append(exc)
        raise_all(errors)
        self.size = len(configs)
        self._configs = configs if spec.max_trials is None else configs[: spec.max_trials]
        self._next = 0

    def check_budget(self, max_trials: int) -> None:
        if max_trials < self.size:
            # Manual means exactly these trials: cutting the list short would drop configs unseen.
            raise SpecError(("max_trials",), f"is {max_trials} but configs lists {self.size}; "
                                             "manual search runs every config (omit max_trials)")

    def suggest(self) -> dict[str, Any] | None:
        if self._next >= len(self._configs):
            return None
        self._next += 1
        return dict(self._configs[self._next - 1])

    def total(self) -> int:
        return len(self._configs)

    def state_dict(self) -> dict[str, Any]:
        return {"next": self._next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._next = int(state.get("next", 0))
