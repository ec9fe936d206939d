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

import torch

COLLECTIVE_TIMEOUT = timedelta(seconds=60)


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
        if world > 1:
            import torch.distributed as dist

            if rendezvous is None:
                raise ValueError("a data-parallel trial needs its rendezvous address")
            dist.init_process_group("nccl" if device == "cuda" else "gloo", init_method=f"tcp://{rendezvous}",
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
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                try:
                    # Together: rank 0 hosts the group's store, which the others must not outlive.
                    dist.barrier()
                except Exception:  # noqa: BLE001 - a peer is gone: leave all the same
                    pass
                dist.destroy_process_group()
