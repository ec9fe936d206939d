"""A worker that trains trials: the body of a Ray actor, or an in-process worker for tests.

No Ray here: workers/ray_executor.py makes it an actor (and tells it its node), and
workers/in_process_executor.py runs it in threads of the calling process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator, Iterator
from typing import Any

from lrsearch.workers.executor import RangeTestRun, TrialRun

# Rounds quicker than this are streamed in batches, each result held at most BATCH_MAX_DELAY.
BATCH_ROUND_SECONDS = 0.02
BATCH_MAX_DELAY = 0.05


class TrialWorker:
    """Trains one trial at a time; another thread takes ``stop`` and ``resume`` calls while a
    trial runs. As a Ray actor (workers/ray_executor.py) it holds its node's share of CPUs or a
    GPU; in-process (workers/in_process_executor.py) it trains in the caller's thread."""

    # Where the worker runs: Ray's node id for an actor.
    node = "local"

    def __init__(self, cpu: float, gpu: float, *, own_process: bool = True) -> None:
        import torch

        if own_process:
            # A CPU trial uses its share of the node, no more: trials run side by side. (An
            # in-process worker shares its caller's torch and leaves its threads alone.)
            torch.set_num_threads(max(1, int(cpu)))
        self._device = "cuda" if gpu > 0 and torch.cuda.is_available() else "cpu"
        from lrsearch.workers.trainer import warm_up

        # One-time import costs (torch._dynamo, scikit-learn) now, not in the first trial.
        warm_up()
        self._data: dict[str, Any] = {}
        self._stop: set[str] = set()
        self._go_on: dict[str, threading.Event] = {}  # trials paused at a decision epoch
        self._epochs_done: dict[str, int] = {}  # trial key -> epochs this worker has trained
        self._node = self.node_id()

    def info(self) -> dict[str, Any]:
        """Where the actor runs, and how far each trial it is training has got: the results it
        streamed may be ahead of what the service has read."""
        return {"node": self._node, "pid": os.getpid(), "device": self._device,
                "epochs_done": dict(self._epochs_done)}

    def node_id(self) -> str:
        return self.node

    def host(self) -> str:
        """The address other workers of a data-parallel trial reach this one at."""
        return "127.0.0.1"

    def rendezvous(self) -> str:
        """host:port where a data-parallel trial's process group meets (this worker is its rank 0)."""
        from lrsearch.workers.data_parallel import free_address

        return free_address(self.host())

    def stop(self, key: str) -> None:
        self._stop.add(key)
        self._go_on.setdefault(key, threading.Event()).set()

    def resume(self, key: str) -> None:
        self._go_on.setdefault(key, threading.Event()).set()

    def run(self, key: str, run: TrialRun, rank: int = 0,
            rendezvous: str | None = None) -> Generator[dict[str, Any], None, None]:
        """Train (or continue from ``checkpoint``), yielding each round's result (an epoch, or
        ``eval_every`` of ``steps`` steps). The result carries
        the trainer's state as ``checkpoint`` bytes every ``checkpoint_every`` epochs, or once
        ``checkpoint_seconds`` of training have passed since the last one: short trials are cheaper
        to train again than to checkpoint at every epoch. After an epoch in ``pause_after`` (where
        the service may stop the trial) it waits for ``resume`` or ``stop``, so a stopped trial
        trains nothing beyond the epoch it was judged at.

        With ``run.workers`` > 1 this is rank ``rank`` of a data-parallel trial: it joins the process group
        at ``rendezvous`` (rank 0's ``rendezvous()``) for the trial and leaves it afterwards; the
        workers agree at every round whether to go on, so a stop reaches all of them at once."""
        import io

        import torch

        from lrsearch.workers.data_parallel import ProcessGroup
        from lrsearch.workers.trainer import TrialTrainer

        wl = self._workload_data(run.workload)
        group = ProcessGroup(rank, run.workers, rendezvous, self._device)
        trainer = None
        try:
            trainer = TrialTrainer(wl, self._data[run.workload], run.config, epochs=run.epochs, seed=run.seed,
                                   device=self._device, divergence_factor=run.divergence_factor,
                                   stop_without_progress=run.stop_without_progress, steps=run.steps,
                                   eval_every=run.eval_every, batch_size=run.batch_size,
                                   data_parallel=group)
            if run.checkpoint is not None:
                state = torch.load(io.BytesIO(run.checkpoint), weights_only=True, map_location="cpu")
                if run.inherit:
                    trainer.inherit(state)
                else:
                    trainer.load_state_dict(state)
            yield from self._rounds(key, trainer, group, run.checkpoint_every, run.checkpoint_seconds,
                                    run.pause_after, run.stop_at)
        finally:
            trainer = None  # its DDP model first: the group is freed as it is left (ProcessGroup.leave)
            group.leave()
            self._stop.discard(key)
            self._go_on.pop(key, None)
            self._epochs_done.pop(key, None)

    def run_batches(self, key: str, run: TrialRun, rank: int = 0,
                    rendezvous: str | None = None) -> Generator[list[dict[str, Any]], None, None]:
        """``run``'s results in lists: each stream item costs the caller about a millisecond, more
        than a round of a small model takes. Results of rounds quicker than BATCH_ROUND_SECONDS are
        held, at most BATCH_MAX_DELAY, and sent together; a result the service must act on (a
        decision point, a divergence, a checkpoint) goes at once, as does every result of slower
        rounds."""
        import time

        held: list[dict[str, Any]] = []
        held_since = last = time.monotonic()
        for result in self.run(key, run, rank, rendezvous):
            now = time.monotonic()
            quick, last = now - last < BATCH_ROUND_SECONDS, now
            if not held:
                held_since = now
            held.append(result)
            urgent = result.get("diverged") or result["epoch"] in run.pause_after or "checkpoint" in result
            if urgent or not quick or now - held_since >= BATCH_MAX_DELAY:
                yield held
                held = []
        if held:
            yield held

    def _rounds(self, key: str, trainer: Any, group: Any, checkpoint_every: int, checkpoint_seconds: float,
                pause_after: tuple[int, ...], stop_at: int | None = None) -> Iterator[dict]:
        import io
        import time

        import torch

        last_checkpoint = time.monotonic()
        while not trainer.finished and (stop_at is None or trainer.epochs_done < stop_at):
            if group.any(key in self._stop):
                return
            result = trainer.run_epoch().to_dict()
            self._epochs_done[key] = trainer.epochs_done
            result["node"] = self._node
            due = ((checkpoint_every and trainer.epochs_done % checkpoint_every == 0)
                   or (checkpoint_seconds and time.monotonic() - last_checkpoint >= checkpoint_seconds)
                   or trainer.epochs_done == stop_at)  # a segment's end: where the next one continues
            if due and not trainer.finished and group.rank == 0:  # rank 0 speaks for the trial
                last_checkpoint = time.monotonic()
                buf = io.BytesIO()
                torch.save(trainer.state_dict(), buf)
                result["checkpoint"] = buf.getvalue()
            yield result
            if result.get("diverged"):
                return
            if pause_after and result["epoch"] in pause_after and not trainer.finished:
                go_on = self._go_on.setdefault(key, threading.Event())
                go_on.wait(timeout=600)  # the service answers in milliseconds; never hang for good
                go_on.clear()

    def range_test(self, run: RangeTestRun) -> dict:
        """Run the LR range test that ``run.config`` describes (search/strategies/_range_test.py):
        the optimizer's config at ``lr`` = the start rate, plus its ``range_test`` entry."""
        from lrsearch.workers.range_test import run_range_test_trial

        wl = self._workload_data(run.workload)
        result = run_range_test_trial(wl, self._data[run.workload], run.config, run.seed, device=self._device,
                                      batch_size=run.batch_size)
        return result.to_dict() | {"node": self._node, "device": self._device}

    def _workload_data(self, workload: str) -> Any:
        from lrsearch.workers.registry import get_workload

        wl = get_workload(workload)
        if workload not in self._data:
            # Every trial of every job sees the same split, so trials are ranked on one validation set.
            # A streaming workload reads its own batches in each trial.
            self._data[workload] = None if wl.streams else wl.load_data(seed=0)
        return wl
