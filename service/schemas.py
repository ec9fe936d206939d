"""Request and response shapes of the REST API (the contract's JobSpec, Job, Trial, Metric, Best)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    cpu: float = Field(default=1.0, gt=0, le=1024, description="CPUs per trial")
    gpu: float = Field(default=0.0, ge=0, le=64, description="GPUs per trial (fractions allowed)")


class JobSpec(BaseModel):
    """A learning-rate search. Shapes are checked here; names, ranges and caps in service/validation.py."""

    # strict: no silent coercion (true is not 1, "10" is not 10, 2.5 is not an integer).
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, description="a label; defaults to '<strategy>-<workload>'")
    workload: str = Field(description="a registered workload, see GET /workloads")
    strategy: str = Field(default="random", description="grid, random, bayesian, manual, range_test or auto")
    max_trials: int | None = Field(default=None, description="trials to run (optional for grid and manual)")
    max_concurrent: int = Field(default=2, description="trials running at once")
    epochs: int = Field(default=10, description="epochs per trial")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description=(
        "seeds the search, and the training unless training_seed is set"))
    training_seed: int | None = Field(default=None, ge=0, le=2**31 - 1, description=(
        "seeds every trial's initialisation and batch order (and the range tests); default: seed. "
        "Jobs with one training_seed and different seeds search the same landscape"))
    space: dict[str, Any] | None = Field(default=None, description=(
        "the search space (not for manual; range_test and auto default lr to 1e-7..10)"))
    configs: list[dict[str, Any]] | None = Field(default=None, description="manual: the trials to run")
    early_stopping: dict[str, Any] | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="strategy options")
    resources: Resources = Field(default_factory=Resources)
    max_retries: int = Field(default=2, ge=0, le=10, description="re-runs of a trial whose worker died")
    divergence_factor: float = Field(default=10.0, gt=1.0, le=1e6, description=(
        "a trial diverges when its val_loss exceeds this multiple of its first epoch's (or is NaN/inf)"))

    @property
    def trial_seed(self) -> int:
        """The seed every trial of the job trains with."""
        return self.seed if self.training_seed is None else self.training_seed


class Best(BaseModel):
    trial: int
    config: dict[str, Any]
    lr: float
    val_loss: float
    epoch: int | None


class LrInterval(BaseModel):
    low: float
    high: float
    method: str = Field(description="quadratic_fit, within_tolerance or best_only")
    tolerance: float | None = None


class OptimizerBest(BaseModel):
    trial: int
    lr: float
    val_loss: float
    epoch: int | None = None


class Transfer(BaseModel):
    rule: str = Field(description="linear (SGD) or sqrt (adaptive optimizers)")
    from_lr: float
    from_batch_size: int
    to_batch_size: int


class RangeTestSummary(BaseModel):
    """What an optimizer's range tests suggest (search.range_test.summarize)."""

    lr: float = Field(description="the suggested learning rate: the geometric mean over seeds of 'combined'")
    rules: dict[str, float] = Field(description="each rule's suggestion (steepest, valley, minimum_tenth, "
                                                "lr_at_min, combined), geometric mean over seeds")
    per_seed: list[float]
    spread: dict[str, float] = Field(description="geometric_mean, min, max, log10_std, n of per_seed")
    min_loss: float | None = Field(description="the lowest denoised training loss the tests saw (mean over seeds)")


class RangeTestCurve(BaseModel):
    trial: int
    repeat: int
    status: str
    lrs: list[float]
    losses: list[float] = Field(description="the batch loss at each step")
    smoothed: list[float] = Field(description="the zero-lag smoothing the rules read (search.range_test.denoise)")


class RangeTestOptimizer(BaseModel):
    optimizer: str
    suggestion: RangeTestSummary | None = Field(description="null until one of its tests has finished")
    curves: list[RangeTestCurve]


class BestDetail(Best):
    """Best, plus how sure it is and how it carries over."""

    val_loss: float | None = Field(description=(
        "null only for a range_test job without verify: its lr is then a suggestion, not a trained result"))
    suggestions: dict[str, float] = Field(default_factory=dict, description=(
        "range_test and auto jobs: the range tests' suggested learning rate per optimizer"))
    range_test: dict[str, RangeTestSummary] = Field(default_factory=dict, description=(
        "range_test and auto jobs: how each optimizer's suggestion was reached and its spread over seeds"))

    lr_interval: LrInterval | None = Field(
        default=None, description="learning rates whose val_loss is indistinguishable from the best's "
                                  "(same optimizer)")
    per_optimizer: dict[str, OptimizerBest] = Field(default_factory=dict)
    transfer: Transfer | None = Field(default=None, description="set with ?batch_size=: lr is then scaled")


class TrialCounts(BaseModel):
    queued: int = 0
    running: int = 0
    completed: int = 0
    pruned: int = 0
    diverged: int = 0
    failed: int = 0
    cancelled: int = 0


class JobPublic(BaseModel):
    id: int
    name: str
    status: str
    spec: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    trial_counts: TrialCounts
    total_trials: int | None = Field(description="trials the job will run, when known")
    best: Best | None
    error: str | None = None
    owner: str | None = Field(default=None, description="the service process driving the job")


class TrialPublic(BaseModel):
    number: int
    status: str
    config: dict[str, Any]
    val_loss: float | None
    best_epoch: int | None = None
    epochs: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    attempts: int = 0
    node: str | None = None


class MetricPublic(BaseModel):
    epoch: int
    train_loss: float | None
    val_loss: float | None
    val_accuracy: float | None
    lr: float


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int


class Items(BaseModel, Generic[T]):
    items: list[T]


class WorkloadPublic(BaseModel):
    name: str
    description: str


class Health(BaseModel):
    status: str
    database: str
    ray: str
    version: str
