"""Search strategies, one private module each, behind the ``Strategy`` interface."""

from __future__ import annotations

from search.strategies._grid import GridStrategy
from search.strategies._manual import ManualStrategy, validate_manual_config
from search.strategies._random import RandomStrategy
from search.strategies.base import Strategy, StrategySpec, TrialOutcome, config_key

STRATEGIES: dict[str, type[Strategy]] = {
    GridStrategy.name: GridStrategy,
    RandomStrategy.name: RandomStrategy,
    ManualStrategy.name: ManualStrategy,
}


def make_strategy(name: str, spec: StrategySpec) -> Strategy:
    return STRATEGIES[name](spec)


__all__ = [
    "STRATEGIES",
    "GridStrategy",
    "ManualStrategy",
    "RandomStrategy",
    "Strategy",
    "StrategySpec",
    "TrialOutcome",
    "config_key",
    "make_strategy",
    "validate_manual_config",
]
