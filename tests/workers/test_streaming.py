"""The workload API's second form: a workload's own batches and step, step budgets, accumulation,
clipping, and the built-in that uses them all (gpt-stdlib)."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lrsearch.workers.registry import get_dataset, get_workload
from lrsearch.workers.schedules import build_multiplier
from lrsearch.workers.trainer import TrialTrainer
from lrsearch.workers.workloads.base import Workload
from lrsearch.workers.workloads.digits import MLPDigits
from lrsearch.workers.workloads.gpt_stdlib import WINDOW, ByteWindowStream, split_files, stdlib_files

ADAMW = {"lr": 3e-3, "optimizer": "adamw", "schedule": "cosine", "warmup_fraction": 0.1}


class StreamedDigits(Workload):
    """mlp-digits' data handed over as a generator of batches, with its own steps; records the
    batches it handed out (their first labels), to show the order."""

    name = "streamed-digits"
    description = "digits, streamed"
    batch_size = 32
    metrics = {"val_loss": "min", "val_accuracy": "max", "val_error": "min"}

    def __init__(self, sized: bool = True) -> None:
        self.data = get_dataset("mlp-digits", 0)
        self.sized = sized
        self.seen: list[int] = []

    def build_model(self, seed: int) -> nn.Module:
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))

    def _pass(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.data.train_x))  # torch's RNG: lrsearch seeds each pass
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            self.seen.append(int(index[0]))
            yield self.data.train_x[index], self.data.train_y[index]

    def train_batches(self, batch_size: int):
        batches = self._pass(batch_size)
        if not self.sized:
            return batches
        count = math.ceil(len(self.data.train_x) / batch_size)

        class Sized:
            def __iter__(self):
                return batches

            def __len__(self) -> int:
                return count

        return Sized()

    def val_batches(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.data.val_x[i:i + 100], self.data.val_y[i:i + 100]) for i in range(0, len(self.data.val_x), 100)]

    def training_step(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def validation_step(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
        x, y = batch
        logits = model(x)
        accuracy = (logits.argmax(1) == y).float().mean()
        return {"val_loss": F.cross_entropy(logits, y), "val_accuracy": accuracy, "val_error": 1 - accuracy}


def _steps(workload: Workload, config: dict = ADAMW, steps: int = 50, eval_every: int = 20, seed: int = 0,
           **kwargs) -> TrialTrainer:
    return TrialTrainer(workload, None, config, None, seed, steps=steps, eval_every=eval_every, **kwargs)


def _all(trainer: TrialTrainer) -> list[dict]:
    out = []
    while not trainer.finished:
        out.append(trainer.run_epoch().to_dict())
    return out


def test_a_step_job_evaluates_every_eval_every_steps_and_at_the_end() -> None:
    rows = _all(_steps(StreamedDigits(), steps=50, eval_every=20))
    assert [r["step"] for r in rows] == [20, 40, 50]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    for r in rows:
        assert set(r["metrics"]) == {"val_loss", "val_accuracy", "val_error"}
        assert r["val_loss"] == r["metrics"]["val_loss"] and r["val_accuracy"] == r["metrics"]["val_accuracy"]
        assert r["metrics"]["val_error"] == pytest.approx(1 - r["metrics"]["val_accuracy"])
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]


def test_the_schedule_counts_steps_in_a_step_job() -> None:
    trainer = _steps(StreamedDigits(), steps=60, eval_every=15)
    rows = _all(trainer)
    multiplier = build_multiplier(trainer.config, epochs=60, steps_per_epoch=1)
    # Each row's rate is the one in effect at its round's first step (the step the last round ended at).
    expected = [ADAMW["lr"] * multiplier(step) for step in (0, 15, 30, 45)]
    assert [r["lr"] for r in rows] == pytest.approx(expected)
    assert trainer.config["warmup_fraction"] == 0.1 and trainer.total_steps == 60


def test_every_trial_of_a_job_sees_the_same_batches_whatever_its_config_draws() -> None:
    a, b = StreamedDigits(), StreamedDigits()
    _all(_steps(a, steps=80, eval_every=40))  # 80 steps: more than a pass of 45 batches
    _all(_steps(b, {"lr": 0.3, "optimizer": "sgd", "schedule": "constant"}, steps=80, eval_every=40))
    assert a.seen == b.seen and len(set(a.seen)) > 40
    c = StreamedDigits()
    _all(_steps(c, steps=80, eval_every=40, seed=1))
    assert c.seen != a.seen  # the training seed picks the order


def test_a_streamed_step_job_continues_exactly_from_a_checkpoint_taken_mid_pass() -> None:
    expected = _all(_steps(StreamedDigits(), steps=70, eval_every=10))
    before = _steps(StreamedDigits(), steps=70, eval_every=10)
    head = [before.run_epoch().to_dict() for _ in range(3)]  # 30 steps: inside the first pass of 45
    buffer = io.BytesIO()
    torch.save(before.state_dict(), buffer)
    buffer.seek(0)
    after = _steps(StreamedDigits(), steps=70, eval_every=10)
    after.load_state_dict(torch.load(buffer, weights_only=True))
    assert (after.epochs_done, after.steps_done) == (3, 30)
    assert head + _all(after) == expected


def test_an_epoch_job_on_streamed_batches_takes_a_pass_per_epoch() -> None:
    workload = StreamedDigits()
    trainer = TrialTrainer(workload, None, ADAMW, 2, 0)
    rows = _all(trainer)
    assert trainer.steps_per_epoch == 45 and [r["step"] for r in rows] == [45, 90]


def test_an_epoch_job_needs_batches_with_a_length() -> None:
    with pytest.raises(ValueError, match="give the job steps"):
        TrialTrainer(StreamedDigits(sized=False), None, ADAMW, 2, 0)
    assert len(_all(_steps(StreamedDigits(sized=False), steps=50, eval_every=50))) == 1  # steps do not


def test_validation_must_report_val_loss() -> None:
    class NoLoss(StreamedDigits):
        def validation_step(self, model, batch):
            return {"val_accuracy": 1.0}

    with pytest.raises(ValueError, match="must report 'val_loss'"):
        _steps(NoLoss()).run_epoch()


class AccumulatedDigits(MLPDigits):
    """mlp-digits, two batches per optimizer step."""

    grad_accumulation = 2


def test_accumulating_two_half_batches_is_one_whole_batch() -> None:
    data = get_dataset("mlp-digits", 0)
    sgd = {"lr": 0.1, "optimizer": "sgd", "schedule": "constant"}
    whole = TrialTrainer(MLPDigits(), data, sgd, 2, 0, batch_size=64)
    halves = TrialTrainer(AccumulatedDigits(), data, sgd, 2, 0, batch_size=32)
    assert halves.steps_per_epoch == whole.steps_per_epoch
    for a, b in zip(_all(whole), _all(halves)):
        assert b["step"] == a["step"]
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)


class ClippedDigits(MLPDigits):
    grad_clip_norm = 1e-6


def test_clipping_bounds_each_step() -> None:
    data = get_dataset("mlp-digits", 0)
    sgd = {"lr": 0.5, "optimizer": "sgd", "schedule": "constant", "momentum": 0.0}
    clipped = TrialTrainer(ClippedDigits(), data, sgd, 1, 0)
    free = TrialTrainer(MLPDigits(), data, sgd, 1, 0)
    start = [p.detach().clone() for p in clipped.model.parameters()]
    clipped.run_epoch()
    free.run_epoch()
    moved = math.sqrt(sum(float((p.detach() - q).pow(2).sum()) for p, q in zip(clipped.model.parameters(), start)))
    # Each of the 23 steps moves the weights by at most lr * 1e-6.
    assert moved <= clipped.steps_done * 0.5 * 1e-6 * 1.01
    assert free.untrained_val_loss is not None and clipped.untrained_val_loss == pytest.approx(free.untrained_val_loss)


# --- gpt-stdlib -----------------------------------------------------------------------------------


def test_the_corpus_is_the_stdlib_split_by_file() -> None:
    files = stdlib_files()
    assert len(files) > 300 and files == sorted(files, key=lambda p: str(p.relative_to(files[0].parents[0])))
    assert not any(part in ("test", "tests", "site-packages") for f in files for part in f.parts[-3:-1])
    train, val = split_files(files)
    assert val == files[9::10] and len(train) + len(val) == len(files) and not set(train) & set(val)


def test_the_stream_yields_as_many_batches_as_its_length_says() -> None:
    files, _ = split_files(stdlib_files())
    few = files[:20]
    stream = ByteWindowStream(few, [f.stat().st_size for f in few], 32)
    torch.manual_seed(0)
    batches = list(stream)
    assert len(batches) == len(stream)
    assert all(b.dtype == torch.uint8 and b.shape[1] == WINDOW for b in batches)
    assert sum(len(b) for b in batches) == sum(f.stat().st_size // WINDOW for f in few)
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(batches, stream))  # seeded: the same pass again


def test_gpt_stdlib_learns_and_reports_bits_per_byte() -> None:
    workload = get_workload("gpt-stdlib")
    assert workload.streams and workload.reported_metrics() == {"val_loss": "min", "val_bpb": "min"}
    trainer = _steps(workload, {"lr": 1e-2, "optimizer": "adamw", "schedule": "constant"}, steps=40, eval_every=20)
    rows = _all(trainer)
    assert trainer.untrained_val_loss is not None and trainer.untrained_val_loss > math.log(200)  # ~uniform bytes
    for r in rows:
        assert r["metrics"]["val_bpb"] == pytest.approx(r["val_loss"] / math.log(2))
        assert r["val_accuracy"] is None
    assert rows[-1]["metrics"]["val_bpb"] < 6.0 < trainer.untrained_val_loss / math.log(2)


def test_a_range_test_runs_on_a_streamed_workload() -> None:
    from lrsearch.workers.range_test import run_range_test

    result = run_range_test(StreamedDigits(), None, {"optimizer": "adam"}, num_steps=30, lr_low=1e-5, lr_high=1.0)
    assert result.steps >= 10 and all(math.isfinite(v) for v in result.raw_losses)
