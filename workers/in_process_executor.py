"""An Executor that trains in the calling process: no Ray, the same TrialWorker.

For fast tests of the runner's logic (slots, replay, retries from checkpoints, early stopping,
cancellation, job completion) against real training. Each trial trains in the thread that reads
its results (the runner's slot thread); ``slots`` workers are pooled, each with its workloads'
data loaded once, as Ray's actors are. One worker per trial: data-parallel trials need Ray.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from lrsearch.workers.executor import RangeTestRun, TrialResources, TrialRun
from lrsearch.workers.trial_worker import TrialWorker


class InProcessExecutor:
    """Up to ``slots`` trials at once, each on a pooled in-process TrialWorker."""

    def __init__(self, slots: int = 2) -> None:
        self.slots = slots
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._idle: list[TrialWorker] = []
        self._live = 0
        self._running: dict[str, TrialWorker] = {}
        self._stopped: set[str] = set()  # stopped before they got a worker
        self.started: list[str] = []  # every attempt's key, in order (tests read it)

    def _acquire(self, key: str) -> TrialWorker | None:
        with self._lock:
            while True:
                if key in self._stopped:
                    self._stopped.discard(key)
                    return None
                if self._idle:
                    worker: TrialWorker | None = self._idle.pop()
                    break
                if self._live < self.slots:
                    self._live += 1
                    worker = None
                    break
                self._freed.wait(timeout=1.0)
            self.started.append(key)
        worker = worker or TrialWorker(cpu=1.0, gpu=0.0, own_process=False)
        with self._lock:
            self._running[key] = worker
        return worker

    def _release(self, key: str, worker: TrialWorker) -> None:
        with self._lock:
            self._running.pop(key, None)
            self._idle.append(worker)
            self._freed.notify_all()

    def run_trial(self, key: str, run: TrialRun) -> Iterator[dict[str, Any]]:
        if run.workers > 1:
            raise ValueError("the in-process executor trains one worker per trial; data-parallel trials need Ray")
        worker = self._acquire(key)
        if worker is None:
            return
        rounds = worker.run(key, run)
        try:
            yield from rounds
        finally:
            rounds.close()  # a trial the reader stopped early winds down here, in this thread
            self._release(key, worker)

    def run_range_test(self, key: str, run: RangeTestRun) -> dict[str, Any] | None:
        worker = self._acquire(key)
        if worker is None:
            return None
        try:
            return worker.range_test(run)
        finally:
            self._release(key, worker)

    def resume(self, key: str) -> None:
        with self._lock:
            worker = self._running.get(key)
        if worker is not None:
            worker.resume(key)

    def stop(self, key: str) -> None:
        with self._lock:
            worker = self._running.get(key)
            if worker is None:
                self._stopped.add(key)
                self._freed.notify_all()
        if worker is not None:
            worker.stop(key)

    def unplaceable(self, resources: TrialResources, workers: int = 1) -> tuple[str, str] | None:
        if workers > 1:
            return "workers", "the in-process executor trains one worker per trial"
        if resources.gpu > 0:
            import torch

            if not torch.cuda.is_available():
                return "gpu", "this process has no GPU"
        return None

    def describe(self) -> str:
        return f"connected (in-process, {self.slots} slots, no Ray)"
