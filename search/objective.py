"""What a job ranks its trials by: one validation metric the workload reports, minimised or maximised.

Strategies and early-stopping rules minimise: they are handed the objective as a *score*, the value
itself for ``min`` and its negation for ``max``, so none of them needs to know the direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["min", "max"]
DEFAULT_METRIC = "val_loss"


@dataclass(frozen=True)
class Objective:
    metric: str = DEFAULT_METRIC
    mode: Mode = "min"

    @classmethod
    def of(cls, raw: dict[str, Any] | None) -> Objective:
        """From a stored spec's ``objective`` (None: val_loss, min)."""
        if not raw:
            return cls()
        return cls(metric=str(raw.get("metric", DEFAULT_METRIC)), mode="max" if raw.get("mode") == "max" else "min")

    @property
    def maximize(self) -> bool:
        return self.mode == "max"

    def score(self, value: Any) -> float | None:
        """``value`` as a loss to minimise; None when it is missing or not finite."""
        if value is None or isinstance(value, bool):
            return None
        number = float(value)
        if not math.isfinite(number):
            return None
        return -number if self.maximize else number

    def value(self, score: float | None) -> float | None:
        """The metric's value back from its score."""
        return None if score is None else (-score if self.maximize else score)

    def better(self, a: float, b: float) -> bool:
        """True when value ``a`` is strictly better than value ``b``."""
        return a > b if self.maximize else a < b
