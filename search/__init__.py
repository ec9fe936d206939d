"""search/: the brain. Spaces, strategies and early stopping; pure Python (no torch, no ray)."""

from lrsearch.search.early_stopping import Decision, EarlyStopper, parse_early_stopping
from lrsearch.search.errors import SpecError
from lrsearch.search.space import SearchSpace, parse_space
from lrsearch.search.strategies import (
                               STRATEGIES,
                               WAIT,
                               Strategy,
                               StrategySpec,
                               TrialKind,
                               TrialOutcome,
                               is_range_test,
                               make_strategy,
                               validate_options,
)

__all__ = ["STRATEGIES", "Decision", "EarlyStopper", "SearchSpace", "SpecError", "Strategy", "StrategySpec",
           "TrialKind", "TrialOutcome", "WAIT", "is_range_test", "make_strategy", "parse_early_stopping", "parse_space", "validate_options"]
