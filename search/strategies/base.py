"""The strategy interface: a strategy answers ``suggest()`` and learns from ``observe()``.

The service numbers trials 0, 1, 2, ... in the order ``suggest()`` returns candidates, and
saves ``state_dict()`` (JSON) after each suggestion. On resume it builds a fresh strategy,
calls ``load_state_dict()`` and replays ``observe()`` for every finished trial from the store.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from pydantic import ValidationError

from lrsearch.search.early_stopping import EarlyStoppingSpec
from lrsearch.search.errors import SpecErrors, spec_errors
from lrsearch.search.space import SearchSpace
from lrsearch.search.spec_model import SpecPart


@dataclass(frozen=True)
class StrategySpec:
    """What a strategy needs from a JobSpec (no service objects)."""

    space: SearchSpace | None
    epochs: int
    seed: int = 0
    max_trials: int | None = None
    configs: tuple[dict[str, Any], ...] = ()  # manual
    options: dict[str, Any] = field(default_factory=dict)
    # A step job's evaluations are this many schedule units (steps) apart; None in an epoch job.
    eval_every: int | None = None


@dataclass(frozen=True)
class TrialOutcome:
    """A finished trial as the store knows it."""

    number: int
    config: dict[str, Any]
    status: str  # completed | pruned | diverged | failed | cancelled
    val_loss: float | None  # best validation loss reached, None if none was reported
    epochs: int  # epochs actually trained
    val_losses: tuple[float, ...] = ()  # per epoch, for strategies that learn from curves
    # A range-test trial's curve: (lr, batch loss) per step. Empty for training trials.
    points: tuple[tuple[float, float], ...] = ()


class _Wait:
    """``suggest()``'s answer while the next candidate depends on trials still running."""

    def __repr__(self) -> str:
        return "WAIT"


WAIT: Final = _Wait()


class StrategyOptions(SpecPart):
    """A strategy's ``options``; a strategy without a model of its own takes none."""

    key_name: ClassVar[str] = "option"


class Strategy(ABC):
    """One search algorithm. Subclasses live in one private module each.

    Besides suggest() and observe(), a strategy says what its spec holds and what its jobs show, so
    that the service checks and completes a spec without knowing strategies by name."""

    name: ClassVar[str]
    # What the API and the dashboard show of this strategy's jobs beyond trials and their curves:
    # "range_tests" (GET /jobs/{id}/range_test: the tests' curves and suggestions).
    views: ClassVar[tuple[str, ...]] = ()
    options_model: ClassVar[type[StrategyOptions]] = StrategyOptions
    # It runs a list of user-written ``configs`` instead of searching a ``space``.
    takes_configs: ClassVar[bool] = False
    # Its space's dimensions are grid axes: a range needs ``num`` points, and the product is capped.
    grid: ClassVar[bool] = False
    # Dimensions a spec's space may leave out, with the value they then take.
    default_space: ClassVar[Mapping[str, Any]] = {}
    # Its budget when the spec gives no max_trials; None: it runs what it plans, whatever that is.
    default_max_trials: ClassVar[int | None] = 20
    # The early stopping a spec without one gets (when its trials evaluate more than once).
    default_early_stopping: ClassVar[EarlyStoppingSpec | None] = None

    def __init__(self, spec: StrategySpec) -> None:
        self.spec = spec
        self.options = self.validate_options(spec.options)

    @classmethod
    def validate_options(cls, options: Mapping[str, Any] | StrategyOptions | None) -> dict[str, Any]:
        """Check a spec's ``options`` with this strategy's model; returns them with their defaults
        (optional ones left unset are left out).

        Raises SpecError(("options", key), ...) naming the field and what is allowed.
        """
        try:
            model = cls.options_model.model_validate({} if options is None else options)
        except ValidationError as exc:
            raise SpecErrors(spec_errors(exc, ("options",))) from None
        return {key: value for key, value in model if value is not None}

    def check_budget(self, max_trials: int) -> None:  # noqa: B027 - most strategies take any budget
        """SpecError when ``max_trials`` would cut short what this strategy runs whole (a grid, a
        list of configs): a new job is refused then. Others take any budget."""

    @abstractmethod
    def suggest(self) -> dict[str, Any] | None | _Wait:
        """The next candidate's complete config, None when the strategy has no more, or ``WAIT``
        when the next one depends on trials still running (ask again once one has finished)."""

    def observe(self, outcome: TrialOutcome) -> None:  # noqa: B027 - optional: model-free strategies ignore it
        """Learn from a finished trial. Model-free strategies ignore it."""

    def total(self) -> int | None:
        """How many trials the job will run, when known in advance."""
        return self.spec.max_trials

    @classmethod
    def replay(cls, configs: Mapping[int, Mapping[str, Any]], number: int,
               unit: int = 1) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """A config that trains trial ``number``'s result again from scratch, and the path that led
        there (``configs``: every trial's config by number; ``unit``: schedule units per evaluation).
        None when the trial's own config does that, as for every strategy that fixes a config
        before training."""
        return None

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state that, with the replayed outcomes, restores the strategy."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def config_key(config: dict[str, Any]) -> str:
    """A canonical key for duplicate detection (floats rounded to 12 significant digits)."""

    def norm(v: Any) -> Any:
        if isinstance(v, float) and math.isfinite(v):
            return float(f"{v:.12g}")
        return v

    return json.dumps({k: norm(v) for k, v in sorted(config.items())}, sort_keys=True)
