"""search/range_test.py: the suggestion rules on synthetic curves, degenerate curves, spread."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest

from lrsearch.search.range_test import denoise, minimum_tenth, spread, steepest, suggest, valley

N = 100
X_LOW, X_HIGH = -7.0, 1.0  # log10 of the test's default rates
STEP = (X_HIGH - X_LOW) / (N - 1)  # decades between points
X_STEEP = -3.0  # where the descent is steepest
X_BLOWUP = -0.5


def xs() -> list[float]:
    return [X_LOW + i * STEP for i in range(N)]


def lrs_of(points: list[float]) -> list[float]:
    return [10**x for x in points]


def u_loss(x: float) -> float:
    """A textbook range-test curve in log10(lr): a plateau at 2.3, a tanh descent steepest at
    X_STEEP, a floor, then an exponential blow-up."""
    return 1.3 - math.tanh(1.5 * (x - X_STEEP)) + math.exp(4.0 * (x - X_BLOWUP))


def u_slope(x: float) -> float:
    return -1.5 / math.cosh(1.5 * (x - X_STEEP)) ** 2 + 4.0 * math.exp(4.0 * (x - X_BLOWUP))


def dense_argmin(f, lo: float, hi: float) -> float:
    grid = [lo + (hi - lo) * i / 20000 for i in range(20001)]
    return min(grid, key=f)


U_X = xs()
U_LRS = lrs_of(U_X)
U_LOSSES = [u_loss(x) for x in U_X]
X_MIN = dense_argmin(u_loss, X_LOW, X_HIGH)  # where the loss bottoms out
X_STEEPEST = dense_argmin(u_slope, X_LOW, X_MIN)  # the most negative slope before the bottom


def decades(a: float, b: float) -> float:
    return abs(math.log10(a) - math.log10(b))


# -- a textbook U-shaped curve ---------------------------------------------------------------------

def test_the_synthetic_curve_is_what_the_tests_assume() -> None:
    assert X_MIN - X_STEEPEST > 1.0  # well apart, so the rules are told apart
    assert abs(X_STEEPEST - X_STEEP) < 0.05


def test_steepest_finds_the_steepest_descent() -> None:
    assert decades(steepest(U_LRS, U_LOSSES), 10**X_STEEPEST) <= 2 * STEP


def test_minimum_tenth_is_a_tenth_of_the_minimum() -> None:
    assert decades(minimum_tenth(U_LRS, U_LOSSES), 10 ** (X_MIN - 1)) <= STEP


def test_valley_lies_inside_the_descent_before_the_minimum() -> None:
    lr = valley(U_LRS, U_LOSSES)
    # The longest decreasing stretch runs from the start of the curve to its minimum.
    assert U_LRS[0] < lr < 10**X_MIN
    assert lr < 10**X_STEEPEST * 10  # not near the floor


def test_suggest_reports_every_rule_and_combines_steepest_and_minimum_tenth() -> None:
    s = suggest(U_LRS, U_LOSSES)
    assert set(s) == {"steepest", "valley", "minimum_tenth", "lr_at_min", "combined"}
    assert s["steepest"] == steepest(U_LRS, U_LOSSES)
    assert s["valley"] == valley(U_LRS, U_LOSSES)
    assert s["minimum_tenth"] == minimum_tenth(U_LRS, U_LOSSES)
    assert decades(s["lr_at_min"], 10**X_MIN) <= STEP
    assert s["combined"] == pytest.approx(math.sqrt(s["steepest"] * s["minimum_tenth"]))
    assert U_LRS[0] <= s["combined"] <= s["lr_at_min"]


def test_the_blow_up_after_the_minimum_does_not_count() -> None:
    # A far steeper rise after the minimum changes no rule (slopes are read up to the minimum).
    bottom = U_LOSSES.index(min(U_LOSSES))
    steeper = U_LOSSES[: bottom + 1] + [loss * 50 for loss in U_LOSSES[bottom + 1 :]]
    assert suggest(U_LRS, steeper) == suggest(U_LRS, U_LOSSES)


def test_a_non_finite_loss_ends_the_curve() -> None:
    cut = U_X.index(next(x for x in U_X if x > X_MIN + 0.5))
    with_nan = U_LOSSES[:cut] + [math.nan] + U_LOSSES[cut + 1 :]
    assert suggest(U_LRS, with_nan) == suggest(U_LRS[:cut], U_LOSSES[:cut])


# -- noise and the smoothing lag --------------------------------------------------------------------

def ema(values: list[float], beta: float = 0.98) -> list[float]:
    out, avg = [], 0.0
    for i, v in enumerate(values):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def noisy_u(seed: int) -> list[float]:
    rng = random.Random(seed)
    raw = [loss * math.exp(rng.gauss(0, 0.05)) for loss in U_LOSSES]
    raw[-3] *= 30  # an exploding batch near the end
    return raw


def test_raw_losses_give_the_zero_lag_answer_where_the_ema_lags() -> None:
    raw = noisy_u(0)
    lagged = suggest(U_LRS, ema(raw))
    read_raw = suggest(U_LRS, ema(raw), raw_losses=raw)
    clean = suggest(U_LRS, U_LOSSES)
    # The causal EMA shifts the curve to higher rates; the denoised raw curve does not.
    assert math.log10(lagged["steepest"]) > math.log10(clean["steepest"]) + 0.5
    for rule in ("steepest", "minimum_tenth", "combined"):
        assert decades(read_raw[rule], clean[rule]) <= 0.3, rule


def test_suggestions_are_stable_across_noise_seeds() -> None:
    combined = [suggest(U_LRS, ema(raw), raw_losses=raw)["combined"] for raw in map(noisy_u, range(5))]
    assert spread(combined)["log10_std"] < 0.1


def test_denoise_is_centred_and_robust_to_spikes() -> None:
    ramp = [float(i) for i in range(20)]
    assert denoise(ramp, 2)[4:-4] == pytest.approx(ramp[4:-4])  # no lag on a straight line
    assert denoise(ramp, 0) == ramp
    spiky = [1.0] * 20
    spiky[10] = 1e6
    assert max(denoise(spiky, 1)) == 1.0  # the median removes a lone spike
    assert denoise([1.0, 2.0, math.inf, 3.0]) == pytest.approx([1.5, 1.5])  # cut at the first non-finite
    with pytest.raises(ValueError, match="half_width"):
        denoise(ramp, -1)


# -- degenerate curves --------------------------------------------------------------------------------

RULES = [steepest, valley, minimum_tenth]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_a_flat_curve_gives_the_first_rate(rule) -> None:
    assert rule(U_LRS, [2.3] * N) == U_LRS[0]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_a_rising_curve_gives_the_first_rate(rule) -> None:
    assert rule(U_LRS, [1.0 + i for i in range(N)]) == U_LRS[0]


def test_degenerate_curves_never_raise_and_stay_in_range() -> None:
    curves = {
        "flat": [2.3] * N,
        "rising": [1.0 + i for i in range(N)],
        "falling": [100.0 - i for i in range(N)],
        "two points": [2.0, 1.0],
        "two rising": [1.0, 2.0],
        "nan first": [math.nan] + [1.0] * (N - 1),
        "inf later": [2.0, 1.5, math.inf, 0.1],
    }
    for name, losses in curves.items():
        lrs = U_LRS[: len(losses)]
        for raw in (None, losses):
            s = suggest(lrs, losses, raw_losses=raw)
            for rule, lr in s.items():
                assert lrs[0] <= lr <= lrs[-1], (name, rule)
            assert s["combined"] <= s["lr_at_min"], name
    assert suggest(U_LRS, [math.nan] * N)["combined"] == U_LRS[0]
    falling = suggest(U_LRS, [100.0 - i for i in range(N)])
    assert falling["lr_at_min"] == U_LRS[-1]  # never turned: the minimum is the last rate


def test_bad_curves_raise() -> None:
    for lrs, losses in (([], []), ([0.1], [1.0])):
        with pytest.raises(ValueError, match="at least 2 points"):
            suggest(lrs, losses)
        for rule in RULES:
            with pytest.raises(ValueError):
                rule(lrs, losses)
    with pytest.raises(ValueError, match="differ in length"):
        suggest([0.1, 0.2], [1.0])
    with pytest.raises(ValueError, match="differ in length"):
        suggest([0.1, 0.2], [1.0, 0.5], raw_losses=[1.0])
    with pytest.raises(ValueError, match="increasing"):
        steepest([0.2, 0.1, 0.3], [1.0, 0.5, 0.2])
    with pytest.raises(ValueError, match="positive"):
        valley([0.0, 0.1], [1.0, 0.5])
    with pytest.raises(ValueError, match="positive"):
        minimum_tenth([math.nan, 0.1], [1.0, 0.5])


# -- spread --------------------------------------------------------------------------------------------

def test_spread_of_suggestions_across_seeds() -> None:
    s = spread([0.01, 0.1, 1.0])
    assert s["geometric_mean"] == pytest.approx(0.1)
    assert (s["min"], s["max"], s["n"]) == (0.01, 1.0, 3)
    assert s["log10_std"] == pytest.approx(1.0)  # sample std of -2, -1, 0
    one = spread([0.3])
    assert one["geometric_mean"] == pytest.approx(0.3) and one["log10_std"] == 0.0


@pytest.mark.parametrize("bad", [[], [0.1, 0.0], [0.1, -1.0], [math.inf]])
def test_spread_rejects_bad_suggestions(bad) -> None:
    with pytest.raises(ValueError):
        spread(bad)


def test_the_rules_import_neither_torch_nor_numpy() -> None:
    code = (
        "import sys, search.range_test, search.analysis\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'ray'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
