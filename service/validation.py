"""Checks of a JobSpec beyond its shape: known names, ranges, caps. Raises SpecError naming the field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lrsearch.search import STRATEGIES, SpecError, StrategySpec, make_strategy, parse_space
from lrsearch.search.objective import Objective
from lrsearch.service.config import Settings
from lrsearch.service.schemas import DEFAULT_EPOCHS, JobSpec, ObjectiveSpec


# Strategies that start with LR range tests; their space's lr defaults to FINDER_LR_RANGE.
FINDER_STRATEGIES = ("range_test", "auto")
FINDER_LR_RANGE = {"low": 1e-7, "high": 10.0}


@dataclass(frozen=True)
class CheckedJob:
    spec: JobSpec
    strategy_spec: StrategySpec
    total_trials: int | None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _int_in(loc: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise SpecError((loc,), f"must be an integer in [{low}, {high}], got {value}")


def make_stopper(spec: JobSpec) -> Any:
    """The job's early-stopping rule (None without one), counting in evaluations: a step job's
    spec gives its rungs in steps."""
    from lrsearch.search.early_stopping import parse_early_stopping

    return parse_early_stopping(spec.early_stopping, spec.rounds,
                                eval_every=spec.eval_every if spec.steps is not None else None)


def objective_of(spec: JobSpec) -> Objective:
    """What the job ranks by (its mode already filled in by check_job_spec)."""
    return Objective(metric=spec.objective.metric, mode=spec.objective.mode or "min")


def _length(spec: JobSpec, settings: Settings) -> JobSpec:
    """Epochs, or steps with eval_every (default: a tenth of the steps), within the caps."""
    if spec.steps is None:
        if spec.eval_every is not None:
            raise SpecError(("eval_every",), "goes with steps; an epoch job is evaluated after every epoch")
        epochs = DEFAULT_EPOCHS if spec.epochs is None else spec.epochs
        _int_in("epochs", epochs, 1, settings.max_epochs)
        return spec.model_copy(update={"epochs": epochs})
    if spec.epochs is not None:
        raise SpecError(("steps",), "give epochs or steps, not both")
    _int_in("steps", spec.steps, 1, settings.max_steps)
    eval_every = max(1, spec.steps // 10) if spec.eval_every is None else spec.eval_every
    _int_in("eval_every", eval_every, 1, spec.steps)
    spec = spec.model_copy(update={"eval_every": eval_every})
    if spec.rounds > settings.max_epochs:
        raise SpecError(("eval_every",), f"{eval_every} gives {spec.rounds} evaluations of {spec.steps} steps; "
                                         f"at most {settings.max_epochs} allowed (evaluate less often)")
    return spec


def _batch_size(spec: JobSpec, settings: Settings) -> JobSpec:
    """The global batch per optimizer step, the workload's when not given: stored with the job, so
    its learning rate is always known together with the batch it was found for."""
    from lrsearch.workers.registry import workload_batch_size

    if spec.batch_size is None:
        return spec.model_copy(update={"batch_size": workload_batch_size(spec.workload)})
    _int_in("batch_size", spec.batch_size, 1, settings.max_batch_size)
    return spec


def _workers(spec: JobSpec) -> None:
    """A data-parallel trial splits every global batch evenly over its workers."""
    workers = spec.resources.workers
    assert spec.batch_size is not None
    if workers > 1 and spec.batch_size % workers:
        raise SpecError(("resources", "workers"), f"{workers} workers cannot split a batch of {spec.batch_size} "
                                                  "evenly; use a batch_size that is a multiple of workers")


def _objective(spec: JobSpec) -> JobSpec:
    """The objective checked against what the workload reports, its mode filled in."""
    from lrsearch.workers.registry import workload_metrics

    try:
        reported = workload_metrics(spec.workload)
    except Exception as exc:  # a plug-in that fails to load
        raise SpecError(("workload",), f"workload {spec.workload!r} failed to load: {exc}") from None
    metric = spec.objective.metric
    if metric not in reported:
        raise SpecError(("objective", "metric"), f"workload {spec.workload!r} does not report {metric!r}; "
                                                 f"allowed: {sorted(reported)}")
    mode = spec.objective.mode or ("max" if reported[metric] == "max" else "min")
    return spec.model_copy(update={"objective": ObjectiveSpec(metric=metric, mode=mode)})


def _options(spec: JobSpec) -> dict:
    try:
        from lrsearch.search.strategies import validate_options  # type: ignore[attr-defined]
    except ImportError:
        if spec.options:
            raise SpecError(("options",), f"{spec.strategy} takes no options") from None
        return {}
    return validate_options(spec.strategy, spec.options)


def check_job_spec(spec: JobSpec, settings: Settings, workloads: list[str], *, new_job: bool = True) -> CheckedJob:
    """Validate everything a job needs before anything is written.

    ``new_job=False`` when a stored job resumes: rules that only refuse a submission (a budget that
    would cut a grid or a manual list short) are not applied to jobs an earlier version accepted.
    """
    if spec.name is not None and not 1 <= len(spec.name) <= settings.max_name_length:
        raise SpecError(("name",), f"must be 1 to {settings.max_name_length} characters")
    if spec.name is not None and not _encodable(spec.name):
        raise SpecError(("name",), "must be text UTF-8 can encode (it holds a lone surrogate)")
    if spec.workload not in workloads:
        raise SpecError(("workload",), f"unknown workload {spec.workload!r}; allowed: {workloads}")
    if spec.strategy not in STRATEGIES:
        raise SpecError(("strategy",), f"unknown strategy {spec.strategy!r}; allowed: {sorted(STRATEGIES)}")
    spec = _length(spec, settings)
    spec = _objective(spec)
    spec = _batch_size(spec, settings)
    _workers(spec)
    _int_in("max_concurrent", spec.max_concurrent, 1, settings.max_concurrent)
    if spec.max_trials is not None:
        _int_in("max_trials", spec.max_trials, 1, settings.max_trials)

    manual = spec.strategy == "manual"
    if manual:
        if spec.space is not None:
            raise SpecError(("space",), "manual search takes configs, not space")
        if not spec.configs:
            raise SpecError(("configs",), 'manual search needs a non-empty list, e.g. [{"lr": 0.1}]')
        if len(spec.configs) > settings.max_trials:
            raise SpecError(("configs",), f"at most {settings.max_trials} configs")
        if new_job and spec.max_trials is not None and spec.max_trials < len(spec.configs):
            # Manual means exactly these trials: cutting the list short would drop configs unseen.
            raise SpecError(("max_trials",), f"is {spec.max_trials} but configs lists {len(spec.configs)}; "
                                             "manual search runs every config (omit max_trials)")
        space = None
    else:
        if spec.configs is not None:
            raise SpecError(("configs",), "only manual search takes configs; use space")
        if spec.strategy in FINDER_STRATEGIES and "lr" not in (spec.space or {}):
            # A range test's classic sweep: from far too small to far too large.
            spec = spec.model_copy(update={"space": {**(spec.space or {}), "lr": dict(FINDER_LR_RANGE)}})
        if spec.space is None:
            raise SpecError(("space",), 'is required, e.g. {"lr": {"low": 1e-4, "high": 1.0}}')
        space = parse_space(spec.space, grid=spec.strategy == "grid")
        if spec.strategy == "grid" and space.grid_size() > settings.max_grid_points:
            raise SpecError(("space",), f"the grid has {space.grid_size()} points; at most "
                                        f"{settings.max_grid_points} allowed")
    if spec.strategy == "auto" and spec.early_stopping is None and spec.rounds > 1:
        spec = spec.model_copy(update={"early_stopping": {"kind": "asha"}})  # auto means search + ASHA
    make_stopper(spec)
    options = _options(spec)
    max_trials = spec.max_trials
    if max_trials is None and spec.strategy not in ("grid", "manual", "range_test"):
        max_trials = 20  # a sensible default budget for sampling strategies
    # Strategies complete configs with the schedule's defaults, which count in the schedule's unit.
    strategy_spec = StrategySpec(space=space, epochs=spec.schedule_length, seed=spec.seed, max_trials=max_trials,
                                 configs=tuple(spec.configs or ()), options=options)
    strategy = make_strategy(spec.strategy, strategy_spec)  # manual configs are checked here
    if new_job and spec.strategy == "grid" and spec.max_trials is not None:
        points = strategy.size  # type: ignore[attr-defined]
        if spec.max_trials < points:
            # Cutting a grid short would keep only its lowest learning rates (lr varies slowest).
            raise SpecError(("max_trials",), f"is {spec.max_trials} but the grid has {points} points; grid search "
                                             "runs the whole product (omit max_trials, use fewer points, or use "
                                             "random search for a budget)")
    return CheckedJob(spec=spec.model_copy(update={"max_trials": max_trials}),
                      strategy_spec=strategy_spec, total_trials=strategy.total())
