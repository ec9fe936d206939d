"""Shared helpers for the workers' tests: built-in workloads trained on the CPU."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch

from lrsearch.workers.registry import BUILTIN_WORKLOADS, get_dataset, get_workload
from lrsearch.workers.trainer import EpochResult, train

WORKLOAD_NAMES = list(BUILTIN_WORKLOADS)
DATA_SEED = 0  # the job's seed: one split shared by a job's trials

RunTrial = Callable[..., list[EpochResult]]


def _run_trial(workload: str, config: Mapping[str, Any], epochs: int, seed: int = 0, **kwargs: Any) -> list[EpochResult]:
    return list(train(get_workload(workload), get_dataset(workload, DATA_SEED), config, epochs, seed, **kwargs))


@pytest.fixture
def run_trial() -> RunTrial:
    """``run_trial(workload, config, epochs, seed=0, **train_kwargs) -> [EpochResult, ...]``."""
    return _run_trial


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Train on one thread, as a one-CPU Ray worker does: for these small models a second
    thread only spins (twice the CPU time, slower wall time) and oversubscribed cores stall it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
