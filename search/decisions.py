"""What happens after a trial reports an evaluation: the one place the order of the rules lives.

The runner (service/trial_lifecycle.py), the in-process replay benchmark (bench/search_replay.py)
and the test helpers all call ``decide``; none of them writes the order again.

The order: a diverged evaluation ends the trial unheard by the early-stopping rule (its loss may
be finite: it exploded); the rule hears every other evaluation that has a value, except the
trial's last (nothing is left to save); then a first evaluation that learned nothing ends it;
the last evaluation completes it; otherwise it trains on, and a worker that waits at this
evaluation (a rung of the rule) is told to resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from lrsearch.search.early_stopping.base import Decision, EarlyStopper
from lrsearch.search.strategies.base import TrialOutcome

Verdict = Literal["diverged", "pruned", "completed", "resume", "continue"]
# The verdicts that end a trial, with the status the trial gets.
ENDS: frozenset[str] = frozenset({"diverged", "pruned", "completed"})


@dataclass(frozen=True)
class Evaluation:
    """One reported evaluation of trial ``number`` (``index``: 0-based epoch or evaluation)."""

    number: int
    index: int
    score: float | None  # the objective as a score (lower is better); None: the row has none
    last: bool  # the trial's final evaluation
    diverged: bool = False
    stalled: bool = False  # a first evaluation that learned nothing (the worker measures it)
    paused: bool = False  # the worker waits here for the verdict


def decide(evaluation: Evaluation, stopper: EarlyStopper | None) -> Verdict:
    """The verdict on one evaluation; reports it to ``stopper`` when the rule is to hear it."""
    if evaluation.diverged:
        return "diverged"
    if (stopper is not None and evaluation.score is not None and not evaluation.last
            and stopper.report(evaluation.number, evaluation.index, evaluation.score) == Decision.STOP):
        return "pruned"
    if evaluation.stalled:
        return "pruned"
    if evaluation.last:
        return "completed"
    return "resume" if evaluation.paused else "continue"


def replay_curve(stopper: EarlyStopper | None, number: int, curve: Iterable[float | None]) -> None:
    """Tell ``stopper`` a stored curve again (a restart, a trial resumed from its checkpoint): the
    rule saw these evaluations before and answers the same from its state."""
    if stopper is None:
        return
    for index, score in enumerate(curve):
        if score is not None:
            stopper.report(number, index, score)


def trial_outcome(number: int, config: dict[str, Any], status: str,
                  curve: Iterable[float | None]) -> TrialOutcome:
    """A finished training as strategies hear it: its finite scores (a diverged evaluation's NaN
    or missing value is left out), their best, and how many evaluations it reported."""
    seen = list(curve)
    finite = tuple(v for v in seen if v is not None and math.isfinite(v))
    return TrialOutcome(number=number, config=config, status=status, val_loss=min(finite) if finite else None,
                        epochs=len(seen), val_losses=finite)


def range_test_outcome(number: int, config: dict[str, Any], status: str,
                       points: Iterable[tuple[float, float]]) -> TrialOutcome:
    """A finished range test as strategies hear it: its (lr, batch loss) curve, no ranking value."""
    curve = tuple(points)
    return TrialOutcome(number=number, config=config, status=status, val_loss=None, epochs=len(curve),
                        points=curve)
