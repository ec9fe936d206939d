"""workers/range_test.py: the LR range test on real workloads (CPU)."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from torch import nn

from lrsearch.workers.batches import SHUFFLE_SEED_OFFSET
from lrsearch.workers.range_test import RangeTestResult, lr_at, run_range_test
from lrsearch.workers.registry import get_dataset, get_workload
from lrsearch.workers.trainer import TrialTrainer
from lrsearch.workers.workloads.digits import MLPDigits

SGD = {"optimizer": "sgd", "momentum": 0.9}
ADAM = {"optimizer": "adam"}


@pytest.fixture(scope="module")
def digits():
    return get_workload("mlp-digits"), get_dataset("mlp-digits", 0)


@pytest.fixture(scope="module")
def sgd_result(digits) -> RangeTestResult:
    # Module-scoped fixtures run before the function-scoped one_torch_thread: the thread count
    # changes float sums, so set it here as the tests will have it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_range_test(*digits, SGD, seed=0)
    finally:
        torch.set_num_threads(threads)


class NanAfter(MLPDigits):
    """mlp-digits whose training loss becomes nan from the given batch on (0-based)."""

    name = "nan-after"

    def __init__(self, bad_batch: int) -> None:
        self.bad_batch = bad_batch

    def loss_fn(self):
        cross_entropy = nn.CrossEntropyLoss()
        calls = [0]

        def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            calls[0] += 1
            value = cross_entropy(output, target)
            return value * math.nan if calls[0] > self.bad_batch else value

        return loss


def test_the_rates_rise_geometrically_from_low_to_high(digits) -> None:
    result = run_range_test(*digits, ADAM, lr_low=1e-6, lr_high=1e-3, num_steps=30)
    assert not result.stopped_early and result.reason is None
    assert result.steps == len(result.lrs) == len(result.losses) == len(result.raw_losses) == 30
    assert result.lrs[0] == pytest.approx(1e-6) and result.lrs[-1] == pytest.approx(1e-3)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert ratios == pytest.approx([1000 ** (1 / 29)] * 29)
    assert lr_at(29, lr_low=1e-6, lr_high=1e-3, num_steps=30) == result.lrs[-1]


def test_losses_are_the_bias_corrected_moving_average(sgd_result: RangeTestResult) -> None:
    average, expected = 0.0, []
    for i, raw in enumerate(sgd_result.raw_losses):
        average = 0.98 * average + 0.02 * raw
        expected.append(average / (1 - 0.98 ** (i + 1)))
    assert sgd_result.losses == pytest.approx(expected)
    assert sgd_result.losses[0] == pytest.approx(sgd_result.raw_losses[0])


def test_it_starts_from_the_trials_weights_and_batches(digits, sgd_result: RangeTestResult) -> None:
    workload, data = digits
    trainer = TrialTrainer(workload, data, {**SGD, "lr": 0.1, "schedule": "constant"}, epochs=1, seed=0)
    order = torch.randperm(data.num_train, generator=torch.Generator().manual_seed(SHUFFLE_SEED_OFFSET))
    first = order[: workload.batch_size]
    with torch.no_grad():
        loss = workload.loss_fn()(trainer.model(data.train_x[first]), data.train_y[first]).item()
    assert sgd_result.raw_losses[0] == pytest.approx(loss)


def test_it_stops_early_when_the_loss_diverges(sgd_result: RangeTestResult) -> None:
    result = sgd_result  # default lr_high=10 is far too high for SGD
    assert result.stopped_early
    assert result.steps < 100
    assert "exceeded 4x the best" in result.reason
    assert result.losses[-1] > 4 * min(result.losses[:-1])
    assert all(math.isfinite(v) for v in result.losses + result.raw_losses)


def test_a_lower_divergence_factor_stops_sooner(digits, sgd_result: RangeTestResult) -> None:
    sooner = run_range_test(*digits, SGD, divergence_factor=1.5)
    assert sooner.stopped_early and sooner.steps < sgd_result.steps


def test_a_non_finite_loss_stops_it_without_being_recorded(digits) -> None:
    result = run_range_test(NanAfter(bad_batch=10), digits[1], ADAM, num_steps=50)
    assert result.stopped_early and result.steps == 10
    assert "loss became nan at step 10" in result.reason
    assert all(math.isfinite(v) for v in result.raw_losses)


def test_same_seed_same_curve_and_other_seeds_differ(digits, sgd_result: RangeTestResult) -> None:
    outer = torch.get_rng_state()
    again = run_range_test(*digits, SGD, seed=0)
    assert torch.equal(torch.get_rng_state(), outer)  # the caller's RNG is left alone
    assert again == sgd_result
    other = run_range_test(*digits, SGD, seed=1)
    assert other.raw_losses[:5] != sgd_result.raw_losses[:5]


def test_the_result_is_json_ready(sgd_result: RangeTestResult) -> None:
    out = sgd_result.to_dict()
    json.dumps(out, allow_nan=False)
    assert set(out) >= {"lrs", "losses", "raw_losses", "stopped_early", "steps"}
    assert out["config"] == {"optimizer": "sgd", "momentum": 0.9, "nesterov": False, "weight_decay": 0.0}


def test_sgd_suggestion_is_sane(sgd_result: RangeTestResult) -> None:
    suggestion = sgd_result.suggest()
    assert 1e-3 <= suggestion["combined"] <= 3.0, suggestion
    # The best constant rate for 10 epochs of mlp-digits is ~0.04-0.08 (measured): well inside.
    assert 0.01 <= suggestion["combined"] <= 0.3, suggestion


def test_adam_suggestion_is_sane(digits) -> None:
    suggestion = run_range_test(*digits, ADAM, seed=0).suggest()
    assert 1e-4 <= suggestion["combined"] <= 0.1, suggestion
    assert 2e-3 <= suggestion["combined"] <= 3e-2, suggestion  # best ~0.005-0.013 (measured)


def test_every_optimizer_runs(digits) -> None:
    for optimizer in ("adamw", "rmsprop", "adagrad"):
        result = run_range_test(*digits, {"optimizer": optimizer}, num_steps=40)
        assert result.steps > 10 and result.config["optimizer"] == optimizer


def test_it_is_fast(digits) -> None:
    run_range_test(*digits, ADAM, num_steps=5)  # one-time costs (torch's first optimizer)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        run_range_test(*digits, ADAM, lr_high=1e-2)  # all 100 steps
        best = min(best, time.perf_counter() - start)
    assert best < 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr_low": 0.0}, "lr_low"),
        ({"lr_high": math.inf}, "lr_high"),
        ({"lr_low": 1.0, "lr_high": 0.1}, "below lr_high"),
        ({"num_steps": 1}, "num_steps"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"divergence_factor": 1.0}, "divergence_factor"),
    ],
)
def test_bad_arguments_raise(digits, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run_range_test(*digits, SGD, **kwargs)


def test_bad_optimizer_configs_raise(digits) -> None:
    with pytest.raises(ValueError, match="unknown optimizer"):
        run_range_test(*digits, {"optimizer": "lion"})
    with pytest.raises(ValueError, match="momentum"):
        run_range_test(*digits, {"optimizer": "sgd", "momentum": 2.0})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_range_test_on_cuda_is_repeatable_and_agrees_with_the_cpu() -> None:
    wl = get_workload("mlp-digits")
    data = wl.load_data(seed=0)
    kwargs = {"lr_low": 1e-6, "lr_high": 10.0, "num_steps": 80, "seed": 0}
    a = run_range_test(wl, data, {"optimizer": "adam"}, device="cuda", **kwargs)
    b = run_range_test(wl, data, {"optimizer": "adam"}, device="cuda", **kwargs)
    cpu = run_range_test(wl, data, {"optimizer": "adam"}, device="cpu", **kwargs)
    assert a.raw_losses == b.raw_losses
    assert a.raw_losses[0] == pytest.approx(cpu.raw_losses[0], rel=1e-4)  # the same weights and first batch
    # The suggestion does not depend on the device beyond rounding.
    assert 0.5 <= a.suggest()["combined"] / cpu.suggest()["combined"] <= 2.0
