"""Helpers for the search/ tests: a cheap synthetic objective and a simulated service loop."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from lrsearch.search import (
    WAIT,
    SearchSpace,
    Strategy,
    StrategySpec,
    TrialOutcome,
    is_range_test,
    make_strategy,
    parse_space,
)
from lrsearch.search.decisions import range_test_outcome, trial_outcome

OPTIMIZER_PENALTY = {"sgd": 0.3, "adam": 0.0, "adamw": 0.1, "rmsprop": 0.6, "adagrad": 1.0}

SPACE = {
    "lr": {"low": 1e-4, "high": 1.0},
    "optimizer": ["sgd", "adam", "rmsprop"],
    "schedule": ["constant", "step", "cosine"],
    "warmup_fraction": {"low": 0.0, "high": 0.2},
    "step_size": {"low": 1, "high": 4},
    "momentum": {"low": 0.5, "high": 0.99},
}
GRID_SPACE = {
    "lr": {"low": 1e-4, "high": 1.0, "num": 4},
    "optimizer": ["sgd", "adam"],
    "schedule": ["constant", "step"],
    "step_size": {"values": [1, 2]},
}
MANUAL_CONFIGS = (
    {"lr": 0.1}, {"lr": 0.01, "optimizer": "adam"}, {"lr": 0.3, "schedule": "step", "step_size": 2},
    {"lr": 0.001, "optimizer": "rmsprop", "schedule": "cosine"}, {"lr": 0.05, "optimizer": "adamw"},
    {"lr": 1e-4, "optimizer": "adagrad", "warmup_fraction": 0.1},
)
EPOCHS = 6

# (strategy, options) for every strategy; ids name them in test output.
ALL_STRATEGIES = [("grid", {}), ("random", {}), ("manual", {}), ("bayesian", {"sampler": "tpe"}),
                  ("bayesian", {"sampler": "gp", "n_startup_trials": 3}),
                  ("bayesian", {"lr_window_decades": 1.0, "n_startup_trials": 3}), ("range_test", {"num_steps": 40}),
                  ("auto", {"num_steps": 40}), ("pbt", {"population": 4, "interval": 2})]
ALL_IDS = ["grid", "random", "manual", "bayesian-tpe", "bayesian-gp", "bayesian-windowed", "range_test", "auto",
           "pbt"]
# pbt discovers the schedule: its members train at a constant rate, the space has no schedule.
PBT_SPACE = {k: v for k, v in SPACE.items() if k not in ("schedule", "step_size")}


def is_gp(options: dict | None) -> bool:
    """GPSampler asks take ~0.1 s alone and ~1 s with trials pending (qLogEI); tests keep them few."""
    return bool(options) and options.get("sampler") == "gp"  # type: ignore[union-attr]  # bool(options): not None


def objective(config: dict) -> float:
    """A cheap stand-in for training: best near lr=1e-2 with adam, schedules matter a little."""
    value = (math.log10(config["lr"]) + 2.0) ** 2 + OPTIMIZER_PENALTY[config["optimizer"]]
    value += 0.1 if config["schedule"] == "constant" else 0.0
    value += 0.05 * config.get("warmup_fraction", 0.0)
    return value


def range_test_points(config: dict) -> tuple[tuple[float, float], ...]:
    """A range test's curve on the objective: the loss falls towards the objective's best rate
    (1e-2, shifted by the optimizer's penalty) and blows up past it, noise from the repeat."""
    test = config["range_test"]
    low, high, n = config["lr"], test["lr_high"], test["num_steps"]
    best = -2.0 - OPTIMIZER_PENALTY[config["optimizer"]]
    points = []
    for i in range(n):
        lr = low * (high / low) ** (i / (n - 1))
        x = math.log10(lr) - best
        loss = 2.3 - 2.0 / (1.0 + math.exp(-3 * (x + 1.0))) + (math.exp(2 * x) if x > 0 else 0.0)
        loss += 0.02 * math.sin(7 * i + test["repeat"])
        points.append((lr, loss))
        if loss > 8:
            break
    return tuple(points)


def outcome_for(number: int, config: dict) -> TrialOutcome:
    """Completed mostly; some pruned, diverged and failed trials, by number. A range test
    completes with its curve."""
    if is_range_test(config):
        return range_test_outcome(number, config, "completed", range_test_points(config))
    v = objective(config)
    if "pbt" in config:  # a member's segment: one value per evaluation, better with later segments
        segment = config["pbt"]
        curve = [v / (1 + 0.1 * e) for e in range(segment["start"], segment["stop"])]
        return trial_outcome(number, config, "failed" if number % 9 == 8 else "completed", curve)
    if number % 9 == 4:
        return trial_outcome(number, config, "pruned", (3 * v, 2 * v))
    if number % 9 == 7:  # a NaN evaluation has no value: the outcome leaves it out
        return trial_outcome(number, config, "diverged", (5 * v, None))
    if number % 9 == 8:
        return trial_outcome(number, config, "failed", ())
    return trial_outcome(number, config, "completed", (4 * v, 2 * v, v))


def space_for(name: str) -> SearchSpace | None:
    if name == "manual":
        return None
    if name == "pbt":
        return parse_space(PBT_SPACE)
    return parse_space(GRID_SPACE if name == "grid" else SPACE, grid=name == "grid")


def make(name: str, options: dict | None = None, *, seed: int = 0, max_trials: int | None = -1,
         space: SearchSpace | None = None, epochs: int = EPOCHS) -> Strategy:
    if max_trials == -1:
        max_trials = 7 if is_gp(options) else 12
    spec = StrategySpec(space=space if space is not None else space_for(name), epochs=epochs, seed=seed,
                        max_trials=max_trials, configs=MANUAL_CONFIGS if name == "manual" else (),
                        options=dict(options or {}))
    return make_strategy(name, spec)


@dataclass
class Sim:
    """The service's loop in miniature: up to ``concurrency`` trials run at once and finish out of order.

    Saves ``state_dict()`` as JSON after every suggestion, as the service does.
    """

    strategy: Strategy
    concurrency: int = 3
    made: list[dict] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    finished: list[TrialOutcome] = field(default_factory=list)
    saved_state: str = "{}"
    exhausted: bool = False
    events: int = 0

    def step(self) -> bool:
        """One event (a suggestion or a trial finishing); False once nothing is left."""
        self.events += 1
        if not self.exhausted and len(self.pending) < self.concurrency:
            config = self.strategy.suggest()
            if config is WAIT:
                assert self.pending, "a strategy waits while nothing is running"
            elif config is not None:
                assert isinstance(config, dict)
                self.pending.append(len(self.made))
                self.made.append(config)
                self.saved_state = json.dumps(self.strategy.state_dict())
                return True
            else:
                self.exhausted = True
        if not self.pending:
            return False
        number = self.pending.pop((self.events * 7) % len(self.pending))  # out of order
        outcome = outcome_for(number, self.made[number])
        self.finished.append(outcome)
        self.strategy.observe(outcome)
        return True

    def run(self, max_events: int = 10_000) -> Sim:
        while self.events < max_events and self.step():
            pass
        return self

    def restored(self, fresh: Strategy) -> Sim:
        """What the service builds after a crash now: the saved state, then every finished trial replayed.

        The trials that were running are run again with the same config (same numbers).
        """
        fresh.load_state_dict(json.loads(self.saved_state))
        for outcome in sorted(self.finished, key=lambda o: o.number):
            fresh.observe(outcome)
        return Sim(fresh, self.concurrency, [dict(c) for c in self.made], list(self.pending),
                   list(self.finished), self.saved_state, self.exhausted, self.events)


def configs_equal(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
