"""The seam between the runner and whatever trains: the ``Executor`` protocol and what crosses it.

The service's runner talks only to this protocol. ``RayExecutor`` (workers/ray_executor.py) is the
production implementation; ``InProcessExecutor`` (workers/in_process_executor.py) trains in
threads of the calling process, no Ray, for fast tests of the runner's logic. Both run the same
``TrialWorker`` (workers/trial_worker.py), so a trial trains the same on either.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


class WorkerLost(RuntimeError):
    """The worker running a trial died (node lost, process killed): the trial may run again."""

    @classmethod
    def of(cls, exc: BaseException) -> WorkerLost:
        """Named by the first line of the error (Ray's full text repeats the traceback)."""
        return cls(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@dataclass(frozen=True)
class TrialResources:
    """What one worker of a trial asks for."""

    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class TrialRun:
    """One attempt at a training trial, as a worker takes it."""

    workload: str
    config: dict[str, Any]
    seed: int
    epochs: int | None = None  # or steps with eval_every
    steps: int | None = None
    eval_every: int | None = None
    batch_size: int | None = None
    resources: TrialResources = TrialResources()
    workers: int = 1  # more than 1: data-parallel over that many workers
    checkpoint: bytes | None = None  # continue from here
    checkpoint_every: int = 0  # a checkpoint every this many rounds ...
    checkpoint_seconds: float = 0.0  # ... or once this many seconds have passed since the last
    divergence_factor: float = 10.0
    # Rounds after which the worker waits for ``resume`` or ``stop`` (where the rule may stop it).
    pause_after: tuple[int, ...] = field(default_factory=tuple)
    stop_without_progress: bool = False  # end a first round that learned nothing (stalled)
    # The checkpoint is another config's training (a pbt exploit, or the member's previous
    # segment): continue it with this run's hyperparameters.
    inherit: bool = False
    stop_at: int | None = None  # end once this many rounds are done (a pbt segment's stop)


@dataclass(frozen=True)
class RangeTestRun:
    """One LR range test: ``config`` is the optimizer's config with its ``range_test`` entry."""

    workload: str
    config: dict[str, Any]
    seed: int
    batch_size: int | None = None
    resources: TrialResources = TrialResources()


class Executor(Protocol):
    """Starts trials, streams their results, pauses them at rungs, stops them. ``key`` names one
    attempt at a trial (the runner makes a fresh one per attempt)."""

    def run_trial(self, key: str, run: TrialRun) -> Iterator[dict[str, Any]]:
        """Each round's result dict (an epoch, or ``eval_every`` steps) as it is trained; a result
        may carry ``checkpoint`` bytes. Ends early, yielding nothing more, once stopped. Raises
        WorkerLost when a worker dies; any other exception is the workload's error."""
        ...

    def run_range_test(self, key: str, run: RangeTestRun) -> dict[str, Any] | None:
        """The range test's result (``lrs``, ``raw_losses``, ``node``...), or None if it was
        stopped before it started. Short: not streamed, paused or checkpointed."""
        ...

    def resume(self, key: str) -> None:
        """Let a trial paused after a round in its ``pause_after`` go on."""
        ...

    def stop(self, key: str) -> None:
        """Stop the trial at its next round boundary (or before it starts)."""
        ...

    def unplaceable(self, resources: TrialResources, workers: int = 1) -> tuple[str, str] | None:
        """(field, why) when no trial of this shape could ever run here; None when one could."""
        ...

    def describe(self) -> str:
        """One line for /health."""
        ...
