"""An lrsearch workload that streams its batches from files on disk and brings its own training step.

The data are shard files (``train-00.pt`` ... and ``val-00.pt``) in ``$DIGITS_STREAM_DIR``
(default ``~/.cache/lrsearch-digits-stream``), written from scikit-learn's digits the first time
they are missing; put your own shards there instead. No shard is held in memory longer than it is
read: a ``DataLoader`` over an ``IterableDataset`` reads one file at a time.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset

from lrsearch.workloads import Workload

SHARDS = 8  # training shard files; validation has one


def data_dir() -> Path:
    return Path(os.environ.get("DIGITS_STREAM_DIR", Path.home() / ".cache" / "lrsearch-digits-stream"))


def write_shards(folder: Path) -> None:
    """Shard files from scikit-learn's digits (80/20 split), each written atomically."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(x))
    folder.mkdir(parents=True, exist_ok=True)
    parts = {f"train-{i:02d}.pt": order[:cut][i::SHARDS] for i in range(SHARDS)} | {"val-00.pt": order[cut:]}
    for name, index in parts.items():
        partial = folder / f".{name}.{os.getpid()}"
        torch.save({"x": x[index], "y": y[index]}, partial)
        os.replace(partial, folder / name)  # two workers preparing at once both end with whole files


class ShardStream(IterableDataset):
    """The examples of some shard files: the files in a random order, each shuffled as it is read."""

    def __init__(self, files: list[Path], shuffle: bool, size: int) -> None:
        self.files, self.shuffle, self.size = files, shuffle, size

    def __len__(self) -> int:  # examples: a DataLoader over it then has a len(), which epoch jobs need
        return self.size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # torch's RNG: lrsearch seeds it before every pass, so every trial sees the same order.
        files = [self.files[i] for i in torch.randperm(len(self.files))] if self.shuffle else self.files
        for path in files:
            shard = torch.load(path, weights_only=True)
            order = torch.randperm(len(shard["y"])) if self.shuffle else torch.arange(len(shard["y"]))
            for i in order.tolist():
                yield shard["x"][i], shard["y"][i]


class DigitsStream(Workload):
    name = "digits-stream"
    description = "MLP 64-128-10 on scikit-learn's digits, streamed from shard files; label smoothing 0.1."
    batch_size = 32
    metrics = {"val_loss": "min", "val_accuracy": "max"}  # what validation_step reports
    grad_clip_norm = 1.0  # clip the gradient's norm before each optimizer step
    grad_accumulation = 2  # two batches of 32 per optimizer step

    @functools.cached_property
    def _shards(self) -> dict[str, tuple[list[Path], int]]:
        """{"train": (files, examples), "val": ...}, read once per worker process."""
        folder = data_dir()
        if not (folder / "val-00.pt").exists():
            write_shards(folder)
        out = {}
        for split in ("train", "val"):
            files = sorted(folder.glob(f"{split}-*.pt"))
            out[split] = files, sum(len(torch.load(f, weights_only=True)["y"]) for f in files)
        return out

    def train_batches(self, batch_size: int) -> DataLoader:
        # Called at the start of every pass (epoch); lrsearch moves each batch to the trial's device.
        files, size = self._shards["train"]
        return DataLoader(ShardStream(files, shuffle=True, size=size), batch_size=batch_size)

    def val_batches(self, batch_size: int) -> DataLoader:
        files, size = self._shards["val"]
        return DataLoader(ShardStream(files, shuffle=False, size=size), batch_size=batch_size)

    def build_model(self, seed: int) -> torch.nn.Module:  # torch is seeded before this is called
        return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))

    def training_step(self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch  # already on the trial's device
        return F.cross_entropy(model(x), y, label_smoothing=0.1)

    def validation_step(self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
        x, y = batch
        logits = model(x)
        return {"val_loss": F.cross_entropy(logits, y),
                "val_accuracy": (logits.argmax(dim=1) == y).float().mean()}
