"""A data-parallel trial's process group (workers/data_parallel.py), in two real processes joined
by gloo: trials one after another on the same workers, as pooled Ray actors run them."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

from lrsearch.search.catalog import complete_config
from lrsearch.workers.data_parallel import free_address

CONFIG = {"lr": 0.05, "optimizer": "sgd", "schedule": "cosine"}
TRIALS = 20


def _trials_in_a_row(rank: int, addresses: list[str], results: Any) -> None:
    """Rank ``rank`` of TRIALS two-worker trials, each on a new group, as a pooled actor runs them."""
    from lrsearch.workers.executor import TrialRun
    from lrsearch.workers.trial_worker import TrialWorker

    worker = TrialWorker(1, 0)
    config = complete_config(CONFIG, 2)
    for i, address in enumerate(addresses):
        run = TrialRun(workload="mlp-digits", config=config, seed=i, epochs=2, batch_size=64, workers=2)
        rounds = [r for batch in worker.run_batches(f"t{i}", run, rank, address) for r in batch]
        assert [r["epoch"] for r in rounds] == [0, 1]
    results.put((rank, "ended"))


def _a_model_kept_past_its_trial(rank: int, addresses: list[str], results: Any) -> None:
    """A trainer still held when its group is left (a traceback or a user's step can hold it): the group
    waits for it, and is let go when the next group is joined after it has gone."""
    from lrsearch.workers import data_parallel
    from lrsearch.workers.registry import get_dataset, get_workload
    from lrsearch.workers.trainer import TrialTrainer

    workload, data = get_workload("mlp-digits"), get_dataset("mlp-digits", 0)
    kept = None
    for i, address in enumerate(addresses):  # the first trial's trainer is held through the second
        group = data_parallel.ProcessGroup(rank, 2, address, "cpu")
        assert len(data_parallel._outlived) == [0, 1, 0][i]
        trainer = TrialTrainer(workload, data, complete_config(CONFIG, 1), 1, i, data_parallel=group)
        trainer.run_epoch()
        if i == 0:
            kept = trainer
        trainer = None
        group.leave()
        assert len(data_parallel._outlived) == [1, 1, 0][i]
        if i == 1:
            del kept
    results.put((rank, "ended"))


def _run_two_ranks(target: Callable[[int, list[str], Any], None], trials: int) -> list[tuple[int, str]]:
    """Both ranks of ``target`` in their own processes; fails (and kills them) if they do not end."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    addresses = [free_address("127.0.0.1") for _ in range(trials)]
    ranks = [context.Process(target=target, args=(rank, addresses, results)) for rank in (0, 1)]
    for process in ranks:
        process.start()
    try:
        for process in ranks:
            process.join(timeout=150)
        stuck = [rank for rank, process in enumerate(ranks) if process.is_alive()]
        assert not stuck, f"rank(s) {stuck} did not end: a worker hung between trials"
        assert [p.exitcode for p in ranks] == [0, 0]
        return sorted(results.get(timeout=5) for _ in ranks)
    finally:
        for process in ranks:
            if process.is_alive():
                process.kill()
                process.join()


def test_data_parallel_trials_in_a_row_each_leave_their_group() -> None:
    # A group freed by DDP's reducer while gloo's thread waited for the GIL hung a worker for good
    # (torch 2.13); here it hung within the first 2 trials of 2 runs of 200 before the fix.
    assert _run_two_ranks(_trials_in_a_row, TRIALS) == [(0, "ended"), (1, "ended")]


def test_a_group_is_let_go_only_once_its_model_is_gone() -> None:
    assert _run_two_ranks(_a_model_kept_past_its_trial, 3) == [(0, "ended"), (1, "ended")]
