from __future__ import annotations

import io
import math
import statistics
import time

import pytest
import torch
from torch import nn

from lrsearch.search.catalog import OPTIMIZERS, SCHEDULES
from lrsearch.workers.registry import get_dataset, get_workload
from lrsearch.workers.schedules import build_multiplier
from lrsearch.workers.trainer import EpochResult, TrialTrainer, learned_nothing, train, warm_up
from lrsearch.workers.workloads.digits import MLPDigits

ADAM = {"lr": 3e-3, "optimizer": "adam", "schedule": "cosine", "warmup_fraction": 0.1}


class DropoutDigits(MLPDigits):
    """mlp-digits with dropout: training draws from torch's RNG, so RNG handling shows."""

    name = "dropout-digits"

    def build_model(self, seed: int) -> nn.Module:
        return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 10))


class NanAfter(MLPDigits):
    """mlp-digits whose training loss becomes nan at the given batch (0-based, counted over the run)."""

    name = "nan-after"

    def __init__(self, bad_batch: int) -> None:
        self.bad_batch = bad_batch
        self.batches = 0

    def loss_fn(self):
        cross_entropy = nn.CrossEntropyLoss()

        def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            value = cross_entropy(output, target)
            if torch.is_grad_enabled():  # training, not validation
                self.batches += 1
                if self.batches > self.bad_batch:
                    return value * math.nan
            return value

        return loss


def _trainer(workload=None, config=ADAM, epochs: int = 4, seed: int = 0, **kwargs) -> TrialTrainer:
    workload = workload or get_workload("mlp-digits")
    return TrialTrainer(workload, get_dataset("mlp-digits", 0), config, epochs, seed, **kwargs)


def _dicts(results: list[EpochResult]) -> list[dict]:
    return [r.to_dict() for r in results]


# --- results --------------------------------------------------------------------------------------


def test_one_result_per_epoch_with_finite_metrics(run_trial) -> None:
    results = run_trial("mlp-digits", ADAM, epochs=4)
    assert [r.epoch for r in results] == [0, 1, 2, 3]
    for r in results:
        assert math.isfinite(r.train_loss) and math.isfinite(r.val_loss)
        assert 0.0 <= r.val_accuracy <= 1.0
        assert not r.diverged and r.reason is None
    assert results[-1].val_loss < results[0].val_loss


def test_lr_is_the_rate_at_each_epochs_first_step() -> None:
    config = {"lr": 0.02, "optimizer": "sgd", "schedule": "onecycle", "warmup_fraction": 0.2}
    trainer = _trainer(config=config, epochs=5)
    multiplier = build_multiplier(config, epochs=5, steps_per_epoch=trainer.steps_per_epoch)
    rows = [trainer.run_epoch().lr for _ in range(5)]
    assert rows == [0.02 * multiplier(e * trainer.steps_per_epoch) for e in range(5)]


def test_config_is_completed_with_catalog_defaults() -> None:
    trainer = _trainer(config={"lr": 0.1, "optimizer": "sgd", "schedule": "step"}, epochs=6)
    assert trainer.config == {
        "lr": 0.1, "optimizer": "sgd", "schedule": "step", "warmup_fraction": 0.0,
        "momentum": 0.9, "nesterov": False, "weight_decay": 0.0, "step_size": 2, "gamma": 0.1,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"lr": 0.1, "optimizer": "lamb", "schedule": "constant"}, "unknown optimizer"),
        ({"lr": 0.1, "optimizer": "sgd", "schedule": "poly"}, "unknown schedule"),
        ({"lr": -1.0, "optimizer": "sgd", "schedule": "constant"}, "lr must be"),
        ({"lr": 0.1, "optimizer": "sgd", "schedule": "step", "step_size": 0}, "step_size must be"),
    ],
)
def test_bad_config_is_refused_before_training(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _trainer(config=config)
    with pytest.raises(ValueError, match=message):
        train(get_workload("synthetic"), get_dataset("synthetic", 0), config, 2, 0)  # at the call, not at next()


def test_to_dict_can_drop_nonfinite_values_for_strict_json() -> None:
    result = EpochResult(epoch=0, train_loss=math.nan, val_loss=math.inf, val_accuracy=None, lr=0.1, diverged=True,
                         reason="x", step=13, metrics={"val_loss": math.inf, "val_bpb": math.nan, "val_f1": 0.5})
    assert result.to_dict()["val_loss"] == math.inf
    assert result.to_dict(nonfinite_as_none=True) == {
        "epoch": 0, "train_loss": None, "val_loss": None, "val_accuracy": None, "lr": 0.1, "diverged": True, "stalled": False,
        "reason": "x", "step": 13, "metrics": {"val_loss": None, "val_bpb": None, "val_f1": 0.5},
    }  # fmt: skip


# --- determinism ------------------------------------------------------------------------------------


@pytest.mark.parametrize("workload", [get_workload("mlp-digits"), DropoutDigits()], ids=["mlp-digits", "dropout"])
def test_same_seed_same_results_other_seed_other_results(workload) -> None:
    def run(seed: int) -> list[dict]:
        trainer = _trainer(workload, epochs=3, seed=seed)
        return _dicts([trainer.run_epoch() for _ in range(3)])

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_trainers_keep_their_own_rng_stream() -> None:
    """Interleaved trials, or other code drawing random numbers, do not change a trial's results."""
    alone = _trainer(DropoutDigits(), epochs=3)
    expected = _dicts([alone.run_epoch() for _ in range(3)])

    first, second = _trainer(DropoutDigits(), epochs=3), _trainer(DropoutDigits(), epochs=3, seed=7)
    got = []
    for _ in range(3):
        torch.rand(100)
        outer = torch.get_rng_state()
        got.append(first.run_epoch().to_dict())
        assert torch.equal(torch.get_rng_state(), outer)  # the process's RNG is given back
        second.run_epoch()
    assert got == expected


# --- divergence ----------------------------------------------------------------------------------


def test_sgd_at_lr_50_diverges_and_the_run_stops(run_trial) -> None:
    results = run_trial("mlp-digits", {"lr": 50.0, "optimizer": "sgd", "schedule": "constant"}, epochs=5)
    last = results[-1]
    assert last.diverged and last.epoch == len(results) - 1 < 4
    assert not any(r.diverged for r in results[:-1])
    assert "nan" in last.reason or "inf" in last.reason or "exploded" in last.reason
    assert f"epoch {last.epoch}" in last.reason


def test_a_nonfinite_batch_loss_stops_the_epoch_there() -> None:
    workload = NanAfter(bad_batch=3)
    trainer = _trainer(workload, config={"lr": 0.01, "optimizer": "sgd", "schedule": "constant"})
    result = trainer.run_epoch()
    assert workload.batches == 4  # not the epoch's 23
    assert result.diverged and math.isnan(result.train_loss)
    assert result.reason == "train loss became nan at step 3 of epoch 0"
    # No step was taken on the nan loss: the model still evaluates.
    assert math.isfinite(result.val_loss) and result.val_accuracy is not None
    assert trainer.finished
    with pytest.raises(RuntimeError, match="diverged"):
        trainer.run_epoch()


class ScaledValLoss(MLPDigits):
    """mlp-digits whose validation loss is multiplied by ``scales[k]`` at the k-th evaluation
    (evaluation 0 is of the untrained model, k >= 1 ends epoch k - 1)."""

    name = "scaled-val-loss"

    def __init__(self, scales: list[float]) -> None:
        self.scales = scales
        self.evaluations = 0

    def loss_fn(self):
        cross_entropy = nn.CrossEntropyLoss()

        def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            value = cross_entropy(output, target)
            if torch.is_grad_enabled():
                return value
            self.evaluations += 1
            return value * self.scales[self.evaluations - 1]

        return loss


def test_val_loss_above_10x_the_first_epochs_is_divergence() -> None:
    trainer = _trainer(ScaledValLoss([1.0, 1.0, 1.0, 100.0]), epochs=4)
    results = list(train(trainer.workload, get_dataset("mlp-digits", 0), ADAM, 4, 0))
    assert [r.diverged for r in results] == [False, False, True]
    first, last = results[0], results[-1]
    assert math.isfinite(last.val_loss) and last.val_loss > 10 * first.val_loss
    assert last.reason == (
        f"val loss {last.val_loss:.4g} exploded above 10x the first epoch's ({first.val_loss:.4g}) at epoch 2"
    )


def test_the_divergence_factor_is_the_callers() -> None:
    results = list(train(ScaledValLoss([1.0, 1.0, 10.0]), get_dataset("mlp-digits", 0), ADAM, 4, 0, divergence_factor=2.0))
    assert [r.diverged for r in results] == [False, True]
    assert "above 2x the first epoch's" in results[-1].reason


def test_an_exploding_first_epoch_is_caught() -> None:
    # sgd at lr 5 ends epoch 0 with a finite val loss of ~1e16: against the untrained model's ~2.3.
    result = _trainer(config={"lr": 5.0, "optimizer": "sgd", "schedule": "constant"}).run_epoch()
    assert result.diverged and "exploded" in result.reason and "untrained" in result.reason


# --- a first epoch that learned nothing ------------------------------------------------------------

# rmsprop at 0.067 bounces: after one epoch its val loss (~6) is above the untrained model's
# (~2.3) but under 10x it, so it is not divergence; adam at 3e-3 learns.
BOUNCING = {"lr": 0.067, "optimizer": "rmsprop", "schedule": "constant"}


def test_a_first_epoch_that_learned_nothing_stops_the_trial_when_asked() -> None:
    trainer = _trainer(config=BOUNCING, epochs=5, stop_without_progress=True)
    result = trainer.run_epoch()
    assert trainer.untrained_val_loss is not None and result.val_loss >= trainer.untrained_val_loss
    assert result.stalled and not result.diverged and trainer.stalled and trainer.finished
    assert result.reason == (f"val loss {result.val_loss:.4g} after the first epoch is not 1% below the "
                             f"untrained model's ({trainer.untrained_val_loss:.4g}): stopped as hopeless")
    with pytest.raises(RuntimeError, match="stalled"):
        trainer.run_epoch()


# sgd at 1e-4 lowers the loss by about 0.2% in its first epoch; at 1e-3 by about 2%.
CRAWLING = {"lr": 1e-4, "optimizer": "sgd", "schedule": "constant"}
SLOW = {"lr": 1e-3, "optimizer": "sgd", "schedule": "constant"}


def test_a_first_epoch_under_one_percent_of_progress_learned_nothing_too() -> None:
    crawling = _trainer(config=CRAWLING, epochs=5, stop_without_progress=True)
    result = crawling.run_epoch()
    untrained = crawling.untrained_val_loss
    assert untrained is not None and result.val_loss < untrained  # it did learn, a little
    assert result.val_loss > 0.99 * untrained and result.stalled and crawling.finished
    slow = _trainer(config=SLOW, epochs=5, stop_without_progress=True)
    first = slow.run_epoch()
    assert slow.untrained_val_loss is not None and first.val_loss < 0.99 * slow.untrained_val_loss
    assert not first.stalled and not slow.finished  # slow but measurable: left to the early-stopping rule


@pytest.mark.parametrize(("first", "untrained", "nothing"), [
    (2.30, 2.30, True), (2.40, 2.30, True), (2.29, 2.30, True),  # 0.4% below: too little
    (2.27, 2.30, False), (0.5, 2.30, False),
    (-0.995, -1.0, True), (-1.02, -1.0, False),  # a negative loss (a log-likelihood) falls too
    (float("nan"), 2.30, False), (2.30, None, False), (2.30, float("inf"), False),  # nothing to judge
])
def test_learned_nothing_is_under_one_percent_of_the_untrained_loss(first: float, untrained: float | None,
                                                                    nothing: bool) -> None:
    assert learned_nothing(first, untrained) is nothing


def test_without_the_flag_or_with_progress_the_trial_goes_on() -> None:
    plain = _trainer(config=BOUNCING, epochs=5)
    first = plain.run_epoch()
    assert not first.stalled and not plain.finished  # the same epoch, but nobody asked
    learning = _trainer(config=ADAM, epochs=5, stop_without_progress=True)
    result = learning.run_epoch()
    assert learning.untrained_val_loss is not None and result.val_loss < learning.untrained_val_loss
    assert not result.stalled and not learning.finished
    one_epoch = _trainer(config=BOUNCING, epochs=1, stop_without_progress=True)
    assert not one_epoch.run_epoch().stalled  # a one-epoch trial has nothing left to save


# --- the loop -----------------------------------------------------------------------------------


def test_train_stops_when_asked() -> None:
    seen: list[EpochResult] = []
    for result in train(get_workload("synthetic"), get_dataset("synthetic", 0), ADAM, 10, 0, should_stop=lambda: len(seen) >= 2):
        seen.append(result)
    assert len(seen) == 2


def test_run_epoch_after_the_last_epoch_raises() -> None:
    trainer = _trainer(epochs=1)
    trainer.run_epoch()
    assert trainer.finished and trainer.epochs_done == 1
    with pytest.raises(RuntimeError, match="all 1 epochs done"):
        trainer.run_epoch()


# --- checkpoints -----------------------------------------------------------------------------------


def _through_disk(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


CHECKPOINT_CASES = [
    *[{"optimizer": name, "schedule": "onecycle", "warmup_fraction": 0.2} for name in OPTIMIZERS],
    *[{"optimizer": "sgd", "nesterov": True, "schedule": name, "warmup_fraction": 0.3,
       **({"lr_points": [[0, 0.01], [1, 0.02], [3, 0.004]]} if name == "piecewise" else {})} for name in SCHEDULES],
]


@pytest.mark.parametrize("config", CHECKPOINT_CASES, ids=lambda c: f"{c['optimizer']}-{c['schedule']}")
def test_checkpoint_round_trip_continues_exactly(config: dict) -> None:
    config = {"lr": 0.01, **config}
    workload = DropoutDigits()  # dropout: the RNG state must travel too
    uninterrupted = _trainer(workload, config=config, epochs=4)
    expected = _dicts([uninterrupted.run_epoch() for _ in range(4)])

    before = _trainer(workload, config=config, epochs=4)
    head = [before.run_epoch() for _ in range(2)]
    state = _through_disk(before.state_dict())
    after = _trainer(workload, config=config, epochs=4)
    after.load_state_dict(state)
    assert after.epochs_done == 2
    tail = [after.run_epoch() for _ in range(2)]
    assert _dicts(head + tail) == expected


# piecewise: absolute rates; the config's lr (the base the optimizer is built with) is not one of them.
PIECEWISE = {"lr": 0.01, "optimizer": "sgd", "schedule": "piecewise", "lr_points": [[0, 0.05], [1, 0.02], [3, 0.005]]}


def test_piecewise_trains_at_the_points_rates_epoch_by_epoch() -> None:
    trainer = _trainer(config=PIECEWISE, epochs=4)
    results = [trainer.run_epoch() for _ in range(4)]
    assert [r.lr for r in results] == pytest.approx([0.05, 0.02, 0.02, 0.005], rel=1e-12)
    assert not any(r.diverged for r in results) and results[-1].val_loss < trainer.untrained_val_loss / 2
    assert trainer.config["lr_points"] == PIECEWISE["lr_points"] and trainer.config["lr"] == 0.01


def test_piecewise_in_a_step_job_counts_steps() -> None:
    config = {**PIECEWISE, "lr_points": [[0, 0.05], [25, 0.02], [60, 0.005]]}
    trainer = _trainer(config=config, epochs=None, steps=100, eval_every=20)
    results = [trainer.run_epoch() for _ in range(5)]
    # A row per 20 steps, each with the rate at its first step (0, 20, 40, 60, 80).
    assert [r.step for r in results] == [20, 40, 60, 80, 100]
    assert [r.lr for r in results] == pytest.approx([0.05, 0.05, 0.02, 0.005, 0.005], rel=1e-12)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.005, rel=1e-12)


def test_piecewise_checkpoint_mid_run_continues_at_the_points_rates() -> None:
    config = {**PIECEWISE, "warmup_fraction": 0.2}
    uninterrupted = _trainer(config=config, epochs=4)
    expected = _dicts([uninterrupted.run_epoch() for _ in range(4)])
    before = _trainer(config=config, epochs=4)
    head = [before.run_epoch() for _ in range(2)]
    after = _trainer(config=config, epochs=4)
    after.load_state_dict(_through_disk(before.state_dict()))
    assert _dicts(head + [after.run_epoch() for _ in range(2)]) == expected
    assert [r["lr"] for r in expected][2:] == pytest.approx([0.02, 0.005], rel=1e-12)


def test_piecewise_without_good_points_is_refused_before_training() -> None:
    with pytest.raises(ValueError, match=r"lr_points\.2\.0: must be greater than the previous point's at \(2\)"):
        _trainer(config={**PIECEWISE, "lr_points": [[0, 0.05], [2, 0.02], [2, 0.01]]})
    with pytest.raises(ValueError, match="lr_points is required"):
        _trainer(config={k: v for k, v in PIECEWISE.items() if k != "lr_points"})


def test_state_dict_is_a_copy() -> None:
    trainer = _trainer(epochs=3)
    trainer.run_epoch()
    state = trainer.state_dict()
    weight = state["model"]["0.weight"].clone()
    trainer.run_epoch()
    assert torch.equal(state["model"]["0.weight"], weight)


def test_checkpoint_of_another_config_is_refused() -> None:
    state = _trainer().state_dict()
    other = _trainer(config={**ADAM, "lr": 0.1})
    with pytest.raises(ValueError, match="checkpoint config"):
        other.load_state_dict(state)


def test_checkpoint_restores_divergence() -> None:
    trainer = _trainer(config={"lr": 50.0, "optimizer": "sgd", "schedule": "constant"})
    assert trainer.run_epoch().diverged
    restored = _trainer(config={"lr": 50.0, "optimizer": "sgd", "schedule": "constant"})
    restored.load_state_dict(_through_disk(trainer.state_dict()))
    assert restored.finished


# --- CUDA (skipped where there is none) -------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
def test_cuda_trial_checkpoints_through_the_cpu_and_continues() -> None:
    config = {**ADAM, "optimizer": "adamw"}
    uninterrupted = _trainer(DropoutDigits(), config=config, device="cuda")
    expected = [uninterrupted.run_epoch() for _ in range(4)]
    assert uninterrupted.model[0].weight.is_cuda

    before = _trainer(DropoutDigits(), config=config, device="cuda")
    head = [before.run_epoch() for _ in range(2)]
    state = _through_disk(before.state_dict())
    assert all(t.device.type == "cpu" for t in state["model"].values())
    after = _trainer(DropoutDigits(), config=config, device="cuda")
    after.load_state_dict(state)
    got = head + [after.run_epoch() for _ in range(2)]
    # GPU kernels may reorder float sums between runs: equal to float32 precision, not bit for bit.
    for a, b in zip(got, expected, strict=True):
        assert a.lr == b.lr
        assert a.val_loss == pytest.approx(b.val_loss, rel=1e-4)
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)


@cuda
def test_a_cpu_checkpoint_resumes_on_cuda() -> None:
    before = _trainer(epochs=3)
    before.run_epoch()
    after = _trainer(epochs=3, device="cuda")
    after.load_state_dict(_through_disk(before.state_dict()))
    result = after.run_epoch()
    assert result.epoch == 1 and math.isfinite(result.val_loss) and not result.diverged


# --- speed ---------------------------------------------------------------------------------------


def test_an_mlp_digits_epoch_is_fast() -> None:
    """Trials are short: a regression to DataLoaders or per-batch syncs would show here. The target
    is ~10 ms of CPU; CPU time, not wall time, so that other load on the machine does not fail it."""
    trainer = _trainer(epochs=8)
    trainer.run_epoch()  # warm-up
    times = []
    for _ in range(5):
        start = time.process_time()
        trainer.run_epoch()
        times.append(time.process_time() - start)
    assert statistics.median(times) < 0.05


def test_warm_up_runs_without_data() -> None:
    warm_up(["mlp-digits", "synthetic"])
