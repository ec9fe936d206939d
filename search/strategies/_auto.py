"""Strategy ``auto``: range tests find each optimizer's region, Bayesian search works inside it.

Trials ``0 .. R-1`` are range tests (``repeats`` per optimizer, 1 by default; see
_range_test.py). Once all have finished, each optimizer gets a window of
``window_decades`` decades either side of its suggestion, cut to the space's ``lr`` range, and
the remaining ``max_trials - R`` trials are a ``bayesian`` search (TPE by default) over the whole
space with the learning rate confined to the chosen optimizer's window. Its first trials are the
suggestions themselves (one per optimizer, every other dimension at its representative value),
the best guesses there are; the sampler's model starts from them.

The inner search sees the learning rate as ``u`` in [0, 1], its position in the optimizer's
window on a log scale (``lr = low_o * (high_o / low_o) ** u``): one fixed distribution whatever
the optimizer, so what the model learns about one part of a window carries to the others. The
inner search numbers its trials from 0 (service trial ``R + k`` is inner trial ``k``) and keeps its
own state, so restarts and replays work as for ``bayesian``. Early stopping defaults to ASHA
(``default_early_stopping``: the service writes it into the job's spec).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import Field

from lrsearch.search.early_stopping import AshaSpec
from lrsearch.search.errors import SpecError
from lrsearch.search.space import Numeric, SearchSpace
from lrsearch.search.strategies._bayesian import BayesianStrategy, SamplerOptions
from lrsearch.search.strategies._lr_window import MAX_WINDOW_DECADES, lr_at_position, position_in, window_around
from lrsearch.search.strategies._range_test import (
    DEFAULT_SWEEP,
    MAX_REPEATS,
    RangeTestPlan,
    RangeTestSweepOptions,
    fixed_config,
)
from lrsearch.search.strategies.base import WAIT, Strategy, StrategySpec, TrialOutcome, _Wait


class AutoOptions(RangeTestSweepOptions, SamplerOptions):
    """auto's options: its range tests', its bayesian search's, and the window between them."""

    repeats: int = Field(default=1, ge=1, le=MAX_REPEATS, description=(
        "range tests per optimizer, each with its own seed"))
    window_decades: float = Field(default=1.0, gt=0, le=MAX_WINDOW_DECADES, description=(
        "the search confines each optimizer's lr to this many decades either side of its range tests' suggestion"))


class AutoStrategy(Strategy):
    name = "auto"
    options_model = AutoOptions
    default_space = DEFAULT_SWEEP
    default_early_stopping = AshaSpec(kind="asha")  # auto means search + ASHA
    views = ("range_tests",)

    def __init__(self, spec: StrategySpec) -> None:
        super().__init__(spec)
        assert spec.space is not None
        lr = spec.space.dims["lr"]
        if not isinstance(lr, Numeric) or lr.values is not None:
            raise SpecError(("space", "lr"), 'auto searches inside a range: give {"low": a, "high": b}')
        self.plan = RangeTestPlan(spec.space, spec.epochs, self.options)
        max_trials = spec.max_trials if spec.max_trials is not None else self.default_max_trials
        assert max_trials is not None
        if max_trials <= self.plan.count:
            raise SpecError(("max_trials",), f"auto runs {self.plan.count} range test(s) first (optimizers x "
                                             f"repeats); max_trials must be above that, got {max_trials}")
        self._max_trials = max_trials
        inner_space = SearchSpace({**spec.space.dims, "lr": Numeric("lr", low=0.0, high=1.0)})
        inner_options = {k: self.options[k] for k in SamplerOptions.model_fields if k in self.options}
        self.inner = BayesianStrategy(StrategySpec(space=inner_space, epochs=spec.epochs, seed=spec.seed,
                                                   max_trials=max_trials - self.plan.count,
                                                   options=inner_options))
        self._inner_space = inner_space
        self._asks = 0

    def total(self) -> int:
        return self._max_trials

    # -- windows -----------------------------------------------------------------------------------
    def windows(self) -> dict[str, tuple[float, float, float | None]]:
        """``{optimizer: (low, high, suggestion)}`` once every range test has finished; the whole
        ``lr`` range (and no suggestion) for an optimizer whose range tests all failed."""
        assert self.plan.done
        low, high = self.plan.lr_low, self.plan.lr_high
        windows: dict[str, tuple[float, float, float | None]] = {}
        for optimizer, summary in self.plan.summaries().items():
            if summary is None:
                windows[optimizer] = (low, high, None)
            else:
                s = summary["lr"]
                windows[optimizer] = (*window_around(s, self.options["window_decades"], low, high), s)
        return windows

    def _outer(self, inner: dict[str, Any]) -> dict[str, Any]:
        low, high, _ = self.windows()[inner["optimizer"]]
        return {**inner, "lr": lr_at_position(inner["lr"], (low, high))}

    def _inner(self, outer: dict[str, Any]) -> dict[str, Any]:
        low, high, _ = self.windows()[outer["optimizer"]]
        return {**outer, "lr": position_in(outer["lr"], (low, high))}

    # -- the Strategy interface ----------------------------------------------------------------------
    def suggest(self) -> dict[str, Any] | None | _Wait:
        number = self._asks
        if number >= self._max_trials:
            return None
        if number < self.plan.count:
            config = self.plan.config(number)
        else:
            if not self.plan.done:
                return WAIT
            centres = [(o, w) for o, w in self.windows().items() if w[2] is not None]
            k = number - self.plan.count
            if k < len(centres):
                optimizer, (low, high, s) = centres[k]
                inner = fixed_config(self._inner_space, optimizer, 0.0, self.spec.epochs)
                inner["lr"] = self._inner({"optimizer": optimizer, "lr": s})["lr"]
                inner = self.inner.enqueue(inner)
            else:
                suggested = self.inner.suggest()
                if not isinstance(suggested, dict):
                    return None
                inner = suggested
            config = self._outer(inner)
        self._asks = number + 1
        return config

    def observe(self, outcome: TrialOutcome) -> None:
        self.plan.observe(outcome)
        if outcome.number >= self.plan.count and self.plan.done:
            self.inner.observe(replace(outcome, number=outcome.number - self.plan.count,
                                       config=self._inner(outcome.config)))
        self._asks = max(self._asks, int(outcome.number) + 1)

    def state_dict(self) -> dict[str, Any]:
        return {"asks": self._asks, "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._asks = int(state.get("asks", 0))
        self.inner.load_state_dict(state.get("inner", {}))
        self.plan.reset()


__all__ = ["AutoOptions", "AutoStrategy"]
