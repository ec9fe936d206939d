"""The strategy interface: a strategy answers ``suggest()`` and learns from ``observe()``.

The service numbers trials 0, 1, 2, ... in the order ``suggest()`` returns candidates, and
saves ``state_dict()`` (JSON) after each suggestion. On resume it builds a fresh strategy,
calls ``load_state_dict()`` and replays ``observe()`` for every finished trial from the store.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from lrsearch.search.errors import SpecError
from lrsearch.search.space import SearchSpace


@dataclass(frozen=True)
class StrategySpec:
    """What a strategy needs from a JobSpec (no service objects)."""

    space: SearchSpace | None
    epochs: int
    seed: int = 0
    max_trials: int | None = None
    configs: tuple[dict, ...] = ()  # manual
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialOutcome:
    """A finished trial as the store knows it."""

    number: int
    config: dict
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


class Strategy(ABC):
    """One search algorithm. Subclasses live in one private module each."""

    name: ClassVar[str]

    def __init__(self, spec: StrategySpec) -> None:
        self.spec = spec
        self.options = self.validate_options(spec.options)

    @classmethod
    def validate_options(cls, options: dict[str, Any] | None) -> dict[str, Any]:
        """Check a spec's ``options`` for this strategy and return them normalised.

        Raises SpecError(("options", key), ...) listing what is allowed. The default takes none.
        """
        options = _options_dict(options)
        for key in options:
            raise SpecError(("options", key), f"unknown option; {cls.name} takes no options (allowed: [])")
        return {}

    @abstractmethod
    def suggest(self) -> dict | None | _Wait:
        """The next candidate's complete config, None when the strategy has no more, or ``WAIT``
        when the next one depends on trials still running (ask again once one has finished)."""

    def observe(self, outcome: TrialOutcome) -> None:
        """Learn from a finished trial. Model-free strategies ignore it."""

    def total(self) -> int | None:
        """How many trials the job will run, when known in advance."""
        return self.spec.max_trials

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state that, with the replayed outcomes, restores the strategy."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _options_dict(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise SpecError(("options",), "must be an object")
    return options


def config_key(config: dict) -> str:
    """A canonical key for duplicate detection (floats rounded to 12 significant digits)."""

    def norm(v: Any) -> Any:
        if isinstance(v, float) and math.isfinite(v):
            return float(f"{v:.12g}")
        return v

    return json.dumps({k: norm(v) for k, v in sorted(config.items())}, sort_keys=True)
