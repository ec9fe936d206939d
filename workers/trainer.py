"""One trial's training: rounds of a workload under one config, divergence detection, checkpoints.

A round ends with an evaluation: one epoch (a pass over the training data) in an epoch job, or
``eval_every`` optimizer steps in a step job. Pure torch, no Ray: the Ray layer builds a
TrialTrainer (or calls ``train``) and reports each EpochResult. Built for short trials: in-memory
tensors stay on the device and batches are taken by indexing with a seeded permutation; a workload
that streams its own batches is read as it goes (workers/batches.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from lrsearch.search.catalog import complete_config
from lrsearch.workers import _params
from lrsearch.workers.batches import TrainBatches, batch_size_of, to_device
from lrsearch.workers.optimizers import build_optimizer
from lrsearch.workers.rng import RngState, own_rng
from lrsearch.workers.schedules import build_schedule
from lrsearch.workers.workloads.base import Dataset, Workload

if TYPE_CHECKING:
    from lrsearch.workers.data_parallel import ProcessGroup

CHECKPOINT_FORMAT = 2  # 1: epoch jobs of in-memory workloads only (still loaded)


@dataclass
class EpochResult:
    """One finished round: the row the service stores as a Metric (plus divergence)."""

    epoch: int  # 0-based round: the epoch in an epoch job, the evaluation's index in a step job
    train_loss: float  # mean over the examples seen this round; nan/inf when diverged
    val_loss: float
    val_accuracy: float | None  # None for workloads without accuracy and when val_loss is not finite
    lr: float  # the rate in effect at the round's first step
    diverged: bool = False
    # Stopped after its first round for having learned nothing (only with ``stop_without_progress``).
    stalled: bool = False
    # Why it diverged: "train loss became nan at step 3 of epoch 0", "val loss became inf at epoch 2",
    # "val loss 101.7 exploded above 10x the first epoch's (6.406) at epoch 1" (epoch 0: the untrained
    # model's); or why it stalled.
    reason: str | None = None
    step: int = 0  # optimizer steps taken when the round's evaluation ran
    # Every validation metric the workload reported (val_loss and val_accuracy among them).
    metrics: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self, *, nonfinite_as_none: bool = False) -> dict[str, Any]:
        """Plain dict. ``nonfinite_as_none``: nan/inf floats become None (strict JSON has no NaN)."""
        out = asdict(self)
        if nonfinite_as_none:
            for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
                out[key] = _finite_or_none(out[key])
            out["metrics"] = {k: _finite_or_none(v) for k, v in out["metrics"].items()}
        return out


def share_of(batch: Any, rank: int, world: int) -> Any:
    """Worker ``rank``'s contiguous share of a global batch (every tensor sliced along its first
    dimension); a batch smaller than the world is trained whole by each worker."""
    size = batch_size_of(batch)
    if size < world:
        return batch
    per = -(-size // world)
    return _sliced(batch, rank * per, min(size, (rank + 1) * per))


def _sliced(batch: Any, start: int, stop: int) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch[start:stop] if batch.ndim > 0 else batch
    if isinstance(batch, Mapping):
        return {k: _sliced(v, start, stop) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_sliced(v, start, stop) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_sliced(v, start, stop) for v in batch)
    return batch


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


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
    """Trains ``workload`` under ``config`` for ``epochs`` epochs, or for ``steps`` optimizer steps
    evaluated every ``eval_every``, one ``run_epoch()`` (one round) at a time.

    ``config`` holds ``lr``, ``optimizer``, ``schedule``, ``warmup_fraction`` and any catalog
    parameters; missing ones take the catalog's defaults (``self.config`` is the completed one).
    The schedule and warmup run over the whole run's optimizer steps; their parameters are in
    epochs for an epoch job and in steps for a step job (``step_size``, the exponential's
    ``gamma`` per unit). Same workload, data, config, length and seed give the same results on
    the same device; the trainer keeps its own torch RNG stream, so other code in the process
    does not perturb it. A bad config raises ValueError here, before any training. ``data`` (in-
    memory workloads) may live on the CPU and be shared between trainers: it is copied to
    ``device`` once and never written; a streaming workload takes ``data=None``.

    Divergence ends the trial (``finished``): a non-finite batch loss (the round stops at that
    batch, without a step), a non-finite gradient norm under clipping, a non-finite validation
    loss, or a validation loss above ``divergence_factor`` times the first round's (for round 0:
    the untrained model's). With ``stop_without_progress`` (the service sets it when the job has
    early stopping), a trial whose validation loss after its first round is not at least 1% below
    the untrained model's also ends there, ``stalled``: see :func:`learned_nothing`.
    """

    def __init__(
        self,
        workload: Workload,
        data: Dataset | None,
        config: Mapping[str, Any],
        epochs: int | None,
        seed: int,
        device: str | torch.device = "cpu",
        divergence_factor: float = 10.0,
        stop_without_progress: bool = False,
        *,
        steps: int | None = None,
        eval_every: int | None = None,
        batch_size: int | None = None,
        data_parallel: ProcessGroup | None = None,
    ) -> None:
        if (epochs is None) == (steps is None):
            raise ValueError("give either epochs or steps")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be positive, got {epochs}")
        if steps is not None:
            eval_every = steps if eval_every is None else eval_every
            if steps < 1 or eval_every < 1:
                raise ValueError(f"steps and eval_every must be positive, got {steps} and {eval_every}")
        schedule_length = epochs if epochs is not None else steps
        assert schedule_length is not None
        _params.validate(config, schedule_length)  # named errors, before complete_config would cast blindly
        self.workload = workload
        self.config = complete_config(dict(config), schedule_length)
        self.seed = seed
        self.device = torch.device(device)
        self.divergence_factor = divergence_factor
        self.stop_without_progress = stop_without_progress
        self.steps = steps
        self.eval_every = eval_every
        self._accumulation = max(1, int(workload.grad_accumulation))
        # Data-parallel (a process group this process joined, see workers/data_parallel.py): every
        # worker draws the same global batches and trains on its share of each; gradients are averaged.
        self._rank, self._world = (data_parallel.rank, data_parallel.world) if data_parallel else (0, 1)
        self._clip = workload.grad_clip_norm

        self._batches = TrainBatches(workload, data, batch_size or workload.batch_size, seed, self.device)
        if epochs is not None:
            per_pass = self._batches.batches_per_pass()
            if per_pass is None:
                raise ValueError(f"workload {workload.name!r}: its train_batches has no len(), so an epoch's "
                                 "steps are unknown; give the job steps and eval_every instead of epochs")
            self.steps_per_epoch = max(1, math.ceil(per_pass / self._accumulation))
            self.epochs = epochs  # rounds
            self.total_steps = epochs * self.steps_per_epoch
        else:
            assert steps is not None and eval_every is not None
            self.steps_per_epoch = 1  # the schedule's unit is the step
            self.epochs = math.ceil(steps / eval_every)
            self.total_steps = steps
        # In memory, validation reads the copy TrainBatches moved (or loaded) to the device.
        self._val_data = self._batches.data
        self._train_step = workload.training_step
        self._fast_eval = not workload.streams and type(workload).validation_step is Workload.validation_step

        self._rng_state: RngState | None = None  # torch's global RNG, as this trial left it
        with self._own_rng():
            self.model = workload.build_model(seed).to(self.device)
        self._trained_model = self.model  # what the training step runs: the model, or its DDP wrapper
        if data_parallel is not None and self._world > 1:
            self._trained_model = data_parallel.wrap(self.model)
        self.optimizer = build_optimizer(self.model.parameters(), self.config)
        self.scheduler = build_schedule(
            self.optimizer, self.config, epochs=schedule_length, steps_per_epoch=self.steps_per_epoch
        )

        self._epochs_done = 0
        self._steps_done = 0
        self._first_val_loss: float | None = None
        self.untrained_val_loss: float | None = None  # measured before the first round trains
        self._diverged = False
        self._stalled = False

    @property
    def epochs_done(self) -> int:
        return self._epochs_done

    @property
    def steps_done(self) -> int:
        return self._steps_done

    @property
    def diverged(self) -> bool:
        return self._diverged

    @property
    def stalled(self) -> bool:
        return self._stalled

    @property
    def finished(self) -> bool:
        """Every round ran, or one diverged or stalled: ``run_epoch`` would raise."""
        return self._diverged or self._stalled or self._epochs_done >= self.epochs

    def _unit(self, epoch: int) -> str:
        return f"epoch {epoch}" if self.steps is None else f"step {self._steps_done}"

    def run_epoch(self) -> EpochResult:
        """Train one round (an epoch, or ``eval_every`` steps), then evaluate on the validation set."""
        if self.finished:
            unit = "epochs" if self.steps is None else "evaluations"
            why = "diverged" if self._diverged else "stalled" if self._stalled else f"all {self.epochs} {unit} done"
            raise RuntimeError(f"trial is finished ({why})")
        epoch = self._epochs_done
        first_round = "the first epoch's" if self.steps is None else "the first evaluation's"
        lr = float(self.optimizer.param_groups[0]["lr"])
        if epoch == 0:
            # Round 0 has no earlier round to be judged against: one extra validation pass per trial.
            baseline, baseline_name = self._evaluate()["val_loss"], "the untrained model's"
            self.untrained_val_loss = baseline
        else:
            baseline, baseline_name = self._first_val_loss, first_round
        with self._own_rng():
            train_loss, reason = self._train_round(epoch)
        metrics = self._evaluate()
        val_loss = float(metrics["val_loss"]) if metrics["val_loss"] is not None else math.nan

        if reason is None and not math.isfinite(val_loss):
            reason = f"val loss became {val_loss} at {self._unit(epoch)}"
        if reason is None and baseline is not None and math.isfinite(baseline) and baseline > 0:
            if val_loss > self.divergence_factor * baseline:
                reason = (
                    f"val loss {val_loss:.4g} exploded above {self.divergence_factor:g}x "
                    f"{baseline_name} ({baseline:.4g}) at {self._unit(epoch)}"
                )
        if epoch == 0 and math.isfinite(val_loss):
            self._first_val_loss = val_loss
        stalled = (reason is None and epoch == 0 and self.stop_without_progress and self.epochs > 1
                   and learned_nothing(val_loss, baseline))
        if stalled:
            first = "first epoch" if self.steps is None else "first evaluation"
            reason = (f"val loss {val_loss:.4g} after the {first} is not {MIN_FIRST_EPOCH_PROGRESS:.0%} below "
                      f"the untrained model's ({baseline:.4g}): stopped as hopeless")

        self._epochs_done += 1
        self._diverged = reason is not None and not stalled
        self._stalled = stalled
        accuracy = metrics.get("val_accuracy")
        return EpochResult(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            val_accuracy=float(accuracy) if accuracy is not None and math.isfinite(val_loss) else None,
            lr=lr,
            diverged=self._diverged,
            stalled=stalled,
            reason=reason,
            step=self._steps_done,
            metrics=metrics,
        )

    def _train_round(self, epoch: int) -> tuple[float, str | None]:
        """Mean training loss, and why the round stopped early (a non-finite loss or gradient) or None."""
        self.model.train()
        loss_sum, seen, step_in_round = 0.0, 0, 0
        if self.steps is None:  # an epoch: until the pass over the data ends
            def more() -> bool:
                return step_in_round == 0 or not self._batches.pass_ended
        else:
            assert self.eval_every is not None
            end = min(self.steps, (epoch + 1) * self.eval_every)

            def more() -> bool:
                return self._steps_done < end
        while more():
            step_loss, step_seen, problem = self._step()
            loss_sum += step_loss
            seen += step_seen
            if problem is not None:
                where = (f"step {step_in_round} of epoch {epoch}" if self.steps is None
                         else f"step {self._steps_done}")
                return loss_sum / max(1, seen), f"{problem} at {where}"
            step_in_round += 1
        return loss_sum / max(1, seen), None

    def _step(self) -> tuple[float, int, str | None]:
        """One optimizer step over ``grad_accumulation`` batches (never across the end of an epoch's
        pass), the gradient their mean weighted by batch size: the summed loss times batch sizes, the
        examples seen, and what went wrong or None.
        A non-finite loss or gradient norm takes no step: the parameters stay what they were."""
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, seen = 0.0, 0
        for micro in range(self._accumulation):
            if micro > 0 and self.steps is None and self._batches.pass_ended:
                break
            batch = self._batches.take()
            if self._world > 1:
                batch = share_of(batch, self._rank, self._world)
            with self._autocast():
                loss = self._train_step(self._trained_model, batch)
            value = float(loss.detach())
            n = batch_size_of(batch)
            total, count, finite = self._summed(value, n)
            loss_sum += total
            seen += count
            if not finite:  # on this worker or another: none of them steps
                return loss_sum, seen, f"train loss became {value if not math.isfinite(value) else math.nan}"
            # Accumulating, each batch counts by its size: the step's gradient is the mean over all
            # its examples, as one batch of them all would give (a short last batch too).
            (loss * n if self._accumulation > 1 else loss).backward()
        if self._accumulation > 1:
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            if grads:  # data-parallel: the gradients are already averaged over the workers
                torch._foreach_mul_(grads, self._world / seen)
        if self._clip is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self._clip))
            if not math.isfinite(norm):
                return loss_sum, seen, f"gradient norm became {norm}"
        self.optimizer.step()
        self.scheduler.step()
        self._steps_done += 1
        return loss_sum, seen, None

    def _summed(self, value: float, n: int) -> tuple[float, int, bool]:
        """(loss x examples, examples, whether every loss was finite) over the workers of the trial."""
        finite = math.isfinite(value)
        if self._world == 1:
            return value * n, n, finite
        import torch.distributed as dist

        device = self.device if self.device.type == "cuda" else torch.device("cpu")
        t = torch.tensor([value * n if finite else 0.0, float(n), 0.0 if finite else 1.0],
                         dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t[0]), int(t[1]), float(t[2]) == 0.0

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.device.type == "cuda" and self.workload.precision == "bf16":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return nullcontext()

    @torch.no_grad()
    def _evaluate(self) -> dict[str, float | None]:
        """Every validation metric: the mean over the validation set (weighted by batch sizes)."""
        self.model.eval()
        if self._fast_eval:
            return self._evaluate_in_memory()
        totals: dict[str, float] = {}
        seen = 0
        for batch in self._val_batches():
            batch = to_device(batch, self.device)
            with self._autocast():
                values = self.workload.validation_step(self.model, batch)
            n = batch_size_of(batch)
            seen += n
            for name, value in values.items():
                totals[name] = totals.get(name, 0.0) + float(value) * n
        if "val_loss" not in totals:
            raise ValueError(f"workload {self.workload.name!r}: validation_step must report 'val_loss' "
                             f"(it reported {sorted(totals) or 'nothing'})")
        return {name: total / seen for name, total in totals.items()}

    def _val_batches(self) -> Iterable[Any]:
        if self._val_data is None:
            return self.workload.val_batches(self.workload.eval_batch_size)
        x, y, chunk = self._val_data.val_x, self._val_data.val_y, self.workload.eval_batch_size
        return ((x[start:start + chunk], y[start:start + chunk]) for start in range(0, len(x), chunk))

    def _evaluate_in_memory(self) -> dict[str, float | None]:
        """The default validation step on in-memory tensors, with one host sync per evaluation."""
        data = self._val_data
        assert data is not None
        loss_fn = self.workload._loss()
        classification = self.workload.task == "classification"
        x, y = data.val_x, data.val_y
        n = len(x)
        loss_sum = torch.zeros((), device=self.device)
        correct = 0
        chunk = self.workload.eval_batch_size
        for start in range(0, n, chunk):
            xb, yb = x[start : start + chunk], y[start : start + chunk]
            output = self.model(xb)
            loss_sum += loss_fn(output, yb).float() * len(xb)  # the loss is a batch mean
            if classification:
                correct += self.workload.count_correct(output, yb)
        metrics: dict[str, float | None] = {"val_loss": float(loss_sum) / n}
        if classification:
            metrics["val_accuracy"] = correct / n
        return metrics

    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run with torch's global RNG (model init, dropout) on this trial's own stream
        (workers/rng.py), and give the process its previous state back afterwards."""
        ended: RngState = {}
        try:
            with own_rng(self.seed if self._rng_state is None else self._rng_state, self.device, ended):
                yield
        finally:
            self._rng_state = ended or self._rng_state

    def _length(self) -> list[int | None]:
        return [self.epochs if self.steps is None else None, self.steps, self.eval_every]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this left off: plain types and CPU tensors
        (copies, unaffected by further training), loadable with ``torch.load(weights_only=True)``."""
        assert self._rng_state is not None  # set by __init__
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": dict(self.config),
            "epochs": self.epochs,
            "length": self._length(),
            "seed": self.seed,
            "epochs_done": self._epochs_done,
            "steps_done": self._steps_done,
            "first_val_loss": self._first_val_loss,
            "diverged": self._diverged,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "batches": self._batches.state_dict(),
            "torch_rng": dict(self._rng_state),
        }
        return _cpu_copy(state)

    def inherit(self, state: Mapping[str, Any]) -> None:
        """Continue another config's training with this trainer's hyperparameters (population-based
        training: a member's next segment, or a worse member taking a better one's place). Its
        weights, optimizer state, data position and RNG carry over; the rate and the optimizer's
        other settings become this config's. The optimizer, length and seed must match."""
        theirs = state["config"]
        if theirs.get("optimizer") != self.config.get("optimizer"):
            raise ValueError(f"cannot continue a {theirs.get('optimizer')} training with {self.config.get('optimizer')}")
        mine = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
        self.load_state_dict({**state, "config": dict(self.config)})
        rate = float(self.config["lr"])
        self.scheduler.base_lrs = [rate for _ in self.optimizer.param_groups]
        for group, settings in zip(self.optimizer.param_groups, mine):
            group.update({k: v for k, v in settings.items() if k not in ("lr", "initial_lr")})
            group["initial_lr"] = rate
        # The rate of the next step, from the schedule's closed form at the step count reached.
        step = self.scheduler.last_epoch
        for group, multiplier in zip(self.optimizer.param_groups, self.scheduler.lr_lambdas):
            group["lr"] = rate * multiplier(step)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; this trainer must have been built with the same config,
        length and seed (ValueError otherwise). The data and device may differ from the saver's."""
        version = state.get("format")
        if version not in (1, CHECKPOINT_FORMAT):
            raise ValueError(f"unknown checkpoint format {version!r}")
        mine = {"config": self.config, "epochs": self.epochs, "seed": self.seed}
        if version == CHECKPOINT_FORMAT:
            mine["length"] = self._length()
        for key, value in mine.items():
            if state[key] != value:
                raise ValueError(f"checkpoint {key} {state[key]!r} differs from this trainer's {value!r}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if version == 1:  # taken at the end of an epoch: the shuffle stream as the next pass finds it
            self._batches.load_state_dict({"pass": -1, "taken": 0, "rng": state["shuffle_rng"]})
            self._steps_done = int(state["epochs_done"]) * self.steps_per_epoch
        else:
            self._batches.load_state_dict(state["batches"])
            self._steps_done = int(state["steps_done"])
        rng = state["torch_rng"]
        self._rng_state = {"cpu": rng["cpu"]} | ({"cuda": rng["cuda"]} if "cuda" in rng else {})
        self._epochs_done = int(state["epochs_done"])
        self._first_val_loss = state["first_val_loss"]
        self._diverged = bool(state["diverged"])


def train(
    workload: Workload,
    data: Dataset | None,
    config: Mapping[str, Any],
    epochs: int | None,
    seed: int,
    device: str | torch.device = "cpu",
    should_stop: Callable[[], bool] = lambda: False,
    divergence_factor: float = 10.0,
    **length: Any,
) -> Iterator[EpochResult]:
    """One EpochResult per round, as each ends; stops after a diverged round, or before a round when
    ``should_stop()`` is true (cancellation, early stopping). ``length`` takes ``steps`` and
    ``eval_every`` (with ``epochs=None``) and ``batch_size``. A bad config raises ValueError
    here, at the call, not at the first ``next()``."""
    trainer = TrialTrainer(workload, data, config, epochs, seed, device, divergence_factor, **length)

    def epochs_of(trainer: TrialTrainer) -> Iterator[EpochResult]:
        while not trainer.finished and not should_stop():
            yield trainer.run_epoch()

    return epochs_of(trainer)


def warm_up(workloads: Iterable[str] = ()) -> None:
    """Pay a process's one-time import costs before its first trial: torch imports torch._dynamo
    (~1.5 s) when the first optimizer is built, and the built-ins import scikit-learn (~1.5 s).
    For a worker's start-up; loads no data."""
    from lrsearch.workers.registry import get_workload

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
