"""Search strategies, one private module each, behind the ``Strategy`` interface."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

from lrsearch.search.errors import SpecError
from lrsearch.search.strategies._auto import AutoOptions, AutoStrategy
from lrsearch.search.strategies._bayesian import BayesianOptions, BayesianStrategy
from lrsearch.search.strategies._grid import GridStrategy
from lrsearch.search.strategies._manual import ManualStrategy, validate_manual_config
from lrsearch.search.strategies._pbt import PbtStrategy
from lrsearch.search.strategies._random import RandomStrategy
from lrsearch.search.strategies._range_test import (
    RANGE_TEST_KEY,
    RangeTestOptions,
    RangeTestStrategy,
    is_range_test,
    training_config,
)
from lrsearch.search.strategies.base import WAIT, Strategy, StrategyOptions, StrategySpec, TrialOutcome, config_key
from lrsearch.search.strategies.kinds import TrialKind

STRATEGIES: dict[str, type[Strategy]] = {
    GridStrategy.name: GridStrategy,
    RandomStrategy.name: RandomStrategy,
    ManualStrategy.name: ManualStrategy,
    BayesianStrategy.name: BayesianStrategy,
    RangeTestStrategy.name: RangeTestStrategy,
    AutoStrategy.name: AutoStrategy,
    PbtStrategy.name: PbtStrategy,
}


# Every strategy's options model (the JobSpec's schema lists them; a spec's strategy picks one).
ANY_STRATEGY_OPTIONS = Union[  # type: ignore[valid-type]  # noqa: UP007 - a union built from the registry at import time
    tuple(dict.fromkeys(cls.options_model for cls in STRATEGIES.values()))]


def _strategy_class(name: str) -> type[Strategy]:
    if name not in STRATEGIES:
        raise SpecError(("strategy",), f"unknown strategy {name!r}; allowed: {sorted(STRATEGIES)}")
    return STRATEGIES[name]


def validate_options(name: str, options: Mapping[str, Any] | StrategyOptions | None) -> dict[str, Any]:
    """Check a spec's ``options`` with strategy ``name``'s options model (``options_model``);
    returns them with their defaults. Raises SpecError(("options", key), ...) naming what is allowed."""
    return _strategy_class(name).validate_options(options)


def make_strategy(name: str, spec: StrategySpec) -> Strategy:
    """A fresh strategy; SpecError for an unknown name or bad options."""
    return _strategy_class(name)(spec)


__all__ = [
    "ANY_STRATEGY_OPTIONS",
    "RANGE_TEST_KEY",
    "STRATEGIES",
    "WAIT",
    "AutoOptions",
    "AutoStrategy",
    "BayesianOptions",
    "BayesianStrategy",
    "GridStrategy",
    "ManualStrategy",
    "RandomStrategy",
    "RangeTestOptions",
    "RangeTestStrategy",
    "Strategy",
    "StrategyOptions",
    "StrategySpec",
    "TrialKind",
    "TrialOutcome",
    "config_key",
    "is_range_test",
    "make_strategy",
    "training_config",
    "validate_manual_config",
    "validate_options",
]
