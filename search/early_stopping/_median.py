"""The median stopping rule (Golovin et al., 2017; Optuna's MedianPruner).

After ``grace_epochs`` epochs, a trial stops when its best val_loss so far is worse than the
median of the other trials' best-so-far at the same epoch, once at least ``min_trials`` other
trials have reached that epoch. A NaN/inf val_loss is never recorded and answers stop.
"""

from __future__ import annotations

import statistics
from typing import Literal

from pydantic import Field

from lrsearch.search.early_stopping.base import (
    Decision,
    EarlyStopper,
    EarlyStoppingSpec,
    grace_option,
    int_option,
    is_finite,
)


class MedianSpec(EarlyStoppingSpec):
    """The median rule: after the grace period a trial stops when its best so far is worse than the
    median of the others' at the same epoch."""

    kind: Literal["median"]
    min_trials: int | None = Field(default=None, description=(
        "other trials that must have reached the epoch before the rule judges there: 1 to 10000 (default 5)"))


class MedianStopper(EarlyStopper):
    kind = "median"
    spec_model = MedianSpec

    def __init__(self, epochs: int, grace_epochs: int = 1, min_trials: int = 5) -> None:
        super().__init__(epochs)
        self.grace_epochs = grace_epochs
        self.min_trials = min_trials
        self._best: dict[int, dict[int, float]] = {}  # epochs trained -> {trial: best so far}
        self._decisions: dict[tuple[int, int], Decision] = {}
        self._last: dict[int, tuple[int, float]] = {}  # trial -> (epochs trained, best so far)

    @classmethod
    def from_spec(cls, spec: EarlyStoppingSpec, epochs: int) -> MedianStopper:
        return cls(epochs, grace_option(spec, epochs), int_option(spec, "min_trials", 5, 1, 10_000))

    def report(self, number: int, epoch: int, val_loss: float) -> Decision:
        if not is_finite(val_loss):
            return Decision.STOP
        trained = int(epoch) + 1
        key = (number, trained)
        if key in self._decisions:
            return self._decisions[key]
        best = float(val_loss)
        last = self._last.get(number)
        if last is not None and last[0] < trained:
            best = min(best, last[1])
        self._last[number] = (trained, best)
        others = [v for n, v in self._best.get(trained, {}).items() if n != number]
        self._best.setdefault(trained, {})[number] = best
        decision = Decision.CONTINUE
        if trained >= self.grace_epochs and len(others) >= self.min_trials and best > statistics.median(others):
            decision = Decision.STOP
        self._decisions[key] = decision
        return decision
