"""The vocabulary shared by search/ and workers/: optimizer and schedule names and their parameters.

Pure data. search/ samples these parameters; workers/ builds torch objects from them.
Defaults that depend on the job's length are functions of ``epochs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lrsearch.search.errors import Loc, SpecError, is_finite_number

# "points": a list of [at, lr] pairs (piecewise's lr_points), never sampled: a space gives it whole.
ParamKind = Literal["float", "int", "bool", "points"]
LRPoints = list[list[float]]  # [[at, lr], ...]: at a whole number (held as an int), lr a rate
ParamValue = float | int | bool | LRPoints


@dataclass(frozen=True)
class ParamSpec:
    """One tunable parameter of an optimizer or a schedule."""

    name: str
    kind: ParamKind
    low: float | None  # inclusive bounds a user value must respect (None: unbounded)
    high: float | None
    default: Callable[[int], ParamValue] | None  # epochs -> default value; None: required, no default
    log: bool = False  # sampled log-uniformly when given as {"low", "high"}
    doc: str = ""

    def default_for(self, epochs: int) -> ParamValue:
        """The default for a job of ``epochs``; ValueError for a parameter a config must give."""
        if self.default is None:
            raise ValueError(f"{self.name} is required (no default): {self.doc}")
        return self.default(epochs)


def _const(value: float | int | bool) -> Callable[[int], float | int | bool]:
    return lambda _epochs: value


OPTIMIZERS: dict[str, tuple[ParamSpec, ...]] = {
    "sgd": (
        ParamSpec("momentum", "float", 0.0, 0.999, _const(0.9), doc="SGD momentum"),
        ParamSpec("nesterov", "bool", None, None, _const(False), doc="Nesterov momentum"),
        ParamSpec("weight_decay", "float", 0.0, 1.0, _const(0.0), doc="L2 penalty"),
    ),
    "adam": (ParamSpec("weight_decay", "float", 0.0, 1.0, _const(0.0), doc="L2 penalty"),),
    "adamw": (ParamSpec("weight_decay", "float", 0.0, 1.0, _const(0.01), doc="decoupled weight decay"),),
    "rmsprop": (
        ParamSpec("momentum", "float", 0.0, 0.999, _const(0.0), doc="RMSProp momentum"),
        ParamSpec("alpha", "float", 0.5, 0.9999, _const(0.99), doc="smoothing constant"),
        ParamSpec("weight_decay", "float", 0.0, 1.0, _const(0.0), doc="L2 penalty"),
    ),
    "adagrad": (ParamSpec("weight_decay", "float", 0.0, 1.0, _const(0.0), doc="L2 penalty"),),
}


def _step_size(epochs: int) -> int:
    # Decay at about a third and two thirds of the run, so even short jobs decay at least once.
    return max(1, math.ceil(epochs / 3))


def _exp_gamma(epochs: int) -> float:
    # Over the whole run the rate falls by 10x, whatever the job's length.
    return round(float(0.1 ** (1.0 / max(1, epochs))), 6)


SCHEDULES: dict[str, tuple[ParamSpec, ...]] = {
    "constant": (),
    "step": (
        ParamSpec("step_size", "int", 1, 100_000, _step_size, doc="epochs between decays"),
        ParamSpec("gamma", "float", 1e-6, 1.0, _const(0.1), doc="factor applied at each decay"),
    ),
    "exponential": (
        ParamSpec("gamma", "float", 1e-6, 1.0, _exp_gamma, doc="factor applied each epoch"),
    ),
    "cosine": (
        ParamSpec("eta_min", "float", 0.0, 1e6, _const(0.0), doc="rate reached at the end of the run"),
    ),
    "onecycle": (
        ParamSpec("pct_start", "float", 0.01, 0.99, _const(0.3), doc="fraction of steps spent rising"),
    ),
    "piecewise": (
        ParamSpec("lr_points", "points", None, None, None, doc=(
            "[[at, lr], ...]: the rate lr from each point's at (epochs, or steps in a step job) to the "
            "next point's, the first at 0")),
    ),
}

MAX_LR_POINTS = 10_000

# Parameters that every candidate carries.
COMMON_KEYS = ("lr", "optimizer", "schedule", "warmup_fraction")


def param_specs() -> dict[str, ParamSpec]:
    """Every optimizer/schedule parameter by name (a name shared by two owners has one spec)."""
    out: dict[str, ParamSpec] = {}
    for group in (OPTIMIZERS, SCHEDULES):
        for params in group.values():
            for p in params:
                out.setdefault(p.name, p)
    return out


def relevant_params(optimizer: str, schedule: str) -> tuple[ParamSpec, ...]:
    """The parameters a candidate with this optimizer and schedule carries."""
    return OPTIMIZERS[optimizer] + SCHEDULES[schedule]


def required_params(schedule: str) -> tuple[ParamSpec, ...]:
    """The schedule's parameters without a default (piecewise's lr_points): a config naming the
    schedule must give them, and so must a space offering it (a search never invents them)."""
    return tuple(p for p in SCHEDULES[schedule] if p.default is None)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_lr_points(value: object, loc: Loc = ("lr_points",)) -> LRPoints:
    """``value`` as piecewise's ``lr_points``: a new list of ``[at, lr]`` with ``at`` an int, or
    SpecError at ``loc`` (plus the point's index, and 0 for its at or 1 for its lr).

    ``at`` is a whole number >= 0 in the schedule's unit (epochs, or steps in a step job), the first
    0 and each greater than the one before; ``lr`` an absolute rate, finite, > 0 and <= 1e6."""
    if not isinstance(value, (list, tuple)) or not value:
        raise SpecError(loc, "must be a non-empty list of [at, lr] points, e.g. [[0, 0.1], [5, 0.01]]; "
                             f"got {_short(value)}")
    if len(value) > MAX_LR_POINTS:
        raise SpecError(loc, f"at most {MAX_LR_POINTS} points, got {len(value)}")
    out: LRPoints = []
    for i, point in enumerate(value):
        if not isinstance(point, (list, tuple)) or len(point) != 2:
            raise SpecError(loc + (i,), f"must be a pair [at, lr], got {_short(point)}")
        at, lr = point
        if not is_finite_number(at) or at < 0 or at != int(at):
            raise SpecError(loc + (i, 0), "must be a whole number >= 0: the epoch (in a step job, the step) "
                                          f"the point's rate starts at; got {_short(at)}")
        at = int(at)
        if i == 0 and at != 0:
            raise SpecError(loc + (0, 0), f"the first point must be at 0 (the rate from the start), got {at}")
        if out and at <= out[-1][0]:
            raise SpecError(loc + (i, 0), f"must be greater than the previous point's at ({int(out[-1][0])}): "
                                          f"points in strictly increasing order, got {at}")
        if not is_finite_number(lr) or lr <= 0 or lr > 1e6:
            raise SpecError(loc + (i, 1), f"must be a finite rate > 0 and <= 1000000.0, got {_short(lr)}")
        out.append([at, float(lr)])
    return out


def complete_config(config: dict[str, Any], epochs: int) -> dict[str, Any]:
    """Fill the defaults of the chosen optimizer and schedule; drop parameters that do not apply."""
    optimizer, schedule = config["optimizer"], config["schedule"]
    out = {
        "lr": float(config["lr"]),
        "optimizer": optimizer,
        "schedule": schedule,
        "warmup_fraction": float(config.get("warmup_fraction", 0.0)),
    }
    for p in relevant_params(optimizer, schedule):
        value: Any = config[p.name] if p.name in config else p.default_for(epochs)  # JSON, cast below
        if p.kind == "points":
            value = check_lr_points(value)
        elif p.kind == "int":
            value = int(value)
        elif p.kind == "bool":
            value = bool(value)
        else:
            value = float(value)
        out[p.name] = value
    return out
