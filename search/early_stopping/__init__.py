"""Early stopping: ASHA, Hyperband and the median rule behind the ``EarlyStopper`` interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError, WrapValidator

from lrsearch.search.early_stopping._asha import ASHA, AshaSpec, rung_milestones
from lrsearch.search.early_stopping._hyperband import Hyperband, HyperbandSpec
from lrsearch.search.early_stopping._median import MedianSpec, MedianStopper
from lrsearch.search.early_stopping.base import Decision, EarlyStopper, EarlyStoppingSpec
from lrsearch.search.errors import SpecError, SpecErrors, spec_errors
from lrsearch.search.spec_model import invalid

EARLY_STOPPERS: dict[str, type[EarlyStopper]] = {
    ASHA.kind: ASHA,
    Hyperband.kind: Hyperband,
    MedianStopper.kind: MedianStopper,
}


def _by_its_kind(raw: Any, _union: Any) -> EarlyStoppingSpec:
    """Validate with the model of the object's kind: an error then names the field, where the union
    would put its member's tag in the path."""
    if isinstance(raw, EarlyStoppingSpec):
        return raw
    if not isinstance(raw, dict):
        raise invalid("early_stopping", [((), "model_type", f"must be {EarlyStoppingSpec.shape}", raw)])
    allowed = sorted(EARLY_STOPPERS)
    if "kind" not in raw:
        raise invalid("early_stopping", [(("kind",), "missing", f"is required; allowed: {allowed}", raw)])
    kind = raw["kind"]
    if not isinstance(kind, str) or kind not in EARLY_STOPPERS:
        raise invalid("early_stopping", [(("kind",), "union_tag_invalid", f"unknown kind {kind!r}; allowed: {allowed}",
                                          kind)])
    return EARLY_STOPPERS[kind].spec_model.model_validate(raw)


# A spec's ``early_stopping`` object: the schema shows one member per rule, told apart by ``kind``.
if TYPE_CHECKING:  # the union is built at run time; to the checker it is what each member is
    AnyEarlyStoppingSpec = EarlyStoppingSpec
else:
    AnyEarlyStoppingSpec = Annotated[
        Union[tuple(rule.spec_model for rule in EARLY_STOPPERS.values())],  # noqa: UP007 - a union built from the registry at import time
        Field(discriminator="kind"),
        WrapValidator(_by_its_kind),
    ]
_ANY_SPEC: TypeAdapter[EarlyStoppingSpec] = TypeAdapter(AnyEarlyStoppingSpec)


def parse_early_stopping(raw: EarlyStoppingSpec | dict[str, Any] | None, epochs: int,
                         eval_every: int | None = None) -> EarlyStopper | None:
    """Validate a spec's ``early_stopping`` (an EarlyStoppingSpec or its JSON) and build the rule
    (None: no early stopping).

    ``epochs`` is the number of evaluations a trial reports: its epochs, or in a step job (where
    ``eval_every`` is given) its evaluations. A step job's rungs are in steps: its spec says
    ``grace_steps`` (rounded up to whole evaluations) instead of ``grace_epochs``.
    Raises SpecError(("early_stopping", key), ...) naming the field and what is allowed.
    """
    if raw is None:
        return None
    try:
        spec = _ANY_SPEC.validate_python(raw)
    except ValidationError as exc:
        raise SpecErrors(spec_errors(exc, ("early_stopping",))) from None
    spec = _in_evaluations(spec, eval_every)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise SpecError(("epochs",), f"must be an integer >= 1, got {epochs!r}")
    if epochs < 2:
        raise SpecError(("early_stopping",), "needs epochs >= 2 (in a step job, steps of at least 2 x "
                                             "eval_every): a trial can only be stopped before its last "
                                             "evaluation (use null with one)")
    return EARLY_STOPPERS[spec.kind].from_spec(spec, epochs)


def _in_evaluations(spec: EarlyStoppingSpec, eval_every: int | None) -> EarlyStoppingSpec:
    """The grace period counted in evaluations (the unit the rules work in): a step job's
    ``grace_steps`` rounded up to whole evaluations; an epoch job's ``grace_epochs`` as it is."""
    if eval_every is None:
        if spec.grace_steps is not None:
            raise SpecError(("early_stopping", "grace_steps"), "this job counts epochs: give grace_epochs")
        return spec
    if spec.grace_epochs is not None:
        raise SpecError(("early_stopping", "grace_epochs"), "this job counts steps: give grace_steps "
                                                             f"(rounded up to a multiple of eval_every, {eval_every})")
    if spec.grace_steps is None:
        return spec
    steps = spec.grace_steps
    if steps < 1:
        raise SpecError(("early_stopping", "grace_steps"), f"must be an integer >= 1, got {steps!r}")
    return spec.model_copy(update={"grace_steps": None, "grace_epochs": -(-steps // eval_every)})


__all__ = [
    "ASHA",
    "EARLY_STOPPERS",
    "AnyEarlyStoppingSpec",
    "AshaSpec",
    "Decision",
    "EarlyStopper",
    "EarlyStoppingSpec",
    "Hyperband",
    "HyperbandSpec",
    "MedianSpec",
    "MedianStopper",
    "parse_early_stopping",
    "rung_milestones",
]
