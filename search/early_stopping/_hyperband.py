"""Hyperband: several ASHA brackets with growing grace periods (as Optuna's HyperbandPruner).

Bracket i has grace g * r^i, for every i with g * r^i <= epochs; the last one may have no rung
below the job's epochs, and then trains every trial in full, as Hyperband's most conservative
bracket does. A trial's bracket follows from its number alone, so a replay puts it in the same
bracket. Bracket i gets a share ceil(n * r^s / (s + 1)) of the trials, s = n - 1 - i (Li et al.'s
allocation, as Optuna computes it), and numbers are spread over the shares by a golden-ratio
sequence, so any run of consecutive trials meets every bracket in about those proportions.
"""

from __future__ import annotations

import math
from typing import Literal

from lrsearch.search.early_stopping._asha import ASHA, SuccessiveHalving, SuccessiveHalvingSpec
from lrsearch.search.early_stopping.base import Decision

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


class HyperbandSpec(SuccessiveHalvingSpec):
    """Hyperband: ASHA brackets with grace periods grace_epochs x reduction_factor^i, the trials spread over them."""

    kind: Literal["hyperband"]


class Hyperband(SuccessiveHalving):
    kind = "hyperband"
    spec_model = HyperbandSpec

    def __init__(self, epochs: int, grace_epochs: int = 1, reduction_factor: int = 3) -> None:
        super().__init__(epochs, grace_epochs, reduction_factor)
        graces = []
        g = grace_epochs
        while g <= epochs:
            graces.append(g)
            g *= reduction_factor
        self.brackets = [ASHA(epochs, g, reduction_factor) for g in graces]
        n = len(self.brackets)
        self.budgets = [math.ceil(n * reduction_factor ** (n - 1 - i) / (n - i)) for i in range(n)]
        self._cumulative = [sum(self.budgets[: i + 1]) for i in range(n)]

    def bracket_of(self, number: int) -> int:
        """The bracket of trial ``number``: deterministic, weighted by the brackets' budgets."""
        position = math.floor(((int(number) * _GOLDEN) % 1.0) * self._cumulative[-1])
        return next(i for i, c in enumerate(self._cumulative) if position < c)

    def decision_epochs(self, number: int) -> frozenset[int]:
        return self.brackets[self.bracket_of(number)].decision_epochs(number)

    def report(self, number: int, epoch: int, val_loss: float) -> Decision:
        return self.brackets[self.bracket_of(number)].report(number, epoch, val_loss)
