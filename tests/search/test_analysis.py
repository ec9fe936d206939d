"""search/analysis.py: the interval of a best learning rate, the best per optimizer, batch-size transfer."""

from __future__ import annotations

import math
import random

import pytest

from lrsearch.search.analysis import TRANSFER_RULES, lr_interval, per_optimizer_best, transfer_lr
from lrsearch.search.catalog import OPTIMIZERS


def parabola_points(curvature: float, *, center: float = -2.0, floor: float = 0.1, n: int = 25,
                    noise: float = 0.0, seed: int = 0) -> list[tuple[float, float]]:
    """(lr, loss) on a log grid 1e-5..10 with loss = floor + curvature * (log10 lr - center)^2."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x = -5 + 6 * i / (n - 1)
        out.append((10**x, floor + curvature * (x - center) ** 2 + rng.gauss(0, noise)))
    return out


def best_of(points: list[tuple[float, float]]) -> tuple[float, float]:
    return min(points, key=lambda p: p[1])


def width(interval: dict) -> float:
    return math.log10(interval["high"]) - math.log10(interval["low"])


# -- lr_interval ------------------------------------------------------------------------------------

def test_a_parabola_gives_the_analytic_interval() -> None:
    points = parabola_points(0.5)
    lr, loss = best_of(points)
    out = lr_interval(points, lr, loss, tolerance=0.02)
    assert out["method"] == "quadratic_fit"
    assert out["points_used"] == 8  # 30% of 25, rounded up
    assert out["vertex_lr"] == pytest.approx(1e-2)
    half = math.sqrt(0.02 / 0.5)  # decades either side where 0.5 x^2 stays within 0.02
    assert math.log10(out["low"]) == pytest.approx(-2 - half)
    assert math.log10(out["high"]) == pytest.approx(-2 + half)
    assert out["low"] <= lr <= out["high"]


def test_a_sharp_parabola_narrows_and_a_flat_one_widens() -> None:
    widths = []
    for curvature in (2.0, 0.5, 0.1):
        points = parabola_points(curvature, noise=0.002)
        lr, loss = best_of(points)
        out = lr_interval(points, lr, loss)
        assert out["method"] == "quadratic_fit"
        assert out["low"] <= lr <= out["high"]
        widths.append(width(out))
    assert widths[0] < widths[1] < widths[2]


def test_the_default_tolerance_is_two_percent_or_the_noise() -> None:
    quiet = parabola_points(0.5, floor=1.0)
    out = lr_interval(quiet, *best_of(quiet))
    assert out["tolerance"] == pytest.approx(0.02)  # exact fit: no residual, 2% of the best loss
    noisy = parabola_points(0.5, floor=1.0, noise=0.1, seed=3)
    out = lr_interval(noisy, *best_of(noisy))
    assert out["tolerance"] > 0.05  # the fit's residuals dominate


def test_the_interval_is_clipped_to_the_fitted_rates() -> None:
    points = parabola_points(0.001)  # nearly flat: every fitted rate is within tolerance
    lr, loss = best_of(points)
    out = lr_interval(points, lr, loss, tolerance=0.5)
    fitted = sorted(points, key=lambda p: p[1])[: out["points_used"]]
    assert out["low"] == pytest.approx(min(p[0] for p in fitted))
    assert out["high"] == pytest.approx(max(p[0] for p in fitted))


def test_the_interval_always_contains_the_best_lr() -> None:
    rng = random.Random(7)
    for trial in range(50):
        points = [(10 ** rng.uniform(-5, 1), rng.uniform(0.1, 3.0)) for _ in range(rng.randint(1, 30))]
        lr, loss = best_of(points)
        for given in (lr, lr * 1000):  # also a best_lr away from every point
            out = lr_interval(points, given, loss)
            assert out["low"] <= given <= out["high"], (trial, out)
            assert out["method"] in ("quadratic_fit", "within_tolerance")


@pytest.mark.parametrize(
    ("points", "why"),
    [
        ([(0.01, 0.5), (0.01, 0.52), (0.1, 0.3), (0.1, 0.31), (0.1, 0.6)], "two distinct rates"),
        ([(10.0 ** -i, 0.2 + 0.1 * (i - 3) ** 2 * -1) for i in range(1, 6)], "opens downwards"),
        ([(10.0 ** -i, 0.1 * i) for i in range(1, 8)], "monotone: vertex outside"),
    ],
)
def test_degenerate_fits_fall_back_to_trials_within_tolerance(points, why) -> None:
    lr, loss = best_of(points)
    out = lr_interval(points, lr, loss)
    assert out["method"] == "within_tolerance", why
    near = [p[0] for p in points if p[1] <= loss + out["tolerance"]]
    assert (out["low"], out["high"]) == (min(near), max(near))


def test_the_fallback_spans_the_trials_within_tolerance() -> None:
    two_rates = [(0.01, 0.30), (0.1, 0.305), (0.01, 0.31), (0.1, 0.5)]
    out = lr_interval(two_rates, 0.01, 0.30, tolerance=0.01)
    assert out == {"low": 0.01, "high": 0.1, "method": "within_tolerance", "tolerance": 0.01,
                   "points_used": 3}
    out = lr_interval(two_rates, 0.01, 0.30, tolerance=0.001)
    assert (out["low"], out["high"], out["points_used"]) == (0.01, 0.01, 1)


def test_unusable_points_are_ignored_and_none_left_gives_the_best_alone() -> None:
    out = lr_interval([(0.0, 0.1), (-1.0, 0.1), (0.1, math.nan), (math.inf, 0.2)], 0.05, 0.2)
    assert out["method"] == "best_only"
    assert out["low"] == out["high"] == 0.05
    assert lr_interval([], 0.05, 0.2)["method"] == "best_only"


def test_lr_interval_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="best_lr"):
        lr_interval([(0.1, 0.2)], 0.0, 0.2)
    with pytest.raises(ValueError, match="best_loss"):
        lr_interval([(0.1, 0.2)], 0.1, math.nan)
    with pytest.raises(ValueError, match="tolerance"):
        lr_interval([(0.1, 0.2)], 0.1, 0.2, tolerance=-1.0)


# -- per_optimizer_best -------------------------------------------------------------------------------

def trial(number: int, optimizer: str, lr: float, val_loss: float | None, best_epoch: int | None = 3) -> dict:
    return {"number": number, "config": {"lr": lr, "optimizer": optimizer, "schedule": "constant"},
            "val_loss": val_loss, "best_epoch": best_epoch}


def test_per_optimizer_best() -> None:
    trials = [
        trial(0, "sgd", 0.1, 0.30),
        trial(1, "sgd", 0.05, 0.20, best_epoch=7),
        trial(2, "adam", 0.001, 0.25),
        trial(3, "adam", 0.01, None),  # diverged: no loss
        trial(4, "adam", 0.003, math.nan),
        trial(5, "rmsprop", 0.01, math.inf),
        trial(6, "sgd", 0.07, 0.20),  # ties with trial 1: the lower number wins
    ]
    best = per_optimizer_best(trials)
    assert list(best) == ["sgd", "adam"]  # best optimizer first; rmsprop has no finite loss
    assert best["sgd"] == {"trial": 1, "lr": 0.05, "val_loss": 0.20, "epoch": 7,
                           "config": trials[1]["config"]}
    assert best["adam"]["trial"] == 2 and best["adam"]["lr"] == 0.001
    assert per_optimizer_best([]) == {}


# -- transfer_lr ----------------------------------------------------------------------------------------

def test_sgd_scales_linearly() -> None:
    assert transfer_lr(0.1, "sgd", 64, 128) == {"lr": pytest.approx(0.2), "rule": "linear",
                                                "from_batch_size": 64, "to_batch_size": 128}
    assert transfer_lr(0.1, "sgd", 256, 64)["lr"] == pytest.approx(0.025)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop", "adagrad"])
def test_adaptive_optimizers_scale_with_the_square_root(optimizer: str) -> None:
    out = transfer_lr(1e-3, optimizer, 64, 128)
    assert out["rule"] == "sqrt"
    assert out["lr"] == pytest.approx(1e-3 * math.sqrt(2))
    assert transfer_lr(1e-3, optimizer, 64, 16)["lr"] == pytest.approx(5e-4)


def test_every_catalog_optimizer_has_a_transfer_rule() -> None:
    assert set(TRANSFER_RULES) == set(OPTIMIZERS)
    assert transfer_lr(0.01, "adam", 32, 32)["lr"] == 0.01


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((0.0, "sgd", 64, 128), "lr"),
        ((math.inf, "sgd", 64, 128), "lr"),
        ((0.1, "lion", 64, 128), "optimizer"),
        ((0.1, "sgd", 0, 128), "from_batch"),
        ((0.1, "sgd", 64, -8), "to_batch"),
        ((0.1, "sgd", 64.0, 128), "from_batch"),
        ((0.1, "sgd", 64, True), "to_batch"),
    ],
)
def test_transfer_lr_rejects_bad_arguments(args, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        transfer_lr(*args)
