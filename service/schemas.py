"""Request and response shapes of the REST API (the contract's JobSpec, Job, Trial, Metric, Best)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from lrsearch.search.early_stopping import AnyEarlyStoppingSpec
from lrsearch.search.space import SpaceSpec
from lrsearch.search.spec_model import SpecModel
from lrsearch.search.strategies import ANY_STRATEGY_OPTIONS, STRATEGIES, StrategyOptions

T = TypeVar("T")


class Resources(SpecModel):
    cpu: float = Field(default=1.0, gt=0, le=1024, description="CPUs per trial")
    gpu: float = Field(default=0.0, ge=0, le=64, description="GPUs per worker (fractions allowed)")
    workers: int = Field(default=1, ge=1, le=64, description=(
        "Ray workers per trial: more than 1 trains each trial data-parallel (torch.distributed), each "
        "worker taking batch_size / workers of every global batch; cpu and gpu are per worker"))


class ObjectiveSpec(SpecModel):
    """What the job ranks its trials by."""

    metric: str = Field(default="val_loss", description=(
        "a validation metric the workload reports (GET /workloads lists them), e.g. val_loss, val_accuracy"))
    mode: Literal["min", "max"] | None = Field(default=None, description=(
        "min or max; default: the metric's own direction (min for losses, max for accuracy)"))


def _options_by_strategy() -> str:
    models: dict[type[StrategyOptions], list[str]] = {}
    for name, cls in STRATEGIES.items():
        models.setdefault(cls.options_model, []).append(name)
    return "the strategy's own options, by strategy: " + "; ".join(
        f"{', '.join(names)}: {model.__name__}" for model, names in models.items())


class JobSpec(SpecModel):
    """A learning-rate search. Shapes are checked here (strictly: true is not 1, "10" is not 10, 2.5
    is not an integer); names, ranges and caps in service/validation.py and search/'s parsers."""

    shape: ClassVar[str] = "a JobSpec object"
    key_name: ClassVar[str] = "field"

    name: str | None = Field(default=None, description="a label; defaults to '<strategy>-<workload>'")
    workload: str = Field(description="a registered workload, see GET /workloads")
    strategy: Literal[tuple(STRATEGIES)] = Field(  # type: ignore[valid-type]  # the names come from the registry
        default="random", description="the search algorithm; its options are its own (see options)")
    max_trials: int | None = Field(default=None, description="trials to run (optional for grid and manual)")
    max_concurrent: int = Field(default=2, description="trials running at once")
    epochs: int | None = Field(default=None, description="epochs per trial (default 10); or give steps")
    steps: int | None = Field(default=None, description=(
        "optimizer steps per trial instead of epochs; schedules, warmup and rungs then count steps"))
    eval_every: int | None = Field(default=None, description=(
        "with steps: evaluate (and store a metric row) every this many steps; default steps / 10"))
    batch_size: int | None = Field(default=None, description=(
        "the global batch per optimizer step (default: the workload's); the learning rate found is for it"))
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec, description=(
        "the validation metric trials are ranked by, and its direction"))
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description=(
        "seeds the search, and the training unless training_seed is set"))
    training_seed: int | None = Field(default=None, ge=0, le=2**31 - 1, description=(
        "seeds every trial's initialisation and batch order (and the range tests); default: seed. "
        "Jobs with one training_seed and different seeds search the same landscape"))
    space: SpaceSpec | None = Field(default=None, description=(
        "the search space (not for manual; range_test and auto default lr to 1e-7..10)"))
    configs: list[dict[str, Any]] | None = Field(default=None, description=(
        'manual: the trials to run, each {"lr": ..., "optimizer": ..., "schedule": ..., ...}'))
    early_stopping: AnyEarlyStoppingSpec | None = Field(default=None, description=(
        "stop poor trials early: one rule, by kind (default none; auto: asha)"))
    options: ANY_STRATEGY_OPTIONS = Field(  # type: ignore[valid-type]  # a union built from the registry
        default_factory=dict, validate_default=True, description=_options_by_strategy())
    resources: Resources = Field(default_factory=Resources)
    max_retries: int = Field(default=2, ge=0, le=10, description="re-runs of a trial whose worker died")
    divergence_factor: float = Field(default=10.0, gt=1.0, le=1e6, description=(
        "a trial diverges when its val_loss exceeds this multiple of its first epoch's (or is NaN/inf)"))

    @field_validator("options", mode="wrap")
    @classmethod
    def _options_of_its_strategy(cls, raw: Any, _union: Any, info: ValidationInfo) -> StrategyOptions:
        # The strategy's own model checks them (the union is for the schema). Without a valid
        # strategy they cannot be judged: its error is the one to report.
        strategy = info.data.get("strategy")
        if strategy is None:
            return StrategyOptions()
        return STRATEGIES[strategy].options_model.model_validate(raw)

    @property
    def trial_seed(self) -> int:
        """The seed every trial of the job trains with."""
        return self.seed if self.training_seed is None else self.training_seed

    @property
    def rounds(self) -> int:
        """Evaluations per trial (metric rows): its epochs, or steps / eval_every rounded up."""
        if self.steps is not None:
            return -(-self.steps // (self.eval_every or self.steps))
        return self.epochs if self.epochs is not None else DEFAULT_EPOCHS

    @property
    def schedule_length(self) -> int:
        """The unit schedules and their defaults count in: epochs, or steps in a step job."""
        return self.steps if self.steps is not None else self.rounds

    def length(self) -> dict[str, int]:
        """How long a trial trains, as the workers take it: epochs, or steps and eval_every."""
        if self.steps is not None:
            return {"steps": self.steps, "eval_every": self.eval_every or self.steps}
        return {"epochs": self.rounds}


DEFAULT_EPOCHS = 10


class ObjectiveValue(BaseModel):
    metric: str
    mode: Literal["min", "max"]
    value: float = Field(description="the best value of the metric the trial reached")


class Best(BaseModel):
    trial: int
    config: dict[str, Any]
    lr: float
    val_loss: float | None = Field(description="the trial's lowest validation loss")
    epoch: int | None = Field(description="the evaluation (epoch, or evaluation of a step job) of its best objective")
    step: int | None = Field(default=None, description="step jobs: the step of that evaluation")
    objective: ObjectiveValue | None = Field(default=None, description="the ranking metric and its best value")


class LrInterval(BaseModel):
    low: float
    high: float
    method: str = Field(description="quadratic_fit, within_tolerance or best_only")
    tolerance: float | None = Field(default=None, description="in units of the objective's metric")
    metric: str = Field(default="val_loss", description="the metric the interval is read on (the job's objective)")


class OptimizerBest(BaseModel):
    trial: int
    lr: float
    val_loss: float | None
    epoch: int | None = None
    objective: float | None = Field(default=None, description="the trial's best value of the job's objective")


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
    trajectory: list[dict[str, Any]] | None = Field(default=None, description=(
        "pbt: the segments the best's weights went through, what it inherited included (trial, member, "
        "generation, start, stop, lr); config is then that path as a piecewise schedule, to train from scratch"))


class PopulationSegment(BaseModel):
    trial: int
    generation: int
    start: int = Field(description="the evaluation it began at")
    stop: int = Field(description="the evaluation it stopped before")
    lr: float
    parent: int | None = Field(description="the trial whose checkpoint it continued (null: from scratch)")
    exploited: int | None = Field(description="the member it copied (null: it went on with its own weights)")


class PopulationMember(BaseModel):
    member: int
    segments: list[PopulationSegment]


class Exploit(BaseModel):
    trial: int
    member: int
    generation: int
    at: int = Field(description="the evaluation where it happened")
    from_member: int
    from_trial: int
    lr_before: float | None
    lr_after: float


class Population(BaseModel):
    """A pbt job's members and every exploit: which member copied which, where, the rate before and after."""

    members: list[PopulationMember]
    exploits: list[Exploit]


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
    views: list[str] = Field(default_factory=list, description=(
        "what the job's strategy shows beyond its trials: range_tests (GET /jobs/{id}/range_test)"))


class TrialPublic(BaseModel):
    number: int
    status: str
    kind: str = Field(default="training", description=(
        "training (a metric row per evaluation) or range_test (a sweep of rates: its curve is at "
        "GET /jobs/{id}/range_test, and it never ranks)"))
    config: dict[str, Any]
    val_loss: float | None
    objective: float | None = Field(default=None, description="the best value of the job's objective metric")
    best_epoch: int | None = None
    epochs: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    attempts: int = 0
    node: str | None = None
    workers: list[dict[str, Any]] | None = Field(default=None, description=(
        "a data-parallel trial's workers: rank, Ray node and process id of each"))


class MetricPublic(BaseModel):
    """One evaluation; every further validation metric the workload reports is a key of its own."""

    model_config = ConfigDict(extra="allow")

    epoch: int
    step: int | None = Field(default=None, description="optimizer steps taken at this evaluation")
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
    metrics: dict[str, str] = Field(default_factory=dict, description=(
        "the validation metrics it reports, each with its better direction (min or max)"))
    error: str | None = Field(default=None, description=(
        "why the workload failed to load (a broken plug-in), None when it loads; jobs naming it are refused"))


class Health(BaseModel):
    status: str
    database: str
    ray: str
    version: str
