"""Search strategies, one private module each, behind the ``Strategy`` interface."""

from __future__ import annotations

from typing import Any

from lrsearch.search.errors import SpecError
from lrsearch.search.strategies._auto import AutoStrategy
from lrsearch.search.strategies._bayesian import BayesianStrategy
from lrsearch.search.strategies._grid import GridStrategy
from lrsearch.search.strategies._manual import ManualStrategy, validate_manual_config
from lrsearch.search.strategies._random import RandomStrategy
from lrsearch.search.strategies._range_test import (RANGE_TEST_KEY, RangeTestStrategy, TrialKind, is_range_test,
                                                    training_config)
from lrsearch.search.strategies.base import WAIT, Strategy, StrategySpec, TrialOutcome, config_key

STRATEGIES: dict[str, type[Strategy]] = {
    GridStrategy.name: GridStrategy,
    RandomStrategy.name: RandomStrategy,
    ManualStrategy.name: ManualStrategy,
    BayesianStrategy.name: BayesianStrategy,
    RangeTestStrategy.name: RangeTestStrategy,
    AutoStrategy.name: AutoStrategy,
}


def _strategy_class(name: str) -> type[Strategy]:
    if name not in STRATEGIES:
        raise SpecError(("strategy",), f"unknown strategy {name!r}; allowed: {sorted(STRATEGIES)}")
    return STRATEGIES[name]


def validate_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """Check a spec's ``options`` for strategy ``name``; returns them normalised.

    Raises SpecError(("options", key), ...) naming what is allowed: ``bayesian`` takes
    ``sampler`` ("tpe" | "gp"), ``n_startup_trials`` and ``lr_window_decades``; ``range_test`` takes ``num_steps``,
    ``repeats``, ``divergence_factor`` and ``verify``; ``auto`` takes those of the range test
    (but ``verify``), ``window_decades`` and bayesian's; the others take none.
    """
    return _strategy_class(name).validate_options(options)


def make_strategy(name: str, spec: StrategySpec) -> Strategy:
    """A fresh strategy; SpecError for an unknown name or bad options."""
    return _strategy_class(name)(spec)


__all__ = [
    "RANGE_TEST_KEY",
    "STRATEGIES",
    "WAIT",
    "AutoStrategy",
    "BayesianStrategy",
    "GridStrategy",
    "ManualStrategy",
    "RandomStrategy",
    "RangeTestStrategy",
    "Strategy",
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
