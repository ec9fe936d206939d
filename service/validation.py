"""Checks of a JobSpec beyond its shape: known names, ranges, caps, what its strategy needs.

Every mistake is reported at once (SpecErrors, one 422). Each check adds what it finds, and a check
that reads a field already found wrong is skipped: it could only repeat that mistake. What a
strategy needs (a space or configs, its defaults, a budget it must not cut) it says itself, through
its class in the registry; nothing here knows a strategy by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from lrsearch.search import STRATEGIES, SpecError, StrategySpec, parse_space
from lrsearch.search.errors import SpecErrors, raise_all, spec_errors
from lrsearch.search.objective import Objective
from lrsearch.search.space import SearchSpace, SpaceSpec
from lrsearch.search.strategies import Strategy
from lrsearch.service.config import Settings
from lrsearch.service.schemas import DEFAULT_EPOCHS, JobSpec, ObjectiveSpec

# The fields that say how long a trial trains: what reads the length reads all three.
LENGTH = ("epochs", "steps", "eval_every")


@dataclass(frozen=True)
class CheckedJob:
    spec: JobSpec
    strategy_spec: StrategySpec
    total_trials: int | None


class Findings:
    """The mistakes found in one spec so far; a top-level field is sound while none is at it."""

    def __init__(self, errors: Iterable[SpecError] = ()) -> None:
        self.errors: list[SpecError] = [e for error in errors for e in error.errors]

    def sound(self, *fields: str) -> bool:
        return not any(e.loc and e.loc[0] in fields for e in self.errors)

    def add(self, loc: tuple[str | int, ...], message: str) -> None:
        self.errors.append(SpecError(loc, message))

    @contextmanager
    def collect(self) -> Iterator[None]:
        """Run a check that raises SpecError: what it raises is added, and the checks go on."""
        try:
            yield
        except SpecError as exc:
            self.errors.extend(exc.errors)


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


def _name(name: str, settings: Settings) -> None:
    if not 1 <= len(name) <= settings.max_name_length:
        raise SpecError(("name",), f"must be 1 to {settings.max_name_length} characters")
    if not _encodable(name):
        raise SpecError(("name",), "must be text UTF-8 can encode (it holds a lone surrogate)")


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
    from lrsearch.workers.errors import readable_error
    from lrsearch.workers.registry import workload_metrics

    try:
        reported = workload_metrics(spec.workload)
    except Exception as exc:  # a plug-in that fails to load
        raise SpecError(("workload",), f"workload {spec.workload!r} failed to load: {readable_error(exc)}") from None
    metric = spec.objective.metric
    if metric not in reported:
        raise SpecError(("objective", "metric"), f"workload {spec.workload!r} does not report {metric!r}; "
                                                 f"allowed: {sorted(reported)}")
    mode = spec.objective.mode or ("max" if reported[metric] == "max" else "min")
    return spec.model_copy(update={"objective": ObjectiveSpec(metric=metric, mode=mode)})


def _what_it_searches(spec: JobSpec, strategy: type[Strategy], settings: Settings,
                      found: Findings) -> tuple[JobSpec, SearchSpace | None]:
    """The strategy's configs, or its space completed with the strategy's defaults and parsed."""
    if strategy.takes_configs:
        if spec.space is not None and found.sound("space"):
            found.add(("space",), f"{strategy.name} search takes configs, not space")
        if found.sound("configs") and not spec.configs:
            found.add(("configs",), f'{strategy.name} search needs a non-empty list, e.g. [{{"lr": 0.1}}]')
        elif found.sound("configs") and len(spec.configs or ()) > settings.max_trials:
            found.add(("configs",), f"at most {settings.max_trials} configs")
        return spec, None
    if spec.configs is not None and found.sound("configs"):
        takers = [name for name, cls in STRATEGIES.items() if cls.takes_configs]
        found.add(("configs",), f"{strategy.name} search takes space, not configs (configs are for "
                                f"{', '.join(takers)})")
    if not found.sound("space"):
        return spec, None
    if strategy.default_space:
        # Written into the job's spec: what it searched is on record.
        sent = spec.space.model_dump() if spec.space is not None else {}
        spec = spec.model_copy(update={"space": SpaceSpec.model_validate({**strategy.default_space, **sent})})
    if spec.space is None:
        found.add(("space",), 'is required, e.g. {"lr": {"low": 1e-4, "high": 1.0}}')
        return spec, None
    space = None
    with found.collect():
        space = parse_space(spec.space, grid=strategy.grid)
        if strategy.grid and space.grid_size() > settings.max_grid_points:
            raise SpecError(("space",), f"the grid has {space.grid_size()} points; at most "
                                        f"{settings.max_grid_points} allowed")
    return spec, space


def check_job_spec(spec: JobSpec, settings: Settings, workloads: list[str], *, new_job: bool = True,
                   found: Iterable[SpecError] = ()) -> CheckedJob:
    """Validate everything a job needs before anything is written; SpecErrors lists every mistake.

    ``new_job=False`` when a stored job resumes: rules that only refuse a submission (a budget that
    would cut a grid or a manual list short) are not applied to jobs an earlier version accepted.
    ``found``: mistakes already found in the body's shape, reported with these; the fields they are
    at are not checked again.
    """
    findings = Findings(found)
    sound, collect = findings.sound, findings.collect
    if spec.name is not None and sound("name"):
        with collect():
            _name(spec.name, settings)
    if spec.workload not in workloads and sound("workload"):
        findings.add(("workload",), f"unknown workload {spec.workload!r}; allowed: {workloads}")
    if sound(*LENGTH):
        with collect():
            spec = _length(spec, settings)
    if sound("workload", "objective"):
        with collect():
            spec = _objective(spec)
    if sound("workload", "batch_size"):
        with collect():
            spec = _batch_size(spec, settings)
    if sound("workload", "batch_size", "resources"):
        with collect():
            _workers(spec)
    if sound("max_concurrent"):
        with collect():
            _int_in("max_concurrent", spec.max_concurrent, 1, settings.max_concurrent)
    if spec.max_trials is not None and sound("max_trials"):
        with collect():
            _int_in("max_trials", spec.max_trials, 1, settings.max_trials)

    strategy_class = STRATEGIES[spec.strategy] if sound("strategy") else None
    space: SearchSpace | None = None
    if strategy_class is not None:
        spec, space = _what_it_searches(spec, strategy_class, settings, findings)
        default_stopping = strategy_class.default_early_stopping
        if (spec.early_stopping is None and default_stopping is not None and sound("early_stopping", *LENGTH)
                and spec.rounds > 1):  # a one-evaluation trial cannot be stopped early
            spec = spec.model_copy(update={"early_stopping": default_stopping})
    if sound("early_stopping", *LENGTH):
        with collect():
            make_stopper(spec)

    strategy = strategy_spec = None
    if strategy_class is not None and sound("space", "configs", "options", "max_trials", "seed", *LENGTH):
        max_trials = strategy_class.default_max_trials if spec.max_trials is None else spec.max_trials
        with collect():
            # Strategies complete configs with the schedule's defaults, which count in the schedule's unit.
            strategy_spec = StrategySpec(space=space, epochs=spec.schedule_length, seed=spec.seed,
                                         max_trials=max_trials, configs=tuple(spec.configs or ()),
                                         options=strategy_class.validate_options(spec.options),
                                         eval_every=spec.eval_every if spec.steps is not None else None)
            strategy = strategy_class(strategy_spec)  # manual configs are checked here
            if new_job and spec.max_trials is not None:
                strategy.check_budget(spec.max_trials)
        spec = spec.model_copy(update={"max_trials": max_trials})
    raise_all(findings.errors)
    assert strategy is not None and strategy_spec is not None  # every check ran, none found a mistake
    return CheckedJob(spec=spec, strategy_spec=strategy_spec, total_trials=strategy.total())


def check_submission(body: Any, settings: Settings, workloads: list[str]) -> CheckedJob:
    """A submitted JobSpec, as sent: its shape and its values checked together, so that one answer
    lists every mistake. The fields with the wrong shape are left out of the value checks."""
    try:
        spec = JobSpec.model_validate(body)
    except ValidationError as exc:
        shape = spec_errors(exc)
    else:
        return check_job_spec(spec, settings, workloads)
    wrong = {e.loc[0] for e in shape if e.loc}
    if not isinstance(body, dict) or any(not e.loc for e in shape):
        raise SpecErrors(shape)
    if "strategy" in wrong:
        wrong.add("options")  # the strategy's model judges them: without a strategy, nothing can
    # The rest stands in for the body (the workload is required, so a wrong one leaves a placeholder).
    rest = {key: value for key, value in body.items() if key not in wrong}
    try:
        spec = JobSpec.model_validate({**rest, "workload": rest.get("workload", "")})
    except ValidationError:
        raise SpecErrors(shape) from None
    check_job_spec(spec, settings, workloads, found=shape)
    raise AssertionError("check_job_spec raises the shape's mistakes")
