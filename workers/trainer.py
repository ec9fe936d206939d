"""One trial's training: epochs of a workload under one config, divergence detection, checkpoints.

Pure torch, no Ray: the Ray layer builds a TrialTrainer (or calls ``train``) and reports each
EpochResult. Built for short trials: tensors stay in memory on the device, batches are taken by
indexing with a seeded permutation, and nothing runs per batch that a small model cannot afford.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch

from search.catalog import complete_config
from workers import _params
from workers.optimizers import build_optimizer
from workers.schedules import build_schedule
from workers.workloads.base import Dataset, Workload

CHECKPOINT_FORMAT = 1
# The shuffling stream is seeded apart from the model's init/dropout stream so the two never mirror each other.
_SHUFFLE_SEED_OFFSET = 0x5EED


@dataclass
class EpochResult:
    """One finished epoch: the row the service stores as a Metric (plus divergence)."""

    epoch: int  # 0-based
    train_loss: float  # mean over the examples seen this epoch; nan/inf when diverged
    val_loss: float
    val_accuracy: float | None  # None for regression workloads and when val_loss is not finite
    lr: float  # the rate in effect at the epoch's first step
    diverged: bool = False
    # Stopped after its first epoch for having learned nothing (only with ``stop_without_progress``).
    stalled: bool = False
    # Why it diverged: "train loss became nan at step 3 of epoch 0", "val loss became inf at epoch 2",
    # "val loss 101.7 exploded above 10x the first epoch's (6.406) at epoch 1" (epoch 0: the untrained
    # model's); or why it stalled.
    reason: str | None = None

    def to_dict(self, *, nonfinite_as_none: bool = False) -> dict[str, Any]:
        """Plain dict. ``nonfinite_as_none``: nan/inf floats become None (strict JSON has no NaN)."""
        out = asdict(self)
        if nonfinite_as_none:
            for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
                value = out[key]
                if isinstance(value, float) and not math.isfinite(value):
                    out[key] = None
        return out


# A first epoch that removed less than this share of the untrained model's validation loss
# learned nothing (see learned_nothing).
MIN_FIRST_EPOCH_PROGRESS = 0.01


def learned_nothing(first_val_loss: float, untrained_val_loss: float | None) -> bool:
    """After its first epoch, a trial whose validation loss is not at least 1% below the untrained
    model's has learned nothing: its rate is far too high (it bounces at or above the start) or far
    too low (it crawls), and it is hopeless. Of 51,297 ten-epoch trainings on mlp-digits
    (bench/search_replay.py, 40 seeds), 8,798 removed under 1% of the untrained loss in their
    first epoch and none of them ever got below a val_loss of 0.31, against grid bests of
    0.08-0.11; every one of the 2,051 that came within 2% of its grid best had removed at least 66%.
    Replayed on five draws of those 40 seeds (each search seeded anew, the same trainings), stopping
    them saved 9% of bayesian + ASHA's epochs at 30 trials, and as many seeds came within 2% of the
    grid best at 100 trials (29.8 of 40 on average, as without); at 2% instead of 1%, fewer did
    (bench/search_experiments.md). A rate that learns slowly but measurably is left to the early-stopping
    rule."""
    if untrained_val_loss is None or not math.isfinite(untrained_val_loss) or not math.isfinite(first_val_loss):
        return False
    # abs(): a workload's loss may be negative (a log-likelihood); progress is still a decrease.
    return untrained_val_loss - first_val_loss < MIN_FIRST_EPOCH_PROGRESS * abs(untrained_val_loss)


class TrialTrainer:
    """Trains ``workload`` for ``epochs`` epochs under ``config``, one ``run_epoch()`` at a time.

    ``config`` holds ``lr``, ``optimizer``, ``schedule``, ``warmup_fraction`` and any catalog
    parameters; missing ones take the catalog's defaults (``self.config`` is the completed one).
    Same workload, data, config, epochs and seed give the same results on the same device; the
    trainer keeps its own torch RNG stream, so other code in the process does not perturb it.
    A bad config raises ValueError here, before any training. ``data`` may live on the CPU and be
    shared between trainers: it is copied to ``device`` once and never written.

    Divergence ends the trial (``finished``): a non-finite batch loss (the epoch stops at that
    batch, without a step), a non-finite validation loss, or a validation loss above
    ``divergence_factor`` times the first epoch's (for epoch 0: the untrained model's).
    With ``stop_without_progress`` (the service sets it when the job has early stopping), a
    trial whose validation loss after its first epoch is not at least 1% below the untrained
    model's also ends there, ``stalled``: see :func:`learned_nothing`.
    """

    def __init__(
        self,
        workload: Workload,
        data: Dataset,
        config: Mapping[str, Any],
        epochs: int,
        seed: int,
        device: str | torch.device = "cpu",
        divergence_factor: float = 10.0,
        stop_without_progress: bool = False,
    ) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be positive, got {epochs}")
        _params.validate(config, epochs)  # named errors, before complete_config would cast blindly
        self.workload = workload
        self.config = complete_config(dict(config), epochs)
        self.epochs = epochs
        self.seed = seed
        self.device = torch.device(device)
        self.divergence_factor = divergence_factor
        self.stop_without_progress = stop_without_progress

        # Data goes to the device once; batches are gathered from it by index.
        self._data = data.to(self.device)
        self._batch_size = workload.batch_size
        self.steps_per_epoch = math.ceil(data.num_train / self._batch_size)
        self._classification = workload.task == "classification"
        self._loss_fn = workload.loss_fn()

        self._rng_state: dict[str, torch.Tensor] | None = None  # torch's global RNG, as this trial left it
        with self._own_rng():
            self.model = workload.build_model(seed).to(self.device)
        self.optimizer = build_optimizer(self.model.parameters(), self.config)
        self.scheduler = build_schedule(
            self.optimizer, self.config, epochs=epochs, steps_per_epoch=self.steps_per_epoch
        )
        self._shuffle_rng = torch.Generator().manual_seed(seed + _SHUFFLE_SEED_OFFSET)

        self._epochs_done = 0
        self._first_val_loss: float | None = None
        self.untrained_val_loss: float | None = None  # measured before the first epoch trains
        self._diverged = False
        self._stalled = False

    @property
    def epochs_done(self) -> int:
        return self._epochs_done

    @property
    def diverged(self) -> bool:
        return self._diverged

    @property
    def stalled(self) -> bool:
        return self._stalled

    @property
    def finished(self) -> bool:
        """All epochs ran, or one diverged or stalled: ``run_epoch`` would raise."""
        return self._diverged or self._stalled or self._epochs_done >= self.epochs

    def run_epoch(self) -> EpochResult:
        """Train one epoch, then evaluate on the validation set."""
        if self.finished:
            why = "diverged" if self._diverged else "stalled" if self._stalled else f"all {self.epochs} epochs done"
            raise RuntimeError(f"trial is finished ({why})")
        epoch = self._epochs_done
        lr = float(self.optimizer.param_groups[0]["lr"])
        if epoch == 0:
            # Epoch 0 has no earlier epoch to be judged against: one extra validation pass per trial.
            baseline, baseline_name = self._evaluate()[0], "the untrained model's"
            self.untrained_val_loss = baseline
        else:
            baseline, baseline_name = self._first_val_loss, "the first epoch's"
        with self._own_rng():
            train_loss, reason = self._train_epoch(epoch)
        val_loss, val_accuracy = self._evaluate()

        if reason is None and not math.isfinite(val_loss):
            reason = f"val loss became {val_loss} at epoch {epoch}"
        if reason is None and baseline is not None and math.isfinite(baseline) and baseline > 0:
            if val_loss > self.divergence_factor * baseline:
                reason = (
                    f"val loss {val_loss:.4g} exploded above {self.divergence_factor:g}x "
                    f"{baseline_name} ({baseline:.4g}) at epoch {epoch}"
                )
        if epoch == 0 and math.isfinite(val_loss):
            self._first_val_loss = val_loss
        stalled = (reason is None and epoch == 0 and self.stop_without_progress and self.epochs > 1
                   and learned_nothing(val_loss, baseline))
        if stalled:
            reason = (f"val loss {val_loss:.4g} after the first epoch is not {MIN_FIRST_EPOCH_PROGRESS:.0%} below "
                      f"the untrained model's ({baseline:.4g}): stopped as hopeless")

        self._epochs_done += 1
        self._diverged = reason is not None and not stalled
        self._stalled = stalled
        return EpochResult(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            val_accuracy=val_accuracy if math.isfinite(val_loss) else None,
            lr=lr,
            diverged=self._diverged,
            stalled=stalled,
            reason=reason,
        )

    def _train_epoch(self, epoch: int) -> tuple[float, str | None]:
        """Mean training loss, and why the epoch stopped early (a non-finite batch loss) or None."""
        self.model.train()
        x, y = self._data.train_x, self._data.train_y
        n = len(x)
        order = torch.randperm(n, generator=self._shuffle_rng).to(self.device)
        loss_sum, seen = 0.0, 0
        for step, start in enumerate(range(0, n, self._batch_size)):
            index = order[start : start + self._batch_size]
            loss = self._loss_fn(self.model(x[index]), y[index])
            value = loss.item()
            loss_sum += value * len(index)
            seen += len(index)
            if not math.isfinite(value):
                # No step on a non-finite loss: the parameters stay what they were.
                return loss_sum / seen, f"train loss became {value} at step {step} of epoch {epoch}"
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
        return loss_sum / seen, None

    @torch.no_grad()
    def _evaluate(self) -> tuple[float, float | None]:
        self.model.eval()
        x, y = self._data.val_x, self._data.val_y
        n = len(x)
        loss_sum = torch.zeros((), device=self.device)
        correct = 0
        chunk = self.workload.eval_batch_size
        for start in range(0, n, chunk):
            xb, yb = x[start : start + chunk], y[start : start + chunk]
            output = self.model(xb)
            loss_sum += self._loss_fn(output, yb).float() * len(xb)  # the loss is a batch mean
            if self._classification:
                correct += self.workload.count_correct(output, yb)
        return float(loss_sum) / n, (correct / n if self._classification else None)

    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run with torch's global RNG (model init, dropout) on this trial's own stream, and give
        the process its previous state back afterwards."""
        cuda = self.device.type == "cuda"
        outer_cpu = torch.get_rng_state()
        outer_cuda = torch.cuda.get_rng_state(self.device) if cuda else None
        if self._rng_state is None:
            torch.manual_seed(self.seed)
        else:
            torch.set_rng_state(self._rng_state["cpu"])
            if cuda and "cuda" in self._rng_state:
                torch.cuda.set_rng_state(self._rng_state["cuda"], self.device)
        try:
            yield
        finally:
            self._rng_state = {"cpu": torch.get_rng_state()}
            if cuda:
                self._rng_state["cuda"] = torch.cuda.get_rng_state(self.device)
            torch.set_rng_state(outer_cpu)
            if outer_cuda is not None:
                torch.cuda.set_rng_state(outer_cuda, self.device)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this left off: plain types and CPU tensors
        (copies, unaffected by further training), loadable with ``torch.load(weights_only=True)``."""
        assert self._rng_state is not None  # set by __init__
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": dict(self.config),
            "epochs": self.epochs,
            "seed": self.seed,
            "epochs_done": self._epochs_done,
            "first_val_loss": self._first_val_loss,
            "diverged": self._diverged,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "shuffle_rng": self._shuffle_rng.get_state(),
            "torch_rng": dict(self._rng_state),
        }
        return _cpu_copy(state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; this trainer must have been built with the same config,
        epochs and seed (ValueError otherwise). The data and device may differ from the saver's."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"unknown checkpoint format {state.get('format')!r}")
        for key, mine in (("config", self.config), ("epochs", self.epochs), ("seed", self.seed)):
            if state[key] != mine:
                raise ValueError(f"checkpoint {key} {state[key]!r} differs from this trainer's {mine!r}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._shuffle_rng.set_state(state["shuffle_rng"])
        rng = state["torch_rng"]
        self._rng_state = {"cpu": rng["cpu"]} | ({"cuda": rng["cuda"]} if "cuda" in rng else {})
        self._epochs_done = int(state["epochs_done"])
        self._first_val_loss = state["first_val_loss"]
        self._diverged = bool(state["diverged"])


def train(
    workload: Workload,
    data: Dataset,
    config: Mapping[str, Any],
    epochs: int,
    seed: int,
    device: str | torch.device = "cpu",
    should_stop: Callable[[], bool] = lambda: False,
    divergence_factor: float = 10.0,
) -> Iterator[EpochResult]:
    """One EpochResult per epoch, as each ends; stops after a diverged epoch, or before an epoch when
    ``should_stop()`` is true (cancellation, early stopping). A bad config raises ValueError
    here, at the call, not at the first ``next()``."""
    trainer = TrialTrainer(workload, data, config, epochs, seed, device, divergence_factor)

    def epochs_of(trainer: TrialTrainer) -> Iterator[EpochResult]:
        while not trainer.finished and not should_stop():
            yield trainer.run_epoch()

    return epochs_of(trainer)


def warm_up(workloads: Iterable[str] = ()) -> None:
    """Pay a process's one-time import costs before its first trial: torch imports torch._dynamo
    (~1.5 s) when the first optimizer is built, and the built-ins import scikit-learn (~1.5 s).
    For a worker's start-up; loads no data."""
    from workers.registry import get_workload

    parameter = torch.nn.Parameter(torch.zeros(1))
    build_optimizer([parameter], {"optimizer": "sgd", "lr": 1.0})
    for name in workloads:
        get_workload(name)


def _cpu_copy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, Mapping):
        return {key: _cpu_copy(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(value) for value in obj)
    return obj
