"""A trial's draws from torch's global RNG (workers/rng.py) depend on its seed alone, also when
trials train side by side in one process, as the in-process executor's threads run them."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from lrsearch.search.catalog import complete_config
from lrsearch.workers.range_test import run_range_test
from lrsearch.workers.registry import get_dataset, get_workload
from lrsearch.workers.trainer import TrialTrainer

SEEDS = (1, 2)


@pytest.fixture(autouse=True)
def threads_take_turns_often() -> Iterator[None]:
    """Python hands the GIL over every microsecond, not every 5 ms: threads interleave far more
    often, as they do when trials take seconds."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def _side_by_side(run: Callable[[int], Any]) -> list[Any]:
    """``run(seed)`` for each of SEEDS, each in its own thread, started together."""
    start, results = threading.Barrier(len(SEEDS)), dict[int, Any]()

    def one(seed: int) -> None:
        start.wait()
        results[seed] = run(seed)

    threads = [threading.Thread(target=one, args=(seed,)) for seed in SEEDS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[seed] for seed in SEEDS]


def _range_test(seed: int) -> list[float]:
    workload = get_workload("mlp-digits")
    return run_range_test(workload, get_dataset("mlp-digits", 0), {"optimizer": "sgd"}, num_steps=60,
                          lr_low=1e-3, lr_high=3.0, seed=seed).raw_losses


def _trained(seed: int) -> list[float]:
    trainer = TrialTrainer(get_workload("mlp-digits"), get_dataset("mlp-digits", 0),
                           complete_config({"lr": 0.05, "optimizer": "sgd", "schedule": "constant"}, 2), 2, seed)
    return [trainer.run_epoch().train_loss for _ in range(2)]


def test_range_tests_side_by_side_draw_what_they_draw_alone() -> None:
    alone = [_range_test(seed) for seed in SEEDS]
    assert alone[0] != alone[1]
    for _ in range(12):
        assert _side_by_side(_range_test) == alone


def test_trainings_side_by_side_draw_what_they_draw_alone() -> None:
    alone = [_trained(seed) for seed in SEEDS]
    for _ in range(12):
        assert _side_by_side(_trained) == alone


def test_the_callers_rng_is_given_back() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _range_test(1)
    _trained(1)
    assert torch.equal(torch.rand(3), expected)
