"""What kind of trial a suggested config is, as the store keeps it (``trials.kind``)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from lrsearch.search.strategies._pbt import member_of
from lrsearch.search.strategies._range_test import is_range_test


class TrialKind(StrEnum):
    """A training (a metric row per evaluation, ranked by the objective); a range test (a sweep of
    rates: a curve of points, never ranked); or a segment (part of a population member's training,
    pbt: it continues from a checkpoint and trains from its start to its stop evaluation)."""

    TRAINING = "training"
    RANGE_TEST = "range_test"
    SEGMENT = "segment"

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> TrialKind:
        if is_range_test(dict(config)):
            return cls.RANGE_TEST
        return cls.SEGMENT if member_of(config) is not None else cls.TRAINING

    @property
    def evaluates(self) -> bool:
        """Whether trials of this kind store evaluations (metric rows) and rank."""
        return self is not TrialKind.RANGE_TEST
