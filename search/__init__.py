"""search/: the brain. Spaces, strategies and early stopping; pure Python (no torch, no ray)."""

from search.errors import SpecError
from search.space import SearchSpace, parse_space
from search.strategies import STRATEGIES, Strategy, StrategySpec, TrialOutcome, make_strategy

__all__ = ["STRATEGIES", "SearchSpace", "SpecError", "Strategy", "StrategySpec", "TrialOutcome",
           "make_strategy", "parse_space"]
