"""torch's global RNG on a trial's own stream: a trial's model init and training draws (dropout)
depend on its seed alone, never on what else the process runs or ran before.

torch has one global RNG per process (nn.init and dropout draw from it), so a trial swaps its own
state in around the work that draws and gives the process's back afterwards. Trials that train side
by side in one process (the in-process executor's threads) would still draw from each other's
streams between two swaps, so a process-wide lock is held for the swap's length: on Ray, where an
actor trains one trial at a time, nobody waits for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

RngState = dict[str, torch.Tensor]

_GLOBAL_RNG = threading.RLock()


@contextmanager
def own_rng(start: int | RngState, device: torch.device, ended: RngState | None = None) -> Iterator[None]:
    """Run with torch's global RNG seeded from ``start`` (a seed), or continued from a state an
    earlier block left in ``ended``; this block's state is written to ``ended`` (if given) when it ends."""
    cuda = device.type == "cuda"
    with _GLOBAL_RNG:
        outer_cpu = torch.get_rng_state()
        outer_cuda = torch.cuda.get_rng_state(device) if cuda else None
        if isinstance(start, int):
            torch.manual_seed(start)
        else:
            torch.set_rng_state(start["cpu"])
            if cuda and "cuda" in start:
                torch.cuda.set_rng_state(start["cuda"], device)
        try:
            yield
        finally:
            if ended is not None:
                ended.clear()
                ended["cpu"] = torch.get_rng_state()
                if cuda:
                    ended["cuda"] = torch.cuda.get_rng_state(device)
            torch.set_rng_state(outer_cpu)
            if outer_cuda is not None:
                torch.cuda.set_rng_state(outer_cuda, device)
