"""Service-owned checkpoint storage: the latest checkpoint of each running trial, as a file.

Checkpoints are produced by our own workers (``torch.save`` of plain tensors) and read back only
with ``torch.load(weights_only=True)`` on a worker; nothing a user sent is ever unpickled.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

_HEADER = struct.Struct("<I")  # the epoch count the checkpoint was taken after


class CheckpointStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, job_id: int, number: int) -> Path:
        return self.root / f"job-{job_id}" / f"trial-{number}.ckpt"

    def save(self, job_id: int, number: int, epochs_done: int, data: bytes) -> None:
        path = self._path(job_id, number)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(_HEADER.pack(epochs_done))
            f.write(data)
        os.replace(tmp, path)  # atomic: a reader sees the old checkpoint or the new one

    def load(self, job_id: int, number: int) -> tuple[int, bytes] | None:
        """(epochs done, checkpoint bytes) of the latest checkpoint, or None."""
        try:
            raw = self._path(job_id, number).read_bytes()
        except FileNotFoundError:
            return None
        if len(raw) < _HEADER.size:
            return None
        (epochs_done,) = _HEADER.unpack_from(raw)
        return epochs_done, raw[_HEADER.size:]

    def delete(self, job_id: int, number: int) -> None:
        self._path(job_id, number).unlink(missing_ok=True)

    def delete_job(self, job_id: int) -> None:
        shutil.rmtree(self.root / f"job-{job_id}", ignore_errors=True)
