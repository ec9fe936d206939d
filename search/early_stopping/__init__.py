"""Early stopping: ASHA, Hyperband and the median rule behind the ``EarlyStopper`` interface."""

from __future__ import annotations

from typing import Any

from search.early_stopping._asha import ASHA, rung_milestones
from search.early_stopping._hyperband import Hyperband
from search.early_stopping._median import MedianStopper
from search.early_stopping.base import Decision, EarlyStopper
from search.errors import SpecError

EARLY_STOPPERS: dict[str, type[EarlyStopper]] = {
    ASHA.kind: ASHA,
    Hyperband.kind: Hyperband,
    MedianStopper.kind: MedianStopper,
}


def parse_early_stopping(raw: dict[str, Any] | None, epochs: int) -> EarlyStopper | None:
    """Validate a spec's ``early_stopping`` and build the rule (None: no early stopping).

    Raises SpecError(("early_stopping", key), ...) naming the field and what is allowed.
    """
    if raw is None:
        return None
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
        raise SpecError(("early_stopping",), "needs epochs >= 2: a trial can only be stopped before its last "
                                             "epoch (use null with epochs 1)")
    return EARLY_STOPPERS[kind].from_spec(raw, epochs)


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
