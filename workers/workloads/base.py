"""The workload interface: what a trial trains on, and what users implement in their own packages.

Two forms, which mix freely:

- **In memory** (the first form): ``load_data`` returns four tensors and ``loss_fn`` the loss;
  lrsearch batches, trains and evaluates (loss, and accuracy for classification).
- **Your own batches and step** (the second form): ``train_batches`` / ``val_batches`` hand over
  any iterables (a ``torch.utils.data.DataLoader`` over files on disk, a generator), and
  ``training_step`` / ``validation_step`` say what one batch's loss and metrics are. Set
  ``grad_clip_norm``, ``grad_accumulation`` and ``precision`` as the training needs.

Either way lrsearch builds the optimizer and the learning-rate schedule it searches, applies
warmup, moves batches to the trial's device, detects divergence, checkpoints, and records the
rate at every evaluation.

A plug-in registers under the entry-point group ``lrsearch.workloads``; the entry point's name is
the workload's name and its value a Workload subclass or a zero-argument factory returning one::

    [project.entry-points."lrsearch.workloads"]
    my-resnet = "my_package.workloads:MyResNet"

One instance serves every trial in a worker process, so keep it stateless.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

Task = Literal["classification", "regression"]
LossFn = Callable[[Tensor, Tensor], Tensor]
Mode = Literal["min", "max"]
Precision = Literal["fp32", "bf16"]


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
    """A model, its data and its loss. Subclasses set the class attributes, ``build_model``, and
    either the in-memory pair (``load_data``, ``loss_fn``) or their own batches (``train_batches``,
    ``val_batches``, with ``training_step`` and ``validation_step``)."""

    name: ClassVar[str]
    description: ClassVar[str]
    task: ClassVar[Task] = "classification"  # classification reports val_accuracy, regression None
    batch_size: ClassVar[int] = 64
    eval_batch_size: ClassVar[int] = 4096  # validation runs in chunks of this many examples
    # The validation metrics the workload reports, each with the direction that is better. None:
    # val_loss (min), plus val_accuracy (max) for classification. A job's objective names one.
    metrics: ClassVar[Mapping[str, Mode] | None] = None
    grad_clip_norm: ClassVar[float | None] = None  # clip the gradient's global norm to this, if set
    grad_accumulation: ClassVar[int] = 1  # batches per optimizer step
    precision: ClassVar[Precision] = "fp32"  # "bf16": autocast to bfloat16 when training on a GPU

    @abstractmethod
    def build_model(self, seed: int) -> torch.nn.Module:
        """A freshly initialised model. The trainer calls it with torch's RNG seeded from
        ``seed``, so drawing from torch's global RNG is deterministic; no need to seed here."""

    # -- the first form: tensors in memory ---------------------------------------------------------
    def load_data(self, seed: int) -> Dataset:
        """The train/validation split for ``seed``: the same seed gives the same tensors.

        Called once per worker process and shared by its trials, so all of them are ranked on the
        same validation set. Tensors on the CPU; the trainer moves them. Not needed by a workload
        that streams its own batches.
        """
        raise NotImplementedError(f"workload {self.name!r} has neither load_data nor train_batches")

    def loss_fn(self) -> LossFn:
        """``loss(output, target)`` -> the mean loss over the batch, e.g. ``nn.CrossEntropyLoss()``.
        Not needed by a workload with its own ``training_step`` and ``validation_step``."""
        raise NotImplementedError(f"workload {self.name!r} has neither loss_fn nor training_step")

    def count_correct(self, output: Tensor, target: Tensor) -> int:
        """Number of correct predictions in a batch (classification only).

        The default reads ``output`` as logits: argmax over classes, or ``> 0`` for a single logit.
        """
        if output.ndim > 1 and output.shape[-1] > 1:
            predicted = output.argmax(dim=-1)
        else:
            predicted = (output.reshape(target.shape) > 0).to(target.dtype)
        return int((predicted == target).sum())

    # -- the second form: your own batches and step -------------------------------------------------
    def train_batches(self, batch_size: int) -> Iterable[Any]:
        """The training batches of one pass over the data (an epoch), iterated anew for every pass.

        Any iterable: a ``DataLoader`` over files, a generator, a list. lrsearch seeds torch's
        global RNG from the job's training seed and the pass's number just before it starts each
        pass, so shuffle with torch's RNG (``DataLoader(shuffle=True)`` does) and every trial of a
        job sees the same batches in the same order. Epoch jobs need ``len()`` of it (the number of
        batches of a pass), to lay the schedule out; step jobs do not. A batch is what
        ``training_step`` takes: a tensor, or a tuple, list or dict of them, moved to the trial's
        device by lrsearch."""
        raise NotImplementedError

    def val_batches(self, batch_size: int) -> Iterable[Any]:
        """The validation batches, the same ones in the same order at every evaluation."""
        raise NotImplementedError

    def training_step(self, model: torch.nn.Module, batch: Any) -> Tensor:
        """The loss of one batch, a scalar tensor to call ``backward()`` on. The default is
        ``loss_fn()(model(x), y)`` for a batch ``(x, y)``."""
        x, y = batch
        return self._loss()(model(x), y)

    def validation_step(self, model: torch.nn.Module, batch: Any) -> Mapping[str, float | Tensor]:
        """The validation metrics of one batch by name, including ``val_loss``. lrsearch reports
        each metric's mean over the validation batches, weighted by their sizes (the first
        dimension of the batch's first tensor), and runs this under ``torch.no_grad()`` with the
        model in eval mode. The default: ``val_loss`` by ``loss_fn``, and ``val_accuracy`` by
        ``count_correct`` for classification."""
        x, y = batch
        output = model(x)
        out: dict[str, float | Tensor] = {"val_loss": self._loss()(output, y)}
        if self.task == "classification":
            out["val_accuracy"] = self.count_correct(output, y) / max(1, len(y))
        return out

    def _loss(self) -> LossFn:
        # loss_fn() builds a module each call; one per instance is enough (losses are stateless).
        loss = self.__dict__.get("_cached_loss_fn")
        if loss is None:
            loss = self.__dict__["_cached_loss_fn"] = self.loss_fn()
        return loss

    # -- what the trainer asks -------------------------------------------------------------------------
    @property
    def streams(self) -> bool:
        """True when the workload hands over its own batches (the second form)."""
        return type(self).train_batches is not Workload.train_batches

    @property
    def own_steps(self) -> bool:
        """True when the workload has its own training or validation step."""
        return (type(self).training_step is not Workload.training_step
                or type(self).validation_step is not Workload.validation_step)

    @classmethod
    def reported_metrics(cls) -> dict[str, Mode]:
        """Every validation metric the workload reports, with the direction that is better."""
        if cls.metrics is not None:
            return {"val_loss": "min", **dict(cls.metrics)}
        return default_metrics(cls.task)


def default_metrics(task: Task) -> dict[str, Mode]:
    """What an in-memory workload with the default validation step reports."""
    return {"val_loss": "min", "val_accuracy": "max"} if task == "classification" else {"val_loss": "min"}
