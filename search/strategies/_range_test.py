"""Strategy ``range_test``: an LR range test per optimizer, repeated over seeds, then one check each.

Trials come in a fixed order. First the range tests: for each optimizer of the space (in the
space's order) ``repeats`` runs, repeat ``k`` training with seed ``job seed + k``; a range-test
trial's config is the optimizer's config at ``lr = lr.low`` with a ``range_test`` entry
(``lr_high``, ``num_steps``, ``repeat``, ``divergence_factor``), and the worker records its
curve, one (lr, batch loss) point per step. Then, with ``verify`` (the default), one ordinary
training per optimizer at its suggested rate, ``epochs`` long: the suggestion is checked by the
only measure that counts, a validation loss, and the job's best is a trained configuration.

The suggestion of an optimizer is search.range_test.summarize over its repeats. The checks wait
(``WAIT``) until every range test has finished. Parameters the range test cannot vary take one
representative value: a single value as given, else the first of a list, else the catalog's
default when the range holds it, else the range's (geometric, for log parameters) middle.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from lrsearch.search.catalog import complete_config, relevant_params
from lrsearch.search.errors import SpecError
from lrsearch.search.range_test import lr_at, summarize
from lrsearch.search.space import Categorical, Numeric, SearchSpace
from lrsearch.search.strategies.base import WAIT, Strategy, StrategyOptions, StrategySpec, TrialOutcome, _Wait

RANGE_TEST_KEY = "range_test"  # the config entry that makes a trial a range test
MAX_NUM_STEPS = 10_000
MAX_REPEATS = 10
# A range test's classic sweep, from far too small to far too large: the lr of a space that gives none.
DEFAULT_SWEEP = {"lr": {"low": 1e-7, "high": 10.0}}


def is_range_test(config: dict[str, Any]) -> bool:
    return isinstance(config.get(RANGE_TEST_KEY), dict)


def training_config(config: dict[str, Any]) -> dict[str, Any]:
    """A range test's config as a training takes it: without its ``range_test`` settings."""
    return {k: v for k, v in config.items() if k != RANGE_TEST_KEY}


class RangeTestSweepOptions(StrategyOptions):
    """The range tests' options: shared by range_test and auto."""

    num_steps: int = Field(default=100, ge=10, le=MAX_NUM_STEPS, description=(
        "batches per range test, the rate rising geometrically from the space's lr low to its high"))
    repeats: int = Field(default=3, ge=1, le=MAX_REPEATS, description=(
        "range tests per optimizer, each with its own seed: the spread of the suggestion"))
    divergence_factor: float = Field(default=4.0, gt=1.0, le=1e6, description=(
        "a range test stops once its smoothed loss exceeds this multiple of its lowest"))


class RangeTestOptions(RangeTestSweepOptions):
    """range_test's options."""

    verify: bool = Field(default=True, description=(
        "train epochs at each optimizer's suggestion, so the best is a trained result (false: suggestions only)"))


def _representative(dim: Numeric | Categorical | None, default: Any) -> Any:
    if dim is None:
        return default
    if isinstance(dim, Categorical):
        return dim.choices[0]
    if dim.values is not None:
        return dim.values[0]
    assert dim.low is not None and dim.high is not None
    if dim.contains(default):
        return default
    middle = math.sqrt(dim.low * dim.high) if dim.log and dim.low > 0 else (dim.low + dim.high) / 2
    return round(middle) if dim.integer else middle


def fixed_config(space: SearchSpace, optimizer: str, lr: float, epochs: int) -> dict[str, Any]:
    """A complete config for ``optimizer`` at ``lr``: every other dimension at its representative."""
    schedule = _representative(space.dims.get("schedule"), "constant")
    raw: dict[str, Any] = {
        "lr": lr, "optimizer": optimizer, "schedule": schedule,
        "warmup_fraction": _representative(space.dims.get("warmup_fraction"), 0.0),
    }
    for p in relevant_params(optimizer, schedule):
        # A parameter without a default (lr_points) is in any space offering its schedule.
        raw[p.name] = _representative(space.dims.get(p.name), None if p.default is None else p.default(epochs))
    return complete_config(raw, epochs)


def lr_bounds(space: SearchSpace) -> tuple[float, float]:
    dim = space.dims["lr"]
    assert isinstance(dim, Numeric)
    if dim.values is not None:
        return min(dim.values), max(dim.values)
    assert dim.low is not None and dim.high is not None
    return dim.low, dim.high


class RangeTestPlan:
    """The range tests of a job and what they found; shared by ``range_test`` and ``auto``."""

    def __init__(self, space: SearchSpace, epochs: int, options: dict[str, Any]) -> None:
        self.space = space
        self.epochs = epochs
        self.optimizers: tuple[str, ...] = space.optimizers
        self.repeats: int = options["repeats"]
        self.num_steps: int = options["num_steps"]
        self.divergence_factor: float = options["divergence_factor"]
        self.lr_low, self.lr_high = lr_bounds(space)
        if not self.lr_low < self.lr_high:
            raise SpecError(("space", "lr"), "a range test sweeps the learning rate from low to high, so it needs "
                                             f"a range (low < high), got {self.lr_low:g} to {self.lr_high:g}")
        # The sweep the worker runs; in a range only a few floats wide, neighbouring steps would get
        # the same rate and the curve could not be read.
        sweep = [lr_at(i, lr_low=self.lr_low, lr_high=self.lr_high, num_steps=self.num_steps)
                 for i in range(self.num_steps)]
        if any(b <= a for a, b in zip(sweep, sweep[1:])):
            raise SpecError(("space", "lr"), f"{self.lr_low:g} to {self.lr_high:g} is too narrow for a range test of "
                                             f"{self.num_steps} steps (each step must raise the rate)")
        self.count: int = len(self.optimizers) * self.repeats
        self._curves: dict[int, tuple[float, list[float], list[float]] | None] = {}
        self._summaries: dict[str, dict[str, Any] | None] | None = None  # until the next observe/reset

    def config(self, number: int) -> dict[str, Any]:
        """Range test ``number`` (0 <= number < count): optimizer by optimizer, repeats inside."""
        optimizer = self.optimizers[number // self.repeats]
        config = fixed_config(self.space, optimizer, self.lr_low, self.epochs)
        config.update(schedule="constant", warmup_fraction=0.0)
        config = complete_config(config, self.epochs)  # drops the schedule's parameters
        config[RANGE_TEST_KEY] = {"lr_high": self.lr_high, "num_steps": self.num_steps,
                                  "repeat": number % self.repeats, "divergence_factor": self.divergence_factor}
        return config

    def observe(self, outcome: TrialOutcome) -> None:
        if not 0 <= outcome.number < self.count:
            return
        self._summaries = None
        if outcome.status in ("completed", "diverged") and is_range_test(outcome.config):
            lrs = [lr for lr, _ in outcome.points]
            raw = [loss for _, loss in outcome.points]
            self._curves[outcome.number] = (float(outcome.config["lr"]), lrs, raw)
        else:  # failed or cancelled: no curve, but finished
            self._curves[outcome.number] = None

    @property
    def done(self) -> bool:
        return len(self._curves) >= self.count

    def summaries(self) -> dict[str, dict[str, Any] | None]:
        """lrsearch.search.range_test.summarize per optimizer over the curves known now."""
        if self._summaries is None:
            self._summaries = {}
            for i, optimizer in enumerate(self.optimizers):
                numbers = range(i * self.repeats, (i + 1) * self.repeats)
                curves = [c for n in numbers if (c := self._curves.get(n)) is not None]
                self._summaries[optimizer] = summarize(curves)
        return self._summaries

    def reset(self) -> None:
        self._curves = {}
        self._summaries = None


class RangeTestStrategy(Strategy):
    name = "range_test"
    options_model = RangeTestOptions
    default_space = DEFAULT_SWEEP
    default_max_trials = None  # its tests and checks
    views = ("range_tests",)

    def __init__(self, spec: StrategySpec) -> None:
        super().__init__(spec)
        assert spec.space is not None
        self.plan = RangeTestPlan(spec.space, spec.epochs, self.options)
        self._verify: bool = self.options["verify"]
        self._asks = 0

    def _planned(self) -> int:
        return self.plan.count + (len(self.plan.optimizers) if self._verify else 0)

    def total(self) -> int:
        planned = self._planned()
        return planned if self.spec.max_trials is None else min(planned, self.spec.max_trials)

    def suggest(self) -> dict[str, Any] | None | _Wait:
        number = self._asks
        if self.spec.max_trials is not None and number >= self.spec.max_trials:
            return None
        if number < self.plan.count:
            config = self.plan.config(number)
        else:
            if not self._verify:
                return None
            if not self.plan.done:
                return WAIT
            # Optimizers whose every range test failed have nothing to check.
            checks = [(o, s) for o, s in self.plan.summaries().items() if s is not None]
            if number - self.plan.count >= len(checks):
                return None
            optimizer, summary = checks[number - self.plan.count]
            config = fixed_config(self.plan.space, optimizer, summary["lr"], self.spec.epochs)
        self._asks = number + 1
        return config

    def observe(self, outcome: TrialOutcome) -> None:
        self.plan.observe(outcome)
        self._asks = max(self._asks, int(outcome.number) + 1)

    def state_dict(self) -> dict[str, Any]:
        return {"asks": self._asks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._asks = int(state.get("asks", 0))
        self.plan.reset()


__all__ = ["DEFAULT_SWEEP", "RANGE_TEST_KEY", "RangeTestOptions", "RangeTestPlan", "RangeTestStrategy",
           "RangeTestSweepOptions", "fixed_config", "is_range_test", "training_config"]
