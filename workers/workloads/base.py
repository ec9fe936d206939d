"""The workload interface: what a trial trains on, and what users implement in their own packages.

A plug-in registers under the entry-point group ``lrsearch.workloads``; the entry point's name is
the workload's name and its value a Workload subclass or a zero-argument factory returning one::

    [project.entry-points."lrsearch.workloads"]
    my-resnet = "my_package.workloads:MyResNet"

One instance serves every trial in a worker process, so keep it stateless.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

Task = Literal["classification", "regression"]
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Dataset:
    """Tensors held in memory; the first dimension indexes examples.

    Classification targets are int64 class indices; regression targets have the model output's shape.
    """

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor

    def __post_init__(self) -> None:
        if len(self.train_x) != len(self.train_y) or len(self.val_x) != len(self.val_y):
            raise ValueError("inputs and targets differ in length")
        if len(self.train_x) == 0 or len(self.val_x) == 0:
            raise ValueError("train and validation sets must not be empty")

    @property
    def num_train(self) -> int:
        return len(self.train_x)

    @property
    def num_val(self) -> int:
        return len(self.val_x)

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(*(t.to(device) for t in (self.train_x, self.train_y, self.val_x, self.val_y)))


class Workload(ABC):
    """A model, its data and its loss. Subclasses set the class attributes and the three methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    task: ClassVar[Task] = "classification"  # classification reports val_accuracy, regression None
    batch_size: ClassVar[int] = 64
    eval_batch_size: ClassVar[int] = 4096  # validation runs in chunks of this many examples

    @abstractmethod
    def load_data(self, seed: int) -> Dataset:
        """The train/validation split for ``seed``: the same seed gives the same tensors.

        Called once per job (with the job's seed) and shared by its trials, so all of them are
        ranked on the same validation set. Tensors on the CPU; the trainer moves them.
        """

    @abstractmethod
    def build_model(self, seed: int) -> torch.nn.Module:
        """A freshly initialised model. The trainer calls it with torch's RNG seeded from
        ``seed``, so drawing from torch's global RNG is deterministic; no need to seed here."""

    @abstractmethod
    def loss_fn(self) -> LossFn:
        """``loss(output, target)`` -> the mean loss over the batch, e.g. ``nn.CrossEntropyLoss()``."""

    def count_correct(self, output: Tensor, target: Tensor) -> int:
        """Number of correct predictions in a batch (classification only).

        The default reads ``output`` as logits: argmax over classes, or ``> 0`` for a single logit.
        """
        if output.ndim > 1 and output.shape[-1] > 1:
            predicted = output.argmax(dim=-1)
        else:
            predicted = (output.reshape(target.shape) > 0).to(target.dtype)
        return int((predicted == target).sum())
