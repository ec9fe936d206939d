"""Learning rates suggested by a range-test curve (workers/range_test.py records it).

Pure Python (a curve is ~100 points: plain lists and ``math``, no numpy). Every rule reads a
curve -- rates ``lrs`` (strictly increasing) and the losses recorded at them -- and returns one
rate inside ``[lrs[0], lrs[-1]]``:

- ``steepest``: where the loss falls fastest against log10(lr) (Smith 2015), read up to the
  curve's minimum: past it the loss climbs towards divergence and its slopes mean nothing.
- ``valley``: fastai's rule, part of the way into the longest decreasing stretch.
- ``minimum_tenth``: the rate at the lowest loss divided by 10 (fastai's ``minimum``).
- ``suggest``: all of them plus ``combined``, the one to use.

Which curve. The range test's smoothed losses are a causal exponential moving average
(beta 0.98, fastai's): over a 100-step test it lags the batch losses by up to ~40 steps, i.e.
3 decades of rate, so rules read on it point far too high (its minimum on mlp-digits sits
10-40x above the best constant rate). ``suggest(..., raw_losses=...)`` therefore reads the rules
on ``denoise(raw_losses)``, a centred (zero-lag) running median then running mean of the batch
losses; the median also stops the exploding losses at the end of the test from leaking
backwards. Without ``raw_losses`` the rules read ``losses`` as given.

Degenerate curves never raise once they have two points: a curve that never falls (flat, or
rising from the start: even ``lrs[0]`` is too large) gives ``lrs[0]`` from every rule, the most
careful answer it supports. Fewer than two points, lengths that differ, or rates that are not
finite, positive and strictly increasing raise ValueError. A non-finite loss ends the curve
there (the points before it are used).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

# The steepest slope is a centred difference over +-STEEPEST_WINDOW_FRACTION of the points read
# (at least one): wider than one step, so a single noisy batch cannot make the steepest point.
STEEPEST_WINDOW_FRACTION = 0.05
# denoise's half-width, as a fraction of the curve's points (at least 1): 3 of 100 points,
# +-0.24 decades on the default test (1e-7..10 in 100 steps).
DENOISE_HALF_WIDTH_FRACTION = 0.03


def lr_at(step: int, *, lr_low: float, lr_high: float, num_steps: int) -> float:
    """The rate of step ``step`` (0-based): geometric from ``lr_low`` (step 0) to ``lr_high`` (last)."""
    if num_steps == 1:
        return lr_low
    return float(lr_low * (lr_high / lr_low) ** (step / (num_steps - 1)))


def _curve(lrs: Sequence[float], losses: Sequence[float]) -> tuple[list[float], list[float], list[float]]:
    """Validated (lrs, log10 lrs, losses), cut at the first non-finite loss."""
    if len(lrs) != len(losses):
        raise ValueError(f"lrs and losses differ in length ({len(lrs)} and {len(losses)})")
    if len(lrs) < 2:
        raise ValueError(f"a range-test curve needs at least 2 points, got {len(lrs)}")
    rates = [float(lr) for lr in lrs]
    for lr in rates:
        if not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"lrs must be finite and positive, got {lr!r}")
    if any(b <= a for a, b in zip(rates, rates[1:])):
        raise ValueError("lrs must be strictly increasing")
    values = [float(v) for v in losses]
    end = next((i for i, v in enumerate(values) if not math.isfinite(v)), len(values))
    if end == 0:  # not even the first loss is finite: one point, lrs[0] from every rule
        end, values[0] = 1, 0.0
    return rates[:end], [math.log10(lr) for lr in rates[:end]], values[:end]


def _argmin(values: Sequence[float]) -> int:
    # The first of equal minima: on a flat curve that is the start, the careful end.
    return min(range(len(values)), key=lambda i: (values[i], i))


def _steepest_index(xs: list[float], ys: list[float]) -> int | None:
    """Index (up to the minimum) of the most negative slope, or None when the curve never falls."""
    stop = _argmin(ys)
    if stop == 0:
        return None
    window = max(1, round(STEEPEST_WINDOW_FRACTION * (stop + 1)))
    best_i, best_slope = None, 0.0
    for i in range(stop + 1):
        lo, hi = max(0, i - window), min(stop, i + window)
        if hi == lo:
            continue
        slope = (ys[hi] - ys[lo]) / (xs[hi] - xs[lo])
        if slope < best_slope:
            best_i, best_slope = i, slope
    return best_i


def steepest(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The rate where the loss falls fastest against log10(lr), read up to the curve's minimum
    with a centred difference over a small window; ``lrs[0]`` when the loss never falls."""
    return _steepest(*_curve(lrs, losses))


def _steepest(rates: list[float], xs: list[float], ys: list[float]) -> float:
    i = _steepest_index(xs, ys)
    return rates[0] if i is None else rates[i]


def _fastai_valley_index(ys: list[float]) -> int:
    """fastai's ``valley`` (fastai/callback/schedule.py), verbatim in effect: the longest strictly
    decreasing subsequence of the curve, counted in points; its start is taken as its end minus
    that count, and the pick is 1/3 + 1/6 of the way from there to the end. A subsequence skips
    the noise's bumps, so the count is at most the span and the pick lands about 1/2 to 2/3 of
    the way into the decreasing stretch. O(n^2), for n ~ 100s. 0 when the curve never falls."""
    n = len(ys)
    length = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if ys[i] < ys[j] and length[j] + 1 > length[i]:
                length[i] = length[j] + 1
        if length[i] > length[end]:
            end = i
            start = end - length[end]
    sections = (end - start) / 3
    return max(0, start + int(sections) + int(sections / 2))


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's "valley" rule: a rate about halfway to two thirds into the longest decreasing
    stretch of the curve; ``lrs[0]`` when the loss never falls. Made for fine-tuning with a
    one-cycle schedule, it is careful: on the built-in workloads trained at a constant rate it
    lands 3-10x below the best rate, which is why ``combined`` does not use it."""
    rates, _, ys = _curve(lrs, losses)
    return rates[_fastai_valley_index(ys)]


def minimum_tenth(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The rate at the lowest loss divided by 10, but not below ``lrs[0]``."""
    rates, _, ys = _curve(lrs, losses)
    return _minimum_tenth(rates, ys)


def _minimum_tenth(rates: list[float], ys: list[float]) -> float:
    return max(rates[0], rates[_argmin(ys)] / 10.0)


def denoise(raw_losses: Sequence[float], half_width: int | None = None) -> list[float]:
    """A zero-lag smoothing of the batch losses: a centred running median, then a centred running
    mean, both over ``+-half_width`` points (windows shrink at the ends). Default half-width:
    ``DENOISE_HALF_WIDTH_FRACTION`` of the points, at least 1. Values after the first
    non-finite one are dropped (the test stops there anyway)."""
    values = [float(v) for v in raw_losses]
    end = next((i for i, v in enumerate(values) if not math.isfinite(v)), len(values))
    values = values[:end]
    n = len(values)
    if half_width is None:
        half_width = max(1, round(DENOISE_HALF_WIDTH_FRACTION * n))
    if half_width < 0:
        raise ValueError(f"half_width must be >= 0, got {half_width!r}")
    k = half_width
    medians = [statistics.median(values[max(0, i - k) : i + k + 1]) for i in range(n)]
    return [statistics.fmean(medians[max(0, i - k) : i + k + 1]) for i in range(n)]


def suggest(
    lrs: Sequence[float], losses: Sequence[float], *, raw_losses: Sequence[float] | None = None
) -> dict[str, float]:
    """``{"steepest", "valley", "minimum_tenth", "lr_at_min", "combined"}`` for a curve.

    With ``raw_losses`` (recommended: RangeTestResult.raw_losses) the rules read
    ``denoise(raw_losses)`` rather than the lagging ``losses``; see the module's docstring.

    ``combined`` is the geometric mean of ``steepest`` and ``minimum_tenth``, clipped to
    ``[lrs[0], lr_at_min]``. Why: measured against 10-epoch constant-rate trainings, the two
    err in opposite directions -- the steepest point sits at or above the best rate (1-2x on
    mlp-digits), a tenth of the minimum's rate at or below it (0.4-1x) -- and their geometric
    mean (the midpoint in log rate, the scale on which a rate matters) cancels most of both.
    On mlp-digits it came within 5% of the best validation loss of a 16-point grid for sgd,
    adam, rmsprop and adagrad, where each rule alone missed two of the four. fastai's
    ``valley`` is reported but not used: it was 3-10x too careful there (it was made for
    one-cycle fine-tuning). The clip: above the minimum's rate is past the best the test saw,
    and nothing below its first rate was measured. A range test sees ``num_steps`` batches; a
    job whose trials train for far fewer steps than that wants a bolder rate than any rule here.
    """
    if raw_losses is not None:
        if len(raw_losses) != len(lrs):
            raise ValueError(f"lrs and raw_losses differ in length ({len(lrs)} and {len(raw_losses)})")
        _curve(lrs, losses)  # the same checks as without raw_losses
        denoised = denoise(raw_losses)
        losses = denoised + [math.nan] * (len(lrs) - len(denoised))  # cut where a raw loss was not finite
    rates, xs, ys = _curve(lrs, losses)
    lr_at_min = rates[_argmin(ys)]
    out = {
        "steepest": _steepest(rates, xs, ys),
        "valley": rates[_fastai_valley_index(ys)],
        "minimum_tenth": _minimum_tenth(rates, ys),
        "lr_at_min": lr_at_min,
    }
    combined = math.sqrt(out["steepest"] * out["minimum_tenth"])
    out["combined"] = min(max(combined, rates[0]), lr_at_min)
    return out


def spread(suggestions_per_seed: Sequence[float]) -> dict[str, float | int]:
    """How much a suggestion moves between seeds: ``{"geometric_mean", "min", "max",
    "log10_std", "n"}``. ``log10_std`` is the sample standard deviation of log10(lr) (0 for one
    value): 0.1 means the seeds disagree by about x1.26 one way or the other."""
    values = [float(v) for v in suggestions_per_seed]
    if not values:
        raise ValueError("spread needs at least one suggestion")
    for v in values:
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"suggestions must be finite and positive, got {v!r}")
    logs = [math.log10(v) for v in values]
    return {
        "geometric_mean": 10 ** statistics.fmean(logs),
        "min": min(values),
        "max": max(values),
        "log10_std": statistics.stdev(logs) if len(logs) > 1 else 0.0,
        "n": len(values),
    }


_RULES = ("steepest", "valley", "minimum_tenth", "lr_at_min", "combined")  # suggest()'s keys


def summarize(curves: Sequence[tuple[float, Sequence[float], Sequence[float]]]) -> dict[str, Any] | None:
    """One optimizer's range tests, one curve per seed, as ``(lr_low, lrs, raw_losses)``, summed up:
    ``{"lr": the suggestion, "rules": {rule: lr}, "per_seed": [lr, ...], "spread": spread(...),
    "min_loss": the mean over seeds of the lowest denoised loss (None if no curve has a point)}``.

    A seed's lr is ``suggest(...)["combined"]`` read on its batch losses; ``lr`` (and each rule)
    is the geometric mean over seeds: a rate's error is multiplicative. A curve with fewer than
    two points (the loss blew up at once) gives its ``lr_low``, the most careful rate it supports.
    None when no curve was given."""
    per_seed: list[dict[str, float]] = []
    minima: list[float] = []
    for lr_low, lrs, raw in curves:
        denoised = denoise(raw)
        if denoised:
            minima.append(min(denoised))
        if len(lrs) < 2:
            per_seed.append({rule: float(lr_low) for rule in _RULES})
        else:
            per_seed.append(suggest(lrs, raw, raw_losses=raw))
    if not per_seed:
        return None
    rules = {rule: spread([s[rule] for s in per_seed])["geometric_mean"] for rule in _RULES}
    combined = [s["combined"] for s in per_seed]
    return {"lr": rules["combined"], "rules": rules, "per_seed": combined, "spread": spread(combined),
            "min_loss": statistics.fmean(minima) if minima else None}
