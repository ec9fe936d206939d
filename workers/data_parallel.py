"""A data-parallel trial's process group, as one of its Ray workers sees it.

Each worker of a trial (a pooled TrialActor) joins a ``torch.distributed`` group for the trial's
length: gloo on the CPU, NCCL on GPUs, meeting at rank 0's address. The trainer does the rest
(workers/trainer.py: each rank trains on its share of every global batch, gradients averaged by
DistributedDataParallel). Leaving the group afterwards lets the actor serve the next trial, of
any size. A timeout bounds every collective: a rank whose peer died errors out rather than hang,
and the executor reads that as a lost worker.

Letting go of a group takes care, because of a deadlock in torch 2.13 (pytorch/pytorch#173568 and
its follow-ups): backward keeps a Python object in the thread's state, so each collective DDP
launches during backward holds one, and gloo's worker thread that frees such a collective needs
the GIL. A group freed by DDP's reducer (a C++ object, freed holding the GIL) waits for those
threads while holding the GIL: both wait for good. A group freed through its Python object lets go
of the GIL first. So the group's last reference is always a Python one held here, dropped only once
every model wrapped for it (its reducer with it) is gone.
"""

from __future__ import annotations

import socket
import weakref
from datetime import timedelta
from typing import Any

import torch

COLLECTIVE_TIMEOUT = timedelta(seconds=60)
# How long rank 0 waits for the others at each step of leaving (see ProcessGroup.leave).
LEAVE_TIMEOUT = timedelta(seconds=30)


# Groups left while a model wrapped for them was still alive (held by a traceback, or by a user's
# training step): each held until its models are gone, then let go (see the module's docstring).
_outlived: list[tuple[list[weakref.ref[Any]], Any]] = []


def _let_go_of_outlived() -> None:
    _outlived[:] = [(wrapped, group) for wrapped, group in _outlived if any(ref() is not None for ref in wrapped)]


def free_address(host: str) -> str:
    """``host:port`` with a port free on this node now (rank 0 listens there next)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return f"{host}:{s.getsockname()[1]}"


class ProcessGroup:
    """Joined on construction when ``world`` > 1; a no-op group of one otherwise."""

    def __init__(self, rank: int, world: int, rendezvous: str | None, device: str) -> None:
        self.rank, self.world = rank, world
        self._device = torch.device("cuda" if device == "cuda" else "cpu")
        self._store: Any = None
        self._group: Any = None  # the group's Python object: its last reference (module docstring)
        self._wrapped: list[weakref.ref[Any]] = []  # the models wrapped for it, and so their reducers
        _let_go_of_outlived()
        if world > 1:
            import torch.distributed as dist

            if rendezvous is None:
                raise ValueError("a data-parallel trial needs its rendezvous address")
            host, port = rendezvous.rsplit(":", 1)
            # The group's store, held here rather than by the group: leaving uses it after the group is gone.
            self._store = dist.TCPStore(host, int(port), world, is_master=rank == 0, timeout=COLLECTIVE_TIMEOUT)
            dist.init_process_group("nccl" if device == "cuda" else "gloo", store=self._store,
                                    rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT)
            self._group = dist.group.WORLD

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` as the group trains it: gradients averaged over the workers by DDP."""
        ddp = torch.nn.parallel.DistributedDataParallel(model, process_group=self._group)
        self._wrapped += [weakref.ref(ddp), weakref.ref(ddp.reducer)]
        return ddp

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any worker (every worker must ask, at the same point)."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self._device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def leave(self) -> None:
        """Leave together, rank 0 last. Call it once the trainer (its DDP model) is dropped: the group
        is freed here then, or else only once that model is gone (see the module's docstring). Rank 0
        hosts the group's store, so the others say when they have passed the barrier and when they
        have left; rank 0 tears its group down after the first and keeps the store until the second
        (each wait bounded; after a failed barrier, a peer is gone and nobody waits)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            return
        try:
            dist.barrier()
            together = True
        except Exception:  # noqa: BLE001 - a peer is gone: leave all the same, waiting for nobody
            together = False
        if together:
            self._tell_rank_0("leaving")
        dist.destroy_process_group()
        if together:
            self._tell_rank_0("left")
        self._store = None
        if any(ref() is not None for ref in self._wrapped):
            _outlived.append((self._wrapped, self._group))
        self._group, self._wrapped = None, []

    def _tell_rank_0(self, step: str) -> None:
        """The others set ``step/<rank>``; rank 0 waits for all of them (at most LEAVE_TIMEOUT)."""
        try:
            if self.rank == 0:
                self._store.wait([f"{step}/{r}" for r in range(1, self.world)], LEAVE_TIMEOUT)
            else:
                self._store.set(f"{step}/{self.rank}", "1")
        except Exception:  # noqa: BLE001 - a peer or the store is gone: nothing to wait for
            pass
