from __future__ import annotations

import math

import pytest
import torch

from lrsearch.workers.registry import BUILTIN_WORKLOADS, get_workload
from lrsearch.workers.workloads.base import Dataset, Workload

ALL_NAMES = list(BUILTIN_WORKLOADS)
NAMES = [n for n in ALL_NAMES if not get_workload(n).streams]  # the in-memory ones (gpt-stdlib streams)
CLASSIFICATION = [n for n in NAMES if get_workload(n).task == "classification"]
# Adam at a rate that suits all of them, a few epochs: each should clearly learn.
QUICK = {"lr": 1e-2, "optimizer": "adam", "schedule": "constant"}
MIN_ACCURACY = 0.85


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_and_well_formed(name: str) -> None:
    workload = get_workload(name)
    data, again, other = workload.load_data(0), workload.load_data(0), workload.load_data(1)
    for a, b in zip(vars(data).values(), vars(again).values(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(data.val_x, other.val_x)  # the seed picks the split
    assert data.train_x.dtype == data.val_x.dtype == torch.float32
    assert data.train_x.shape[1:] == data.val_x.shape[1:]
    assert torch.isfinite(data.train_x).all() and torch.isfinite(data.val_x).all()
    assert 0.15 < data.num_val / (data.num_train + data.num_val) < 0.25
    if workload.task == "classification":
        assert data.train_y.dtype == data.val_y.dtype == torch.int64
        assert set(data.val_y.tolist()) == set(data.train_y.tolist())  # stratified: every class in both


@pytest.mark.parametrize("name", NAMES)
def test_model_takes_the_data_and_the_loss_takes_the_model(name: str) -> None:
    workload = get_workload(name)
    data = workload.load_data(0)
    torch.manual_seed(0)
    model = workload.build_model(0)
    output = model(data.val_x[: workload.batch_size])
    loss = workload.loss_fn()(output, data.val_y[: workload.batch_size])
    assert loss.ndim == 0 and math.isfinite(loss.item())


@pytest.mark.parametrize("name", NAMES)
def test_every_workload_trains_to_completion(name: str, run_trial) -> None:
    results = run_trial(name, QUICK, epochs=4)
    assert len(results) == 4 and not any(r.diverged for r in results)
    assert all(math.isfinite(r.train_loss) and math.isfinite(r.val_loss) for r in results)
    assert results[-1].val_loss < results[0].val_loss
    if name in CLASSIFICATION:
        assert all(0.0 <= r.val_accuracy <= 1.0 for r in results)
        assert results[-1].val_accuracy >= MIN_ACCURACY
    else:
        assert all(r.val_accuracy is None for r in results)


def test_synthetic_is_regression_and_fast() -> None:
    workload = get_workload("synthetic")
    assert workload.task == "regression"
    assert math.ceil(workload.load_data(0).num_train / workload.batch_size) <= 8  # a few steps per epoch


# --- the interface ------------------------------------------------------------------------------


def test_dataset_refuses_mismatched_or_empty_tensors() -> None:
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="differ in length"):
        Dataset(x, y[:3], x, y)
    with pytest.raises(ValueError, match="must not be empty"):
        Dataset(x, y, x[:0], y[:0])


@pytest.mark.parametrize(
    ("output", "target", "correct"),
    [
        (torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), torch.tensor([0, 1, 1]), 2),  # logits per class
        (torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([1, 0, 0]), 2),  # one logit, binary
    ],
)
def test_count_correct(output: torch.Tensor, target: torch.Tensor, correct: int) -> None:
    assert get_workload("mlp-digits").count_correct(output, target) == correct


def test_a_workload_must_implement_build_model() -> None:
    class Incomplete(Workload):
        name = "incomplete"
        description = ""

        def load_data(self, seed: int) -> Dataset:
            raise AssertionError

    with pytest.raises(TypeError):
        Incomplete()


@pytest.mark.parametrize("name", ALL_NAMES)
def test_the_reported_metrics_are_what_the_registry_says(name: str) -> None:
    from lrsearch.workers.registry import workload_metrics

    assert get_workload(name).reported_metrics() == workload_metrics(name)
    assert workload_metrics(name)["val_loss"] == "min"
