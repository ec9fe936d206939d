"""Early stopping: ASHA, Hyperband and the median rule behind the ``EarlyStopper`` interface."""

from __future__ import annotations

from typing import Any

from lrsearch.search.early_stopping._asha import ASHA, rung_milestones
from lrsearch.search.early_stopping._hyperband import Hyperband
from lrsearch.search.early_stopping._median import MedianStopper
from lrsearch.search.early_stopping.base import Decision, EarlyStopper
from lrsearch.search.errors import SpecError

EARLY_STOPPERS: dict[str, type[EarlyStopper]] = {
    ASHA.kind: ASHA,
    Hyperband.kind: Hyperband,
    MedianStopper.kind: MedianStopper,
}


def parse_early_stopping(raw: dict[str, Any] | None, epochs: int,
                         eval_every: int | None = None) -> EarlyStopper | None:
    """Validate a spec's ``early_stopping`` and build the rule (None: no early stopping).

    ``epochs`` is the number of evaluations a trial reports: its epochs, or in a step job (where
    ``eval_every`` is given) its evaluations. A step job's rungs are in steps: its spec says
    ``grace_steps`` (rounded up to whole evaluations) instead of ``grace_epochs``.
    Raises SpecError(("early_stopping", key), ...) naming the field and what is allowed.
    """
    if raw is None:
        return None
    if eval_every is not None and isinstance(raw, dict):
        raw = _in_evaluations(raw, eval_every)
    if not isinstance(raw, dict):
        raise SpecError(("early_stopping",), 'must be null or an object like {"kind": "asha"}')
    allowed = sorted(EARLY_STOPPERS)
    if "kind" not in raw:
        raise SpecError(("early_stopping", "kind"), f"is required; allowed: {allowed}")
    kind = raw["kind"]
    if not isinstance(kind, str) or kind not in EARLY_STOPPERS:
        raise SpecError(("early_stopping", "kind"), f"unknown kind {kind!r}; allowed: {allowed}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise SpecError(("epochs",), f"must be an integer >= 1, got {epochs!r}")
    if epochs < 2:
        raise SpecError(("early_stopping",), "needs epochs >= 2 (in a step job, steps of at least 2 x "
                                             "eval_every): a trial can only be stopped before its last "
                                             "evaluation (use null with one)")
    return EARLY_STOPPERS[kind].from_spec(raw, epochs)


def _in_evaluations(raw: dict[str, Any], eval_every: int) -> dict[str, Any]:
    """A step job's early-stopping spec with ``grace_steps`` turned into ``grace_epochs`` counted
    in evaluations (the unit the rules work in)."""
    if "grace_epochs" in raw:
        raise SpecError(("early_stopping", "grace_epochs"), "this job counts steps: give grace_steps "
                                                             f"(rounded up to a multiple of eval_every, {eval_every})")
    if "grace_steps" not in raw:
        return raw
    steps = raw["grace_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SpecError(("early_stopping", "grace_steps"), f"must be an integer >= 1, got {steps!r}")
    converted = {k: v for k, v in raw.items() if k != "grace_steps"}
    converted["grace_epochs"] = -(-steps // eval_every)
    return converted


__all__ = [
    "ASHA",
    "EARLY_STOPPERS",
    "Decision",
    "EarlyStopper",
    "Hyperband",
    "MedianStopper",
    "parse_early_stopping",
    "rung_milestones",
]
