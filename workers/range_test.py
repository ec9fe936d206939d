"""The learning-rate range test (Leslie Smith 2015, fastai's ``lr_find``) on a workload.

One short training whose rate rises geometrically from ``lr_low`` to ``lr_high``, one batch per
rate; the smoothed training loss against the rate shows where the model starts to learn, where
it learns fastest and where it blows up. search/range_test.py turns the curve into suggestions.

Pure torch, no Ray. It follows TrialTrainer's conventions, so a range test and a trial with the
same workload, data and seed start from the same weights and see batches in the same order:
the model is built with torch's global RNG seeded from ``seed`` (and training draws, e.g.
dropout, continue that stream), batches come from workers/batches.py's TrainBatches (in-memory or the
workload's own), one ``training_step`` each, and the optimizer is ``build_optimizer``'s. The caller's
torch RNG state is restored afterwards.

Recording follows fastai: step ``i`` sets the rate, computes the loss of the current weights on
the next batch (weights trained by the rates before it), records it, then steps. The smoothed
loss is an exponential moving average with bias correction,
``avg_i = beta * avg_{i-1} + (1 - beta) * loss_i`` and ``smoothed_i = avg_i / (1 - beta**(i+1))``.
The test stops once the smoothed loss exceeds ``divergence_factor`` times the lowest smoothed
loss so far (that point is recorded), or at a non-finite loss (that point is not: results stay
JSON-safe).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from lrsearch.search.catalog import complete_config
from lrsearch.search.range_test import lr_at, suggest
from lrsearch.workers import _params
from lrsearch.workers.batches import TrainBatches
from lrsearch.workers.optimizers import build_optimizer
from lrsearch.workers.rng import own_rng
from lrsearch.workers.workloads.base import Dataset, Workload


@dataclass
class RangeTestResult:
    """One range test's curve: ``losses[i]`` is the smoothed loss recorded at rate ``lrs[i]``."""

    lrs: list[float]
    losses: list[float]  # smoothed (bias-corrected EMA)
    raw_losses: list[float]  # the batch losses themselves
    stopped_early: bool  # divergence or a non-finite loss ended it before num_steps
    steps: int  # points recorded (== len(lrs)); at most num_steps
    reason: str | None = None  # why it stopped early, None when it ran all steps
    config: dict[str, Any] = field(default_factory=dict)  # the optimizer config, lr excluded

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (every recorded loss is finite)."""
        return asdict(self)

    def suggest(self) -> dict[str, float]:
        """``search.range_test.suggest`` on this curve, reading the batch losses (see there).
        ValueError when fewer than 2 points were recorded (the loss blew up at once)."""
        return suggest(self.lrs, self.losses, raw_losses=self.raw_losses)


def run_range_test(
    workload: Workload,
    data: Dataset | None,
    optimizer_config: Mapping[str, Any],
    *,
    lr_low: float = 1e-7,
    lr_high: float = 10.0,
    num_steps: int = 100,
    seed: int = 0,
    smoothing: float = 0.98,
    divergence_factor: float = 4.0,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
) -> RangeTestResult:
    """Run the range test of ``workload`` under ``optimizer_config`` (``{"optimizer": "sgd",
    "momentum": 0.9, ...}``; an ``lr`` in it is ignored, catalog defaults fill the rest).

    Same arguments give the same result on the same device. Bad arguments raise ValueError.
    """
    _check_arguments(lr_low, lr_high, num_steps, smoothing, divergence_factor)
    config = {**dict(optimizer_config), "lr": lr_low, "schedule": "constant", "warmup_fraction": 0.0}
    _params.validate(config, 1)  # named errors for a bad optimizer or parameter
    config = complete_config(config, 1)
    device = torch.device(device)
    batches = TrainBatches(workload, data, batch_size or workload.batch_size, seed, device)

    lrs: list[float] = []
    smoothed: list[float] = []
    raw: list[float] = []
    reason: str | None = None
    with own_rng(seed, device):  # the caller's state back afterwards (workers/rng.py)
        model = workload.build_model(seed).to(device)
        optimizer = build_optimizer(model.parameters(), config)
        model.train()
        average, best = 0.0, math.inf
        for step in range(num_steps):
            lr = lr_at(step, lr_low=lr_low, lr_high=lr_high, num_steps=num_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = workload.training_step(model, batches.take())
            value = float(loss.detach())
            if not math.isfinite(value):
                reason = f"loss became {value} at step {step} (lr {lr:.4g})"
                break
            average = smoothing * average + (1.0 - smoothing) * value
            current = average / (1.0 - smoothing ** (step + 1))
            lrs.append(lr)
            raw.append(value)
            smoothed.append(current)
            if step > 0 and current > divergence_factor * best:
                reason = (
                    f"smoothed loss {current:.4g} exceeded {divergence_factor:g}x the best "
                    f"({best:.4g}) at step {step} (lr {lr:.4g})"
                )
                break
            best = min(best, current)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    optimizer_only = {k: v for k, v in config.items() if k not in ("lr", "schedule", "warmup_fraction")}
    return RangeTestResult(
        lrs=lrs,
        losses=smoothed,
        raw_losses=raw,
        stopped_early=reason is not None,
        steps=len(lrs),
        reason=reason,
        config=optimizer_only,
    )


def run_range_test_trial(workload: Workload, data: Dataset | None, config: Mapping[str, Any], seed: int,
                         device: str | torch.device = "cpu", batch_size: int | None = None) -> RangeTestResult:
    """The range test a range-test trial's ``config`` describes (search/strategies/_range_test.py:
    the optimizer's config at ``lr`` = the start rate, plus its ``range_test`` entry), with the
    job's ``seed`` plus the entry's ``repeat``."""
    test = config["range_test"]
    return run_range_test(workload, data, {k: v for k, v in config.items() if k != "range_test"},
                          lr_low=float(config["lr"]), lr_high=float(test["lr_high"]),
                          num_steps=int(test["num_steps"]), seed=seed + int(test.get("repeat", 0)),
                          divergence_factor=float(test.get("divergence_factor", 4.0)), device=device,
                          batch_size=batch_size)


def _check_arguments(
    lr_low: float, lr_high: float, num_steps: int, smoothing: float, divergence_factor: float
) -> None:
    for name, value in (("lr_low", lr_low), ("lr_high", lr_high)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be finite and positive, got {value!r}")
    if lr_low >= lr_high:
        raise ValueError(f"lr_low ({lr_low!r}) must be below lr_high ({lr_high!r})")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}")
    if not isinstance(smoothing, (int, float)) or not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if not isinstance(divergence_factor, (int, float)) or not divergence_factor > 1.0:
        raise ValueError(f"divergence_factor must be above 1, got {divergence_factor!r}")
