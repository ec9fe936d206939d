from __future__ import annotations

import io
import math

import pytest
import torch
from torch.optim import lr_scheduler

from lrsearch.search.catalog import SCHEDULES
from lrsearch.workers.optimizers import build_optimizer
from lrsearch.workers.schedules import build_multiplier, build_schedule, warmup_steps

LR = 0.01
EPOCHS = 6
SPE = 7  # steps per epoch in the unit tests
# Parameters a schedule cannot go without (no default): piecewise's points.
REQUIRED = {"piecewise": {"lr_points": [[0, LR], [2, LR / 2], [4, LR / 10]]}}


def _optimizer(lr: float = LR) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _rates(scheduler: lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The rate in effect at each of ``steps`` steps."""
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _ours(config: dict, epochs: int = EPOCHS, spe: int = SPE) -> list[float]:
    config = {"lr": LR, **config}
    return _rates(build_schedule(_optimizer(), config, epochs=epochs, steps_per_epoch=spe), epochs * spe)


# --- the shapes are torch's own: checked against the native classes, step by step -------------


def test_every_catalog_schedule_builds() -> None:
    for name in SCHEDULES:
        assert len(_ours({"schedule": name, **REQUIRED.get(name, {})})) == EPOCHS * SPE


def test_step_matches_steplr() -> None:
    ours = _ours({"schedule": "step", "step_size": 2, "gamma": 0.3})
    torch_rates = _rates(lr_scheduler.StepLR(_optimizer(), step_size=2 * SPE, gamma=0.3), EPOCHS * SPE)
    assert ours == pytest.approx(torch_rates, rel=1e-12)


def test_exponential_matches_exponentiallr_at_each_epoch_start() -> None:
    ours = _ours({"schedule": "exponential", "gamma": 0.7})
    reference = lr_scheduler.ExponentialLR(_optimizer(), gamma=0.7)  # stepped per epoch
    per_epoch = _rates(reference, EPOCHS)
    assert ours[::SPE] == pytest.approx(per_epoch, rel=1e-12)
    # Between epoch starts it decays smoothly, by gamma ** (1 / steps_per_epoch) per step.
    ratios = [b / a for a, b in zip(ours, ours[1:])]
    assert ratios == pytest.approx([0.7 ** (1 / SPE)] * len(ratios), rel=1e-12)


def test_cosine_matches_cosineannealinglr_over_all_steps() -> None:
    ours = _ours({"schedule": "cosine", "eta_min": 1e-4})
    total = EPOCHS * SPE
    # CosineAnnealingLR's own recursive form drifts; its closed form is the reference.
    reference = [1e-4 + (LR - 1e-4) * (1 + math.cos(math.pi * t / total)) / 2 for t in range(total)]
    assert ours == pytest.approx(reference, rel=1e-12)
    torch_rates = _rates(lr_scheduler.CosineAnnealingLR(_optimizer(), T_max=total, eta_min=1e-4), total)
    assert ours == pytest.approx(torch_rates, rel=1e-9)


@pytest.mark.parametrize("pct_start", [0.1, 0.3, 0.77])
def test_onecycle_matches_onecyclelr(pct_start: float) -> None:
    ours = _ours({"schedule": "onecycle", "pct_start": pct_start})
    total = EPOCHS * SPE
    reference = lr_scheduler.OneCycleLR(_optimizer(), max_lr=LR, total_steps=total, pct_start=pct_start, cycle_momentum=False)
    assert ours == pytest.approx(_rates(reference, total), rel=1e-12)


def test_onecycle_on_a_tiny_run_does_not_divide_by_zero() -> None:
    # torch's OneCycleLR raises ZeroDivisionError here (pct_start * total_steps - 1 == 0).
    rates = _ours({"schedule": "onecycle", "pct_start": 0.5}, epochs=2, spe=1)
    assert rates[0] == pytest.approx(LR)  # the peak is the first step
    assert rates[1] < rates[0]


def test_onecycle_leaves_momentum_alone() -> None:
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], {"optimizer": "sgd", "lr": LR, "momentum": 0.0})
    scheduler = build_schedule(optimizer, {"lr": LR, "schedule": "onecycle"}, epochs=2, steps_per_epoch=5)
    _rates(scheduler, 10)
    assert optimizer.param_groups[0]["momentum"] == 0.0


# --- piecewise: absolute rates from each point to the next, in the schedule's unit ------------------

POINTS = [[0, 0.02], [2, 0.005], [5, 0.001]]  # rates, not multipliers: the config's lr is LR = 0.01


def _expected_piecewise(boundaries: list[int], rates: list[float], total: int) -> list[float]:
    """The rate of the last point whose first step is at or before each step."""
    return [rates[max(i for i, b in enumerate(boundaries) if b <= t)] for t in range(total)]


def test_piecewise_in_an_epoch_job_holds_each_points_rate_from_its_epoch() -> None:
    ours = _ours({"schedule": "piecewise", "lr_points": POINTS})
    # at is in epochs: point k starts at step at * SPE.
    expected = [0.02] * (2 * SPE) + [0.005] * (3 * SPE) + [0.001] * SPE
    assert ours == pytest.approx(expected, rel=1e-12)
    assert ours == pytest.approx(_expected_piecewise([0, 2 * SPE, 5 * SPE], [0.02, 0.005, 0.001], EPOCHS * SPE),
                                 rel=1e-12)


def test_piecewise_in_a_step_job_counts_at_in_steps() -> None:
    # A step job builds its schedule with steps_per_epoch=1 and "epochs" the steps (workers/trainer.py).
    points = [[0, 0.03], [7, 0.01], [8, 0.002], [20, 0.0005]]
    ours = _ours({"schedule": "piecewise", "lr_points": points}, epochs=30, spe=1)
    assert ours == pytest.approx(_expected_piecewise([0, 7, 8, 20], [0.03, 0.01, 0.002, 0.0005], 30), rel=1e-12)


def test_piecewise_multiplier_is_the_points_rate_over_the_base_lr() -> None:
    m = build_multiplier({"lr": 0.02, "schedule": "piecewise", "lr_points": POINTS}, epochs=EPOCHS, steps_per_epoch=1)
    assert [m(t) for t in range(EPOCHS)] == pytest.approx([1.0, 1.0, 0.25, 0.25, 0.25, 0.05], rel=1e-12)
    # A point at or past the end never takes effect; after the last step the last rate holds.
    late = build_multiplier({"lr": 0.02, "schedule": "piecewise", "lr_points": [[0, 0.02], [6, 1.0]]},
                            epochs=EPOCHS, steps_per_epoch=1)
    assert [late(t) for t in range(EPOCHS)] == [1.0] * EPOCHS and late(EPOCHS) == pytest.approx(50.0)


def test_piecewise_with_warmup_is_the_product() -> None:
    config = {"schedule": "piecewise", "lr_points": POINTS, "warmup_fraction": 0.5}  # 21 of 42 steps
    ours = _ours(config)
    w = warmup_steps(0.5, EPOCHS * SPE)
    plain = _expected_piecewise([0, 2 * SPE, 5 * SPE], [0.02, 0.005, 0.001], EPOCHS * SPE)
    expected = [rate * min(1.0, (t + 1) / (w + 1)) for t, rate in enumerate(plain)]
    assert ours == pytest.approx(expected, rel=1e-12)
    assert ours[0] == pytest.approx(0.02 / (w + 1)) and ours[w:] == pytest.approx(plain[w:], rel=1e-12)


@pytest.mark.parametrize(("points", "says"), [
    (None, "lr_points is required"),
    ([], "non-empty list"),
    ([[1, 0.1]], "first point must be at 0"),
    ([[0, 0.1], [3, 0.05], [3, 0.01]], "strictly increasing"),
    ([[0, 0.1], [2.5, 0.05]], "whole number"),
    ([[0, 0.0]], "finite rate > 0"),
    ([[0, float("inf")]], "finite rate > 0"),
    ([[0, 0.1, 2]], "pair"),
])
def test_bad_lr_points_are_refused_by_name(points: object, says: str) -> None:
    config: dict = {"lr": LR, "schedule": "piecewise"}
    if points is not None:
        config["lr_points"] = points
    with pytest.raises(ValueError, match=says) as info:
        build_multiplier(config, epochs=EPOCHS, steps_per_epoch=SPE)
    assert "lr_points" in str(info.value)


def test_piecewise_multiplier_state_loads_weights_only() -> None:
    optimizer = _optimizer()
    points = [[i, LR / (i + 1)] for i in range(0, 10_000, 10)]  # a long list: still plain data
    scheduler = build_schedule(optimizer, {"lr": LR, "schedule": "piecewise", "lr_points": points},
                               epochs=10_000, steps_per_epoch=1)
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["lr_lambdas"][0]["point_steps"][:3] == [0, 10, 20]


# --- warmup -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "total", "steps"), [(0.0, 100, 0), (0.1, 100, 10), (0.001, 100, 1), (0.25, 10, 2), (1.0, 42, 42)]
)
def test_warmup_steps(fraction: float, total: int, steps: int) -> None:
    assert warmup_steps(fraction, total) == steps


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_warmup_rises_linearly_then_leaves_the_schedule_alone(schedule: str) -> None:
    config = {"lr": LR, "schedule": schedule, **REQUIRED.get(schedule, {})}
    plain = build_multiplier(config, epochs=EPOCHS, steps_per_epoch=SPE)
    warm = build_multiplier({**config, "warmup_fraction": 0.2}, epochs=EPOCHS, steps_per_epoch=SPE)
    w = warm.warmup_steps
    assert w == round(0.2 * EPOCHS * SPE)
    factors = [warm(t) / plain(t) for t in range(w + 1)]
    assert factors == pytest.approx([(t + 1) / (w + 1) for t in range(w + 1)], rel=1e-12)
    assert factors[0] == pytest.approx(1 / (w + 1)) and factors[-1] == 1.0
    assert [warm(t) for t in range(w, EPOCHS * SPE)] == [plain(t) for t in range(w, EPOCHS * SPE)]


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_warmup_fraction_outside_0_1_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="warmup_fraction"):
        build_multiplier({"lr": LR, "schedule": "constant", "warmup_fraction": fraction}, epochs=2, steps_per_epoch=3)


def test_unknown_schedule_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="known: constant, step, exponential, cosine, onecycle"):
        build_multiplier({"lr": LR, "schedule": "cyclic"}, epochs=2, steps_per_epoch=3)


# --- checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_state_dict_round_trip_restores_the_trajectory(schedule: str) -> None:
    config = {"lr": LR, "optimizer": "adam", "schedule": schedule, "warmup_fraction": 0.3, **REQUIRED.get(schedule, {})}
    total = EPOCHS * SPE

    def build() -> lr_scheduler.LRScheduler:
        optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], config)
        return build_schedule(optimizer, config, epochs=EPOCHS, steps_per_epoch=SPE)

    uninterrupted = _rates(build(), total)
    first = build()
    head = _rates(first, 9)
    buffer = io.BytesIO()
    torch.save({"optimizer": first.optimizer.state_dict(), "scheduler": first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    second = build()
    second.optimizer.load_state_dict(saved["optimizer"])
    second.load_state_dict(saved["scheduler"])
    assert head + _rates(second, total - 9) == uninterrupted


# --- shapes, read from the lr rows of trained runs ------------------------------------------------


def _lr_rows(run_trial, schedule: str, warmup_fraction: float = 0.0, **params: object) -> list[float]:
    config = {"lr": LR, "optimizer": "adam", "schedule": schedule, "warmup_fraction": warmup_fraction, **params}
    results = run_trial("mlp-digits", config, epochs=EPOCHS)
    assert len(results) == EPOCHS and not results[-1].diverged
    return [r.lr for r in results]


def test_constant_is_flat(run_trial) -> None:
    assert _lr_rows(run_trial, "constant") == [LR] * EPOCHS


def test_step_decays_by_gamma_every_step_size_epochs(run_trial) -> None:
    rows = _lr_rows(run_trial, "step", step_size=2, gamma=0.5)
    assert rows == pytest.approx([LR, LR, LR / 2, LR / 2, LR / 4, LR / 4], rel=1e-12)


def test_step_default_decays_at_least_once(run_trial) -> None:
    rows = _lr_rows(run_trial, "step")
    assert rows[0] == LR and rows[-1] < rows[0]
    assert all(b <= a for a, b in zip(rows, rows[1:]))


def test_exponential_decays_by_a_constant_ratio(run_trial) -> None:
    rows = _lr_rows(run_trial, "exponential")
    gamma = SCHEDULES["exponential"][0].default(EPOCHS)
    ratios = [b / a for a, b in zip(rows, rows[1:])]
    assert ratios == pytest.approx([gamma] * (EPOCHS - 1), rel=1e-9)
    assert rows[0] == LR


def test_cosine_falls_below_half(run_trial) -> None:
    rows = _lr_rows(run_trial, "cosine")
    assert rows[0] == LR
    assert all(b < a for a, b in zip(rows, rows[1:]))
    assert rows[-1] < LR / 2


def test_onecycle_rises_then_falls_and_peaks_at_the_trials_lr(run_trial) -> None:
    rows = _lr_rows(run_trial, "onecycle", pct_start=0.3)
    peak = rows.index(max(rows))
    assert 0 < peak < EPOCHS - 1
    assert all(b > a for a, b in zip(rows[: peak + 1], rows[1 : peak + 1]))
    assert all(b < a for a, b in zip(rows[peak:], rows[peak + 1 :]))
    assert max(rows) == pytest.approx(LR, rel=0.03)
    assert rows[0] == pytest.approx(LR / 25, rel=1e-9)


def test_piecewise_rows_are_the_points_rates(run_trial) -> None:
    # Each row's lr is the rate in effect at its epoch's first step: the last point at or before it.
    rows = _lr_rows(run_trial, "piecewise", lr_points=POINTS)
    assert rows == pytest.approx([0.02, 0.02, 0.005, 0.005, 0.005, 0.001], rel=1e-12)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_warmup_starts_below_the_base_rate_then_joins_the_schedule(run_trial, schedule: str) -> None:
    plain = _lr_rows(run_trial, schedule, **REQUIRED.get(schedule, {}))
    warm = _lr_rows(run_trial, schedule, warmup_fraction=0.3, **REQUIRED.get(schedule, {}))  # over 1.8 epochs
    assert warm[0] < plain[0] and warm[0] < LR
    assert warm[1] < plain[1]
    assert warm[2:] == plain[2:]
    if schedule == "constant":
        assert warm[0] < warm[1] < warm[2] == LR
