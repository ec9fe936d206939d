"""Learning-rate schedules for ``search.catalog.SCHEDULES``, stepped once per optimizer step.

Every schedule is one ``torch.optim.lr_scheduler.LambdaLR`` whose multiplier of the base rate
``lr`` at step ``t`` (0-based, counted over the whole run) is ``warmup(t) * shape(t)``:

- ``warmup(t)`` rises linearly from ``1/(W+1)`` at step 0 to 1 at step ``W``, where
  ``W = round(warmup_fraction * total_steps)`` (at least 1 when the fraction is positive);
  afterwards it is 1. It multiplies the schedule's own shape, which runs on its own clock
  from step 0: warmup delays nothing, it damps the first ``W`` steps.
- ``shape(t)`` is torch's own closed form for the schedule:
  constant 1; step ``gamma ** (epoch // step_size)``; exponential ``gamma ** (t / steps_per_epoch)``
  (so the rates at the epochs' first steps fall by exactly ``gamma`` per epoch); cosine
  ``CosineAnnealingLR(T_max=total_steps, eta_min)``; onecycle ``OneCycleLR(max_lr=lr,
  total_steps, pct_start)`` with torch's defaults (``div_factor=25``, ``final_div_factor=1e4``,
  cosine annealing). tests/workers/test_schedules.py checks them against the torch classes.
- piecewise ``rate(t) / lr``: ``lr_points`` ``[[at, rate], ...]`` are absolute rates, ``rate(t)``
  the rate of the last point with ``at * steps_per_epoch <= t`` (``at`` in the schedule's unit:
  epochs, or steps in a step job, where steps_per_epoch is 1). As a multiplier of the config's
  ``lr`` (the base rate the optimizer is built with), so the rate in effect is the point's own
  whatever ``lr`` is (times warmup, as for every schedule); a config whose ``lr`` is the first
  point's rate starts at a multiplier of 1.
- onecycle with warmup: the product too. OneCycleLR already starts at ``lr/25`` and rises, so
  warmup only lowers its first ``W`` steps further; the peak is still exactly ``lr`` when
  ``warmup_fraction <= pct_start`` (warmup is over before the peak), lower otherwise.

Why one LambdaLR rather than the native classes: LambdaLR and OneCycleLR set absolute rates, so
chaining a warmup with them overwrites one or the other; OneCycleLR also cycles momentum, which
adagrad lacks and plain SGD (momentum 0) must not gain; and a closed form has no drift from
repeated multiplication, so a restored scheduler needs nothing but its step count. The
multiplier keeps plain attributes only: LambdaLR's state_dict copies them, and a checkpoint must
load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from lrsearch.search.catalog import SCHEDULES
from lrsearch.workers import _params

# OneCycleLR's defaults: start at max_lr/25, end at max_lr/25/1e4.
ONECYCLE_DIV_FACTOR = 25.0
ONECYCLE_FINAL_DIV_FACTOR = 1e4


def warmup_steps(warmup_fraction: float, total_steps: int) -> int:
    """Number of steps the linear warmup spans."""
    if warmup_fraction <= 0:
        return 0
    return min(total_steps, max(1, round(warmup_fraction * total_steps)))


class LRMultiplier:
    """Multiplier of the base rate at step ``t``: ``warmup(t) * shape(t)`` (see the module doc)."""

    def __init__(
        self,
        schedule: str,
        params: Mapping[str, Any],
        *,
        lr: float,
        steps_per_epoch: int,
        total_steps: int,
        warmup_steps: int,
    ) -> None:
        if steps_per_epoch < 1 or total_steps < 1:
            raise ValueError("steps_per_epoch and total_steps must be positive")
        self.schedule = schedule
        self.steps_per_epoch = int(steps_per_epoch)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.step_size = int(params.get("step_size", 1))
        self.gamma = float(params.get("gamma", 1.0))
        # CosineAnnealingLR's eta_min is a rate; as a multiplier it is relative to lr.
        self.eta_min_ratio = float(params.get("eta_min", 0.0)) / lr
        self.pct_start = float(params.get("pct_start", 0.3))
        # piecewise: the step each point starts at and its rate as a multiplier of lr (plain lists).
        points = params.get("lr_points") or [[0, lr]]
        self.point_steps = [int(at) * self.steps_per_epoch for at, _ in points]
        self.point_multipliers = [float(rate) / lr for _, rate in points]

    def __call__(self, step: int) -> float:
        return self.warmup(step) * self.shape(step)

    def warmup(self, step: int) -> float:
        if step >= self.warmup_steps:
            return 1.0
        return (step + 1) / (self.warmup_steps + 1)

    def shape(self, step: int) -> float:
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "step":
            epoch = step // self.steps_per_epoch
            return self.gamma ** (epoch // self.step_size)
        if self.schedule == "exponential":
            return self.gamma ** (step / self.steps_per_epoch)
        if self.schedule == "cosine":
            # The scheduler is stepped once more after the last batch; hold eta_min there.
            cosine = (1 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps)) / 2
            return self.eta_min_ratio + (1 - self.eta_min_ratio) * cosine
        if self.schedule == "onecycle":
            return self._onecycle(min(step, self.total_steps - 1))
        if self.schedule == "piecewise":
            return self.point_multipliers[bisect.bisect_right(self.point_steps, step) - 1]
        raise ValueError(f"unknown schedule {self.schedule!r}")

    def _onecycle(self, step: int) -> float:
        # OneCycleLR.get_lr, two phases, as multipliers of max_lr.
        initial = 1.0 / ONECYCLE_DIV_FACTOR
        final = initial / ONECYCLE_FINAL_DIV_FACTOR
        peak_step = self.pct_start * self.total_steps - 1
        if step <= peak_step:
            start_step, end_step, start, end = 0.0, peak_step, initial, 1.0
        else:
            start_step, end_step, start, end = peak_step, self.total_steps - 1.0, 1.0, final
        span = end_step - start_step
        # torch divides by zero here on tiny runs (e.g. 2 steps, pct_start 0.5); take the phase's end.
        pct = (step - start_step) / span if span > 0 else 1.0
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def build_multiplier(config: Mapping[str, Any], *, epochs: int, steps_per_epoch: int) -> LRMultiplier:
    """The multiplier for ``config``; parameters absent from it take the catalog's defaults."""
    name = _params.schedule_name(config)
    total_steps = epochs * steps_per_epoch
    return LRMultiplier(
        name,
        _params.resolve(SCHEDULES[name], config, epochs),
        lr=_params.base_lr(config),
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        warmup_steps=warmup_steps(_params.warmup_fraction(config), total_steps),
    )


def build_schedule(
    optimizer: torch.optim.Optimizer, config: Mapping[str, Any], *, epochs: int, steps_per_epoch: int
) -> LambdaLR:
    """The scheduler for ``config`` over ``epochs * steps_per_epoch`` steps; call ``step()`` after
    every ``optimizer.step()``. The optimizer's rate must be ``config["lr"]`` (build_optimizer's)."""
    multiplier = build_multiplier(config, epochs=epochs, steps_per_epoch=steps_per_epoch)
    return LambdaLR(optimizer, multiplier)
