"""Reading a trial's config against the shared catalog (search/catalog.py): names, defaults, bounds.

No torch here: optimizers.py and schedules.py build torch objects from what this returns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lrsearch.search.catalog import OPTIMIZERS, SCHEDULES, ParamSpec, ParamValue, check_lr_points, relevant_params


def validate(config: Mapping[str, Any], epochs: int) -> None:
    """ValueError naming the first thing wrong with a trial's config, if anything is."""
    specs = relevant_params(optimizer_name(config), schedule_name(config))
    base_lr(config)
    warmup_fraction(config)
    resolve(specs, config, epochs)


def base_lr(config: Mapping[str, Any]) -> float:
    """The trial's base learning rate: finite and positive, or ValueError."""
    try:
        lr = float(config["lr"])
    except KeyError:
        raise ValueError("config has no 'lr'") from None
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be finite and positive, got {lr!r}")
    return lr


def optimizer_name(config: Mapping[str, Any]) -> str:
    return _known_name(config, "optimizer", OPTIMIZERS)


def schedule_name(config: Mapping[str, Any]) -> str:
    return _known_name(config, "schedule", SCHEDULES)


def warmup_fraction(config: Mapping[str, Any]) -> float:
    value = float(config.get("warmup_fraction", 0.0) or 0.0)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1], got {value!r}")
    return value


def resolve(specs: tuple[ParamSpec, ...], config: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    """The values of ``specs`` in ``config``, catalog defaults where absent, cast and bound-checked."""
    out: dict[str, Any] = {}
    for spec in specs:
        value = config.get(spec.name)
        if value is None:
            value = spec.default_for(epochs)
        out[spec.name] = _cast(spec, value)
    return out


def _cast(spec: ParamSpec, value: Any) -> ParamValue:
    if spec.kind == "points":
        return check_lr_points(value, (spec.name,))
    if spec.kind == "bool":
        # bool("false") is True: accept only real booleans (or 0/1) rather than guess.
        if value not in (True, False):
            raise ValueError(f"{spec.name} must be a boolean, got {value!r}")
        return bool(value)
    number: float | int = int(value) if spec.kind == "int" else float(value)
    if spec.kind == "int" and number != float(value):
        raise ValueError(f"{spec.name} must be an integer, got {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"{spec.name} must be finite, got {value!r}")
    if (spec.low is not None and number < spec.low) or (spec.high is not None and number > spec.high):
        raise ValueError(f"{spec.name} must be in [{spec.low}, {spec.high}], got {value!r}")
    return number


def _known_name(config: Mapping[str, Any], key: str, known: Mapping[str, object]) -> str:
    name = config.get(key)
    if name not in known:
        raise ValueError(f"unknown {key} {name!r}; known: {', '.join(known)}")
    return str(name)  # one of known's keys
