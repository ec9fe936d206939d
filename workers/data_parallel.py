"""A data-parallel trial's process group, as one of its Ray workers sees it.

Each worker of a trial (a pooled TrialActor) joins a ``torch.distributed`` group for the trial's
length: gloo on the CPU, NCCL on GPUs, meeting at rank 0's address. The trainer does the rest
(workers/trainer.py: each rank trains on its share of every global batch, gradients averaged by
DistributedDataParallel). Leaving the group afterwards lets the actor serve the next trial, of
any size. A timeout bounds every collective: a rank whose peer died errors out rather than hang,
and the executor reads that as a lost worker.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import torch

COLLECTIVE_TIMEOUT = timedelta(seconds=60)
# How long rank 0 waits for the others at each step of leaving (see ProcessGroup.leave).
LEAVE_TIMEOUT = timedelta(seconds=30)


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
        if world > 1:
            import torch.distributed as dist

            if rendezvous is None:
                raise ValueError("a data-parallel trial needs its rendezvous address")
            host, port = rendezvous.rsplit(":", 1)
            # The group's store, held here rather than by the group: leaving uses it after the group is gone.
            self._store = dist.TCPStore(host, int(port), world, is_master=rank == 0, timeout=COLLECTIVE_TIMEOUT)
            dist.init_process_group("nccl" if device == "cuda" else "gloo", store=self._store,
                                    rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any worker (every worker must ask, at the same point)."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self._device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def leave(self) -> None:
        """Leave together, rank 0 last. A rank other than 0 was seen, rarely, not to end its trial's
        stream after the trial; PyTorch reports ``destroy_process_group`` hanging at times, and rank 0
        hosts the group's store. So the others say when they have passed the barrier and when they
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

    def _tell_rank_0(self, step: str) -> None:
        """The others set ``step/<rank>``; rank 0 waits for all of them (at most LEAVE_TIMEOUT)."""
        try:
            if self.rank == 0:
                self._store.wait([f"{step}/{r}" for r in range(1, self.world)], LEAVE_TIMEOUT)
            else:
                self._store.set(f"{step}/{self.rank}", "1")
        except Exception:  # noqa: BLE001 - a peer or the store is gone: nothing to wait for
            pass
