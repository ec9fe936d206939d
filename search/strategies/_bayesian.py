"""Bayesian search: Optuna's TPE (default) or GP sampler, asked define-by-run from an in-memory study.

The SQL store of the service is the only truth, so nothing lives in an Optuna storage. The
strategy keeps one record per trial number -- the config it suggested and, once observed, how
the trial ended -- and for every suggestion builds a fresh in-memory study from those records in
trial-number order (Optuna trial k is service trial k) with a sampler seeded from (seed, k).
Suggestion k is therefore a pure function of the job's seed, of k and of what is known about
trials 0..k-1: not of the order in which outcomes arrived, nor of whether the process restarted
in between. Replaying the finished trials after ``load_state_dict()`` rebuilds exactly the study
an uninterrupted run would have built. Rebuilding costs about 40 ms at 1000 trials, well under
what TPE itself spends at that size. Both grow with the trials the study holds, so past
``max_history`` earlier trials (1000 by default) it holds the best half of the older ones (ranked
as TPE ranks them) and the most recent half: a 100,000-trial job's suggestions cost what they
cost at 1000 (bench/perf.py P7 measures it).

Trials suggested but not yet observed enter the study as RUNNING: TPE's constant liar (and GP's
qLogEI) then steer concurrent suggestions away from them. Their configs are part of
``state_dict()``, because after a restart the service runs them again with the same config and
the restored strategy must keep treating them as pending to suggest what the uninterrupted one
would have.

How outcomes enter the model (a NaN never does):

TPE ranks COMPLETE trials by value, then PRUNED trials by how far they got (then by the loss at
their last reported epoch), then RUNNING ones; it learns only from that order.
  completed           COMPLETE(val_loss)
  pruned              PRUNED, with its per-epoch val_losses as intermediate values. Its best
                      loss comes from a shorter training and is not comparable with a full
                      run's: as COMPLETE, a config that learns fast and then plateaus high would
                      compete with finished ones on equal terms. As PRUNED it joins TPE's "good"
                      group only when there are too few completed trials to fill it, the ones
                      that got furthest first -- the setting TPE was built for in Optuna.
  diverged, or no     PRUNED with no intermediate values, which TPE ranks below every completed
  finite loss         and pruned trial: the region is learnt as bad without inventing a number.
  failed, cancelled   FAIL: an error or a cancellation says nothing about the config; ignored.

GPSampler regresses on values and only reads COMPLETE trials, so:
  completed           COMPLETE(val_loss)
  pruned              COMPLETE(best val_loss it reached): an upper bound of what the config
                      would reach. Left out, GP would barely see any data under ASHA (most
                      trials are pruned) and stay in its random start-up phase.
  diverged            COMPLETE(worst finite value in the study + 10% of the value range): worse
                      than anything seen, without stretching the standardised targets. Computed
                      when the study is built, so it does not depend on arrival order. FAIL
                      while no finite value exists.
  failed, cancelled   FAIL.

With ``"lr_window_decades": W`` the model sees a log-scale lr as its position in [0, 1] inside a
window of W decades either side of the best lr its optimizer has reached so far (see
``_lr_windows``); the configs, the records and the store keep the real lr.

GPSampler needs torch at sampling time (Optuna imports it lazily); search/ itself never does.
"""

from __future__ import annotations

import bisect
import math
import random
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import Field

from lrsearch.search.catalog import OPTIMIZERS, SCHEDULES, complete_config, relevant_params
from lrsearch.search.space import Categorical, Numeric
from lrsearch.search.strategies._lr_window import MAX_WINDOW_DECADES, Window, lr_at_position, position_in, window_around
from lrsearch.search.strategies.base import Strategy, StrategyOptions, StrategySpec, TrialOutcome, config_key

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

Sampler = Literal["tpe", "gp"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)
MAX_STARTUP_TRIALS = 10_000
# A proposal that repeats a known config is asked again with another seed this many times,
# then a seeded uniform draw looks for an unseen config (like random search) before giving up.
_MODEL_ATTEMPTS = 3
_RANDOM_ATTEMPTS = 1000
# The earlier trials a suggestion's model sees by default: all of them up to this many, then the
# best half and the most recent half (TPE's time per suggestion grows with what it sees).
DEFAULT_MAX_HISTORY = 1000

# Outcome kinds kept in the records.
_RUNNING, _COMPLETED, _PRUNED, _DIVERGED, _FAILED = "running", "completed", "pruned", "diverged", "failed"


def _optuna() -> Any:
    """Import Optuna on first use (workers import search/ for the catalog and never need it)."""
    import optuna

    if not getattr(_optuna, "_configured", False):
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "Trial 3 finished ..." lines
        _optuna._configured = True  # type: ignore[attr-defined]  # a run-once flag kept on the function
    return optuna


def _quiet_group_warning() -> None:
    """TPESampler(group=True) warns at each construction, and we build one per suggestion.

    Re-added each time (an equal filter replaces itself): test runners reset the filters.
    """
    from optuna.exceptions import ExperimentalWarning

    warnings.filterwarnings("ignore", message=r"Argument ``group`` is an experimental feature",
                            category=ExperimentalWarning)


def derive_seed(seed: int, number: int, attempt: int = 0) -> int:
    """A 32-bit seed for one suggestion: decorrelated across numbers, stable across processes."""
    import numpy as np

    entropy = [int(seed) & 0xFFFF_FFFF_FFFF_FFFF, int(number), int(attempt), 0x1B5E]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@dataclass(frozen=True)
class _Record:
    config: dict[str, Any]
    kind: str  # running | completed | pruned | diverged | failed
    val_loss: float | None = None  # finite, or None
    curve: tuple[float, ...] = ()  # finite per-epoch val_losses
    epochs: int = 0


def _finite(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _classify(outcome: TrialOutcome) -> _Record:
    curve = tuple(v for v in (_finite(x) for x in outcome.val_losses) if v is not None)
    val_loss = _finite(outcome.val_loss)
    if val_loss is None and curve:
        val_loss = min(curve)
    status = outcome.status
    if status == "completed":
        if val_loss is not None:
            kind = _COMPLETED
        elif outcome.val_loss is not None:
            kind = _DIVERGED  # a NaN/inf loss is a property of the config
        else:
            kind = _FAILED  # finished without any loss: nothing to learn from
    elif status == "diverged":
        kind = _DIVERGED
    elif status == "pruned":
        kind = _PRUNED if val_loss is not None else _DIVERGED
    else:  # failed, cancelled, anything unknown
        kind = _FAILED
    return _Record(dict(outcome.config), kind, val_loss, curve, int(outcome.epochs))


class SamplerOptions(StrategyOptions):
    """How the model proposes: shared by bayesian and auto's search."""

    sampler: Sampler = Field(default="tpe", description=(
        "Optuna's TPE, or its Gaussian-process sampler (for a small budget; needs torch)"))
    n_startup_trials: int | None = Field(default=None, ge=0, le=MAX_STARTUP_TRIALS, description=(
        "random trials before the model proposes (default: max_trials / 4, within 4 to 10; 10 without max_trials)"))
    max_history: int = Field(default=DEFAULT_MAX_HISTORY, ge=20, le=1_000_000, description=(
        "the earlier trials the model sees at most: beyond this many, the best half and the most recent half "
        "(a suggestion's cost then stays flat as a job grows)"))


class BayesianOptions(SamplerOptions):
    """bayesian's options."""

    lr_window_decades: float | None = Field(default=None, gt=0, le=MAX_WINDOW_DECADES, description=(
        "after the start-up, search each optimizer's lr within this many decades either side of the best lr it "
        "has reached so far (default: off, the whole range)"))


class BayesianStrategy(Strategy):
    name = "bayesian"
    options_model = BayesianOptions

    def __init__(self, spec: StrategySpec) -> None:
        super().__init__(spec)
        assert spec.space is not None
        _optuna()
        self._sampler_name: str = self.options["sampler"]
        n_startup = self.options.get("n_startup_trials")
        if n_startup is None:
            n_startup = 10 if spec.max_trials is None else min(10, max(4, spec.max_trials // 4))
        self._n_startup = int(n_startup)
        self._seed = int(spec.seed or 0)
        self._fixed: dict[str, Any] = {}  # single-valued dims: not asked, always this value
        self._dists: dict[str, BaseDistribution] = {}
        self._build_distributions()
        self._records: dict[int, _Record] = {}
        # The finished trials as the model ranks them (completed by loss, then pruned by how far they
        # got), kept sorted: a capped history takes its best half from the front.
        self._ranked: list[tuple[tuple[Any, ...], int]] = []
        self._rank_of: dict[int, tuple[Any, ...]] = {}
        # Configs suggested so far, to never suggest one twice: only a finite space can repeat one.
        self._seen: set[str] | None = None if spec.space.continuous else set()
        self._asks = 0  # next trial number == suggestions made so far
        self._exhausted = False
        self._windows: dict[str, Window] | None = None  # set by _study()

    # -- the space as Optuna distributions -----------------------------------------------------
    def _build_distributions(self) -> None:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        assert self.spec.space is not None
        for name, dim in self.spec.space.dims.items():
            if isinstance(dim, Categorical):
                choices = dim.choices
            elif dim.values is not None:
                choices = dim.values
            else:
                choices = None
            if choices is not None:
                if len(choices) == 1:
                    self._fixed[name] = choices[0]
                else:
                    self._dists[name] = CategoricalDistribution(choices)
                continue
            assert isinstance(dim, Numeric) and dim.low is not None and dim.high is not None
            if dim.integer:
                self._dists[name] = IntDistribution(math.ceil(dim.low), math.floor(dim.high), log=dim.log)
            else:
                self._dists[name] = FloatDistribution(dim.low, dim.high, log=dim.log)

    def _lr_windows(self, upto: int) -> dict[str, Window] | None:
        """Each optimizer's lr window for the study of trial ``upto``, or None (the whole range).

        With ``lr_window_decades`` W, once the start-up trials are known the model sees the
        learning rate as its position in [0, 1] inside a window of W decades either side of the best
        lr that optimizer has reached so far (its whole range while it has no finite loss). A
        trust region per optimizer: the model's kernels are then a fraction of a window, not of
        the whole range, and what it learns about one optimizer's position carries to the others.
        A pure function of the records before ``upto`` (ties to the lower number), so restarts
        rebuild the same windows."""
        from optuna.distributions import FloatDistribution, IntDistribution

        width = self.options.get("lr_window_decades")
        dist = self._dists.get("lr")
        if (width is None or not isinstance(dist, (FloatDistribution, IntDistribution)) or not dist.log
                or upto < self._n_startup):
            return None
        best: dict[str, tuple[float, float]] = {}
        for n in sorted(self._records):
            rec = self._records[n]
            if n >= upto or rec.kind not in (_COMPLETED, _PRUNED) or rec.val_loss is None:
                continue
            optimizer = str(rec.config.get("optimizer"))
            if optimizer not in best or rec.val_loss < best[optimizer][0]:
                best[optimizer] = (rec.val_loss, float(rec.config["lr"]))
        low, high = float(dist.low), float(dist.high)
        # An optimizer with no finite loss yet keeps the whole range (_window's default).
        return {str(o): window_around(c, width, low, high) for o, (_, c) in best.items()}

    def _window(self, optimizer: str) -> Window:
        from optuna.distributions import FloatDistribution, IntDistribution

        assert self._windows is not None
        dist = self._dists["lr"]
        assert isinstance(dist, (FloatDistribution, IntDistribution))  # windows exist only for a numeric lr
        return self._windows.get(optimizer, (float(dist.low), float(dist.high)))

    def _position_to_lr(self, optimizer: str, u: float) -> float:
        low, high = window = self._window(optimizer)
        return min(high, max(low, lr_at_position(u, window)))  # rounding never leaves the space

    def _study_dist(self, name: str) -> BaseDistribution:
        """The distribution the study holds for ``name``: lr's position while windows are active."""
        if name == "lr" and self._windows is not None:
            from optuna.distributions import FloatDistribution

            return FloatDistribution(0.0, 1.0)
        return self._dists[name]

    def _names_for(self, optimizer: str, schedule: str) -> list[str]:
        """The dims a config with this optimizer and schedule draws, in define-by-run order."""
        names = ["optimizer", "schedule", "lr", "warmup_fraction"]
        names += [p.name for p in relevant_params(optimizer, schedule)
                  if p.name in self._dists or p.name in self._fixed]
        return names

    def _draw(self, trial: optuna.Trial, name: str) -> Any:
        if name in self._fixed:
            return self._fixed[name]
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        dist = self._study_dist(name)
        if isinstance(dist, CategoricalDistribution):
            return trial.suggest_categorical(name, dist.choices)
        if isinstance(dist, FloatDistribution):
            return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
        assert isinstance(dist, IntDistribution)  # _build_distributions makes only these three kinds
        return trial.suggest_int(name, int(dist.low), int(dist.high), log=dist.log)

    def _define(self, trial: optuna.Trial) -> dict[str, Any]:
        """Define-by-run: an optimizer's or schedule's own parameters are drawn only when chosen."""
        raw = {name: self._draw(trial, name) for name in ("optimizer", "schedule")}
        for name in self._names_for(raw["optimizer"], raw["schedule"])[2:]:
            raw[name] = self._draw(trial, name)
        if self._windows is not None and "lr" in self._dists:
            raw["lr"] = self._position_to_lr(str(raw["optimizer"]), raw["lr"])
        return complete_config(raw, self.spec.epochs)

    def _params_of(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The Optuna params a stored config stands for (None if it is not a config of this space)."""
        optimizer, schedule = config.get("optimizer"), config.get("schedule")
        if optimizer not in OPTIMIZERS or schedule not in SCHEDULES:
            return None
        params = {}
        for name in self._names_for(optimizer, schedule):
            if name in self._dists:
                if name not in config:
                    return None
                params[name] = config[name]
        if self._windows is not None and "lr" in params:
            try:
                params["lr"] = position_in(params["lr"], self._window(str(optimizer)))
            except (TypeError, ValueError):
                return None
        return params

    # -- the study ---------------------------------------------------------------------------------
    def _frozen(self, rec: _Record | None, gp_penalty: float | None) -> FrozenTrial:
        from optuna.trial import TrialState, create_trial

        params = self._params_of(rec.config) if rec is not None else None
        dists = {k: self._study_dist(k) for k in params} if params is not None else {}
        kind = rec.kind if rec is not None and params is not None else _FAILED
        gp = self._sampler_name == "gp"
        state, value, intermediate = TrialState.FAIL, None, None
        if kind == _RUNNING:
            state = TrialState.RUNNING
        elif kind == _COMPLETED or (gp and kind == _PRUNED):
            assert rec is not None
            state, value = TrialState.COMPLETE, rec.val_loss
        elif kind == _PRUNED:
            assert rec is not None and rec.val_loss is not None  # _classify: pruned only with a finite loss
            state = TrialState.PRUNED
            intermediate = dict(enumerate(rec.curve)) if rec.curve else {max(rec.epochs - 1, 0): rec.val_loss}
        elif kind == _DIVERGED:
            if not gp:
                state = TrialState.PRUNED
            elif gp_penalty is not None:
                state, value = TrialState.COMPLETE, gp_penalty
        if state == TrialState.FAIL:
            params, dists = {}, {}
        try:
            return create_trial(state=state, value=value, params=params or {}, distributions=dists,
                                intermediate_values=intermediate)
        except ValueError:  # a stored config outside the space's distributions: keep the number only
            return create_trial(state=TrialState.FAIL)

    def _gp_penalty(self, upto: int) -> float | None:
        values = [r.val_loss for n, r in self._records.items()
                  if n < upto and r.kind in (_COMPLETED, _PRUNED) and r.val_loss is not None]
        if not values:
            return None
        worst, best = max(values), min(values)
        return worst + 0.1 * (worst - best)

    def _sampler(self, number: int, attempt: int) -> optuna.samplers.BaseSampler:
        _optuna()
        from optuna.samplers import GPSampler, TPESampler

        seed = derive_seed(self._seed, number, attempt)
        if self._sampler_name == "gp":
            return GPSampler(seed=seed, n_startup_trials=self._n_startup,
                             warn_independent_sampling=False)
        _quiet_group_warning()
        # group=True: TPE models the conditional parameters (step_size only under "step", ...)
        # jointly with the dims they co-occur with instead of falling back to independent draws.
        return TPESampler(seed=seed, n_startup_trials=self._n_startup, multivariate=True,
                          group=True, constant_liar=True)

    def _study(self, number: int, attempt: int) -> optuna.Study:
        """A fresh in-memory study holding trials 0..number-1 as known now."""
        _optuna()
        from optuna import create_study

        self._windows = self._lr_windows(number)
        study = create_study(direction="minimize", sampler=self._sampler(number, attempt))
        penalty = self._gp_penalty(number) if self._sampler_name == "gp" else None
        study.add_trials([self._frozen(self._records.get(n), penalty) for n in self._history(number)])
        return study

    def _history(self, number: int) -> list[int]:
        """The earlier trials the model of suggestion ``number`` sees, by number: every one, or past
        ``max_history`` the best half of those before the recent ones and the most recent half.
        Each finished trial's rank is fixed, so this too is a pure function of the records."""
        cap = int(self.options["max_history"])
        if number <= cap:
            return list(range(number))
        recent = number - cap // 2
        best: list[int] = []
        for _, n in self._ranked:  # at most cap // 2 entries skipped: the recent ones
            if n < recent:
                best.append(n)
                if len(best) == cap - cap // 2:
                    break
        return sorted(best) + list(range(recent, number))

    def _ask_model(self, number: int, attempt: int) -> dict[str, Any]:
        study = self._study(number, attempt)
        return self._define(study.ask())

    def _random_unseen(self, number: int, seen: set[str]) -> dict[str, Any] | None:
        """A seeded uniform draw over the space that repeats no known config, or None."""
        assert self.spec.space is not None
        rng = random.Random(derive_seed(self._seed, number, _MODEL_ATTEMPTS))
        dims = self.spec.space.dims
        for _ in range(_RANDOM_ATTEMPTS):
            raw: dict[str, Any] = {}
            for name, dim in dims.items():
                if isinstance(dim, Categorical):
                    raw[name] = rng.choice(dim.choices)
                elif dim.values is not None:
                    raw[name] = rng.choice(dim.values)
                else:
                    assert dim.low is not None and dim.high is not None
                    if dim.integer:
                        raw[name] = rng.randint(math.ceil(dim.low), math.floor(dim.high))
                    elif dim.log:
                        x = math.exp(rng.uniform(math.log(dim.low), math.log(dim.high)))
                        raw[name] = min(max(x, dim.low), dim.high)
                    else:
                        raw[name] = rng.uniform(dim.low, dim.high)
            config = complete_config(raw, self.spec.epochs)
            if config_key(config) not in seen:
                return config
        return None

    # -- the Strategy interface ----------------------------------------------------------------------
    def suggest(self) -> dict[str, Any] | None:
        if self._exhausted or (self.spec.max_trials is not None and self._asks >= self.spec.max_trials):
            return None
        number = self._asks
        seen = self._seen if self._seen is not None else set()
        config: dict[str, Any] | None = None
        for attempt in range(_MODEL_ATTEMPTS):
            config = self._ask_model(number, attempt)
            if config_key(config) not in seen:
                break
        else:
            config = self._random_unseen(number, seen)
            if config is None:  # a small discrete space with every point already tried
                self._exhausted = True
                return None
        self._remember(number, _Record(dict(config), _RUNNING))
        self._asks = number + 1
        return dict(config)

    def _remember(self, number: int, record: _Record) -> None:
        self._records[number] = record
        if self._seen is not None:
            self._seen.add(config_key(record.config))
        old = self._rank_of.pop(number, None)
        if old is not None:  # heard again: its new rank replaces the old
            del self._ranked[bisect.bisect_left(self._ranked, (old, number))]
        rank: tuple[Any, ...] | None = None
        if record.kind == _COMPLETED:
            rank = (0, record.val_loss)
        elif record.kind == _PRUNED:
            rank = (1, -record.epochs, record.val_loss)
        if rank is not None:
            bisect.insort(self._ranked, (rank, number))
            self._rank_of[number] = rank

    def enqueue(self, config: dict[str, Any]) -> dict[str, Any]:
        """Make ``config`` (complete, in the space) the next trial, as Optuna's ``enqueue_trial``:
        a known good guess instead of a model's or a start-up draw."""
        number = self._asks
        self._remember(number, _Record(dict(config), _RUNNING))
        self._asks = number + 1
        return dict(config)

    def observe(self, outcome: TrialOutcome) -> None:
        self._remember(int(outcome.number), _classify(outcome))
        self._asks = max(self._asks, int(outcome.number) + 1)

    def state_dict(self) -> dict[str, Any]:
        pending = [[n, r.config] for n, r in sorted(self._records.items()) if r.kind == _RUNNING]
        return {"asks": self._asks, "pending": pending}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._records, self._ranked, self._rank_of = {}, [], {}
        self._seen = None if self._seen is None else set()
        self._exhausted = False
        self._asks = int(state.get("asks", 0))
        for number, config in state.get("pending", []):
            self._remember(int(number), _Record(dict(config), _RUNNING))

    # -- introspection (tests, debugging) -----------------------------------------------------------
    def study(self) -> optuna.Study:
        """A fresh in-memory study as the next suggestion will see it: trials 0..n-1, by number."""
        return self._study(self._asks, 0)

    @property
    def n_startup_trials(self) -> int:
        return self._n_startup

    @property
    def sampler_name(self) -> str:
        return self._sampler_name


__all__ = ["SAMPLERS", "BayesianOptions", "BayesianStrategy", "SamplerOptions", "derive_seed"]
