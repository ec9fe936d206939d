"""The vocabulary shared by search/ and workers/: optimizer and schedule names and their parameters.

Pure data. search/ samples these parameters; workers/ builds torch objects from them.
Defaults that depend on the job's length are functions of ``epochs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

ParamKind = Literal["float", "int", "bool"]


@dataclass(frozen=True)
class ParamSpec:
    """One tunable parameter of an optimizer or a schedule."""

    name: str
    kind: ParamKind
    low: float | None  # inclusive bounds a user value must respect (None: unbounded)
    high: float | None
    default: Callable[[int], float | int | bool]  # epochs -> default value
    log: bool = False  # sampled log-uniformly when given as {"low", "high"}
    doc: str = ""


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
    return round(0.1 ** (1.0 / max(1, epochs)), 6)


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
}

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


def complete_config(config: dict, epochs: int) -> dict:
    """Fill the defaults of the chosen optimizer and schedule; drop parameters that do not apply."""
    optimizer, schedule = config["optimizer"], config["schedule"]
    out = {
        "lr": float(config["lr"]),
        "optimizer": optimizer,
        "schedule": schedule,
        "warmup_fraction": float(config.get("warmup_fraction", 0.0)),
    }
    for p in relevant_params(optimizer, schedule):
        value = config.get(p.name, p.default(epochs))
        if p.kind == "int":
            value = int(value)
        elif p.kind == "bool":
            value = bool(value)
        else:
            value = float(value)
        out[p.name] = value
    return out
