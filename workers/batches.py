"""A trial's batches: in the job's seeded order, pass after pass, from tensors or a workload's iterable.

The trainer and the range test both take their batches from here, so a range test and a trial with
the same workload and seed see the same batches in the same order. Where a checkpoint is taken the
position is (pass, batches taken in it): restoring re-creates that pass exactly and skips ahead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from lrsearch.workers.rng import RngState, own_rng
from lrsearch.workers.workloads.base import Dataset, Workload

# The shuffling stream is seeded apart from the model's init/dropout stream so the two never mirror each other.
SHUFFLE_SEED_OFFSET = 0x5EED
_PASS_SEED_STRIDE = 1_000_003
_CPU = torch.device("cpu")  # a streamed workload's batches draw from the CPU's RNG


def pass_seed(seed: int, number: int) -> int:
    """The seed of torch's RNG when pass ``number`` of a streamed workload starts."""
    return seed * _PASS_SEED_STRIDE + number


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it (also inside tuples, lists and dicts) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True) if batch.device != device else batch
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple keeps its type
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def batch_size_of(batch: Any) -> int:
    """How many examples a batch holds: the first dimension of the first tensor in it (1 if none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim > 0 else 1
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for value in values:
        n = batch_size_of(value)
        if n:
            return n
    return 1


@contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """torch's global CPU RNG seeded with ``seed`` inside, the caller's state restored after."""
    with own_rng(seed, _CPU):
        yield


class TrainBatches:
    """The training batches of one trial: ``take()`` gives the next one (on ``device``), starting a
    new pass over the data when one ends; ``pass_ended`` says whether the last batch taken ended
    its pass.

    In memory, each pass is a fresh permutation drawn from a generator seeded with
    ``seed + SHUFFLE_SEED_OFFSET``; a streamed workload's pass ``p`` is its ``train_batches``
    iterated with torch's RNG seeded from ``(seed, p)``.
    """

    def __init__(self, workload: Workload, data: Dataset | None, batch_size: int, seed: int,
                 device: torch.device) -> None:
        self.workload = workload
        self.batch_size = int(batch_size)
        self.seed = seed
        self.device = device
        self._data: Dataset | None = None if workload.streams else (data if data is not None else workload.load_data(seed)).to(device)
        self._rng = torch.Generator().manual_seed(seed + SHUFFLE_SEED_OFFSET)
        self._pass = -1  # the pass in progress
        self._taken = 0  # batches taken from it
        self._rng_at_pass: torch.Tensor | None = None
        self._iter: Iterator[Any] | None = None
        self._pass_rng: RngState | None = None  # torch's RNG as the streamed pass left it
        self._ahead: list[Any] = []  # one batch read ahead (streamed), to know where a pass ends
        self._order: torch.Tensor | None = None

    @property
    def data(self) -> Dataset | None:
        """The in-memory data on the trial's device (None for a streamed workload)."""
        return self._data

    # -- sizes ---------------------------------------------------------------------------------------
    def batches_per_pass(self) -> int | None:
        """Batches in one pass, when known (in memory always; streamed when the iterable has a length)."""
        if self._data is not None:
            return -(-self._data.num_train // self.batch_size)
        try:
            return len(self.workload.train_batches(self.batch_size))  # type: ignore[arg-type]  # any iterable
        except TypeError:
            return None

    # -- taking ------------------------------------------------------------------------------------------
    def take(self) -> Any:
        if self._pass < 0 or self.pass_ended:
            self._start_pass(self._pass + 1)
        batch = self._next()
        self._taken += 1
        return batch

    @property
    def pass_ended(self) -> bool:
        if self._pass < 0:
            return False
        if self._data is not None:
            assert self._order is not None
            return self._taken * self.batch_size >= len(self._order)
        if not self._ahead:
            try:
                self._ahead.append(to_device(self._read(), self.device))
            except StopIteration:
                return True
        return False

    def _read(self) -> Any:
        """The iterable's next batch, drawn on the pass's own torch RNG stream: a generator that
        shuffles as it goes sees the same draws whatever the trial's model draws in between."""
        assert self._iter is not None and self._pass_rng is not None
        with own_rng(self._pass_rng, _CPU, self._pass_rng):
            return next(self._iter)

    def _start_pass(self, number: int) -> None:
        self._pass, self._taken, self._ahead = number, 0, []
        if self._data is not None:
            self._rng_at_pass = self._rng.get_state()
            self._order = torch.randperm(self._data.num_train, generator=self._rng).to(self.device)
            return
        self._pass_rng = {}
        with own_rng(pass_seed(self.seed, number), _CPU, self._pass_rng):
            self._iter = iter(self.workload.train_batches(self.batch_size))
        if self.pass_ended:
            raise ValueError(f"workload {self.workload.name!r}: train_batches gave no batch")

    def _next(self) -> Any:
        if self._data is not None:
            assert self._order is not None
            index = self._order[self._taken * self.batch_size:(self._taken + 1) * self.batch_size]
            return self._data.train_x[index], self._data.train_y[index]
        if self.pass_ended:
            raise RuntimeError("the pass is over")  # take() starts the next one first
        return self._ahead.pop()

    # -- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"pass": self._pass, "taken": self._taken,
                "rng_at_pass": self._rng_at_pass if self._rng_at_pass is not None else self._rng.get_state(),
                "rng": self._rng.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        number, taken = int(state["pass"]), int(state["taken"])
        if number < 0:
            self._rng.set_state(state["rng"])
            return
        if self._data is not None:
            self._rng.set_state(state["rng_at_pass"])
            self._start_pass(number)
            self._taken = taken
            return
        self._start_pass(number)
        for _ in range(taken):  # streamed: replay the pass up to where it was
            self._next()
            self._taken += 1
