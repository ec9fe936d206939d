"""Population-based training (Jaderberg et al., 2017): the learning rate discovered while training.

A population of ``population`` members trains in segments of ``interval`` evaluations. Each
segment is one trial (numbered generation by generation: trial ``g * population + m`` is member
``m``'s segment ``g``), which continues from a checkpoint: its own member's previous segment, or
(exploit) a better member's. After every generation the members are ranked by the objective at
their segment's end; the bottom ``quantile`` copy a member of the top ``quantile`` (its weights,
optimizer state and data position) and perturb its rate (explore: each continuous dimension of
the space times one of ``factors``, or resampled within its bounds with ``resample_probability``).
A member's optimizer, schedule and warmup stay fixed: the optimizer state it inherits is for
that optimizer, and the rates it trains at are then exactly the piecewise schedule its lineage
describes (``trajectory``, ``piecewise_config``), which any job can train with from scratch.

Generations are synchronous: a member waits at the decision point (``WAIT``) until every member
has finished the generation, so ``max_concurrent`` below the population just takes longer.
Everything is rebuilt from the suggested configs (the state) and the finished trials (replayed),
so a restarted service continues the same population with the same lineage.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from lrsearch.search.catalog import complete_config
from lrsearch.search.errors import SpecError
from lrsearch.search.space import Numeric
from lrsearch.search.strategies.base import WAIT, Strategy, StrategyOptions, StrategySpec, TrialOutcome, _Wait

PBT_KEY = "pbt"  # the config entry that makes a trial a member's segment
MAX_POPULATION = 256
# Dimensions a member keeps for good: the optimizer state it carries is for its optimizer, and
# the rates it trains at must stay a piecewise-constant schedule (warmup damps the same steps).
FIXED = ("optimizer", "schedule", "warmup_fraction")


class PbtOptions(StrategyOptions):
    """pbt's options."""

    population: int = Field(default=8, ge=2, le=MAX_POPULATION, description="members training at once")
    interval: int | None = Field(default=None, ge=1, description=(
        "epochs (steps in a step job: a multiple of eval_every) between decisions; default: a quarter of the run"))
    quantile: float = Field(default=0.25, gt=0, le=0.5, description=(
        "the bottom this fraction of the population copies the top this fraction"))
    resample_probability: float = Field(default=0.25, ge=0, le=1, description=(
        "explore: the chance each continuous dimension is drawn again within its bounds instead of perturbed"))
    factors: list[float] = Field(default=[0.8, 1.25], min_length=1, max_length=8, description=(
        "explore: a continuous dimension is multiplied by one of these (then kept within its bounds)"))

    @field_validator("factors")
    @classmethod
    def _positive(cls, factors: list[float]) -> list[float]:
        if not all(math.isfinite(f) and f > 0 for f in factors):
            raise ValueError("every factor must be a positive number")
        return factors


def member_of(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """A segment's PBT entry (member, generation, start, stop, parent, exploited, lr_before), or None."""
    entry = config.get(PBT_KEY)
    return entry if isinstance(entry, dict) else None


def member_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A segment's config as its member trains with it: without the ``pbt`` entry."""
    return {k: v for k, v in config.items() if k != PBT_KEY}


def trajectory(configs: Mapping[int, Mapping[str, Any]], number: int) -> list[dict[str, Any]]:
    """The segments a trial's weights went through, first to last: each with its trial, member,
    generation, start and stop (in evaluations) and lr. Follows ``parent`` back: what it inherited
    from another member is part of its trajectory."""
    chain: list[dict[str, Any]] = []
    current: int | None = number
    while current is not None and current in configs:
        entry = member_of(configs[current])
        if entry is None:
            break
        chain.append({"trial": current, "member": entry["member"], "generation": entry["generation"],
                      "start": entry["start"], "stop": entry["stop"], "lr": float(configs[current]["lr"]),
                      "exploited": entry.get("exploited")})
        current = entry.get("parent")
    return chain[::-1]


def piecewise_config(configs: Mapping[int, Mapping[str, Any]], number: int, unit: int = 1) -> dict[str, Any]:
    """The trial's whole trajectory as one config that trains it from scratch: its last segment's
    config with ``schedule: piecewise`` and the rate of every segment from where it began
    (``unit``: steps per evaluation in a step job, 1 in an epoch job)."""
    path = trajectory(configs, number)
    points: list[list[float]] = []
    for seg in path:
        if not points or points[-1][1] != seg["lr"]:
            points.append([seg["start"] * unit, seg["lr"]])
    last = member_config(configs[number])
    return last | {"lr": points[0][1], "schedule": "piecewise", "lr_points": points}


def population(configs: Mapping[int, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each member's segments in order: trial, generation, start, stop, lr, and whose checkpoint it
    continued (``parent``; ``exploited``: the member copied, None when it went on with its own)."""
    members: dict[int, list[dict[str, Any]]] = {}
    for number in sorted(configs):
        entry = member_of(configs[number])
        if entry is None:
            continue
        members.setdefault(int(entry["member"]), []).append({
            "trial": number, "generation": entry["generation"], "start": entry["start"], "stop": entry["stop"],
            "lr": float(configs[number]["lr"]), "parent": entry["parent"], "exploited": entry.get("exploited")})
    return [{"member": m, "segments": segs} for m, segs in sorted(members.items())]


def exploits(configs: Mapping[int, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every exploit, in trial order: which member copied which (and which trial's checkpoint), at
    which evaluation, the rate before and after."""
    out = []
    for number in sorted(configs):
        entry = member_of(configs[number])
        if entry is None or entry.get("exploited") is None:
            continue
        out.append({"trial": number, "member": entry["member"], "generation": entry["generation"],
                    "at": entry["start"], "from_member": entry["exploited"], "from_trial": entry["parent"],
                    "lr_before": entry.get("lr_before"), "lr_after": float(configs[number]["lr"])})
    return out


class PbtStrategy(Strategy):
    name = "pbt"
    options_model = PbtOptions
    views = ("population",)
    default_max_trials = None  # the population times its segments

    def __init__(self, spec: StrategySpec) -> None:
        super().__init__(spec)
        if spec.space is None:
            raise SpecError(("space",), "pbt samples its population from a space")
        lr = spec.space.dims.get("lr")
        if not isinstance(lr, Numeric) or lr.values is not None:
            raise SpecError(("space", "lr"), 'pbt explores inside a range: give {"low": a, "high": b}')
        schedules = spec.space.schedules
        if schedules not in ((), ("constant",)):
            raise SpecError(("space", "schedule"), "pbt discovers the schedule: leave schedule out (or constant); "
                                                   f"got {list(schedules)}")
        self.population = int(self.options["population"])
        unit = spec.eval_every or 1
        self.unit = unit  # schedule units (steps in a step job) per evaluation
        self.rounds = math.ceil(spec.epochs / unit)
        interval = self.options.get("interval")
        if interval is None:
            self.interval = max(1, self.rounds // 4)
        else:
            if interval % unit:
                raise SpecError(("options", "interval"), f"{interval} steps is not a whole number of evaluations "
                                                         f"(eval_every {unit}): decisions follow an evaluation")
            self.interval = interval // unit
        if self.interval >= self.rounds:
            raise SpecError(("options", "interval"), f"{interval} leaves no decision inside the run; use less "
                                                     f"than {spec.epochs}")
        self.generations = math.ceil(self.rounds / self.interval)
        self.suggested: list[dict[str, Any]] = []
        self.scores: dict[int, float | None] = {}  # trial number -> objective at its segment's end

    @classmethod
    def replay(cls, configs: Mapping[int, Mapping[str, Any]], number: int,
               unit: int = 1) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The trial's whole trajectory, inherited segments included, as a piecewise schedule."""
        if member_of(configs[number]) is None:
            return None
        return piecewise_config(configs, number, unit), trajectory(configs, number)

    def planned(self) -> int:
        """The population times its segments."""
        return self.population * self.generations

    def total(self) -> int | None:
        cap = self.spec.max_trials
        return self.planned() if cap is None else min(cap, self.planned())

    def check_budget(self, max_trials: int) -> None:
        if max_trials < self.planned():
            raise SpecError(("max_trials",), f"is {max_trials} but pbt runs population x segments = "
                                             f"{self.planned()} trials (omit max_trials)")

    # -- suggestions -------------------------------------------------------------------------------
    def suggest(self) -> dict[str, Any] | None | _Wait:
        n = len(self.suggested)
        total = self.total()
        if total is not None and n >= total:
            return None
        generation, member = divmod(n, self.population)
        if generation > 0 and any(g_n not in self.scores for g_n in self._numbers(generation - 1)):
            return WAIT  # the decision needs the whole generation
        config = self._first(member) if generation == 0 else self._next(generation, member)
        self.suggested.append(config)
        return config

    def _numbers(self, generation: int) -> range:
        return range(generation * self.population, (generation + 1) * self.population)

    def _segment(self, member: int, generation: int, parent: int | None, exploited: int | None = None,
                 lr_before: float | None = None) -> dict[str, Any]:
        start = generation * self.interval
        return {"member": member, "generation": generation, "start": start,
                "stop": min(start + self.interval, self.rounds), "parent": parent, "exploited": exploited,
                "lr_before": lr_before}

    def _first(self, member: int) -> dict[str, Any]:
        assert self.spec.space is not None
        rng = random.Random(f"{self.spec.seed}:pbt:0:{member}")
        raw = {name: _draw(dim, rng) for name, dim in self.spec.space.dims.items()}
        return complete_config(raw, self.spec.epochs) | {PBT_KEY: self._segment(member, 0, None)}

    def _next(self, generation: int, member: int) -> dict[str, Any]:
        """Member ``member``'s next segment: its own weights on, or (bottom of the ranking) a top
        member's with a perturbed rate. Decided from the finished generation alone, so a replay
        after a restart decides the same."""
        previous = list(self._numbers(generation - 1))
        ranked = sorted(previous, key=lambda n: (self.scores[n] is None, self.scores[n] or 0.0, n))
        cut = max(1, math.ceil(self.options["quantile"] * self.population))
        top = [n for n in ranked[:cut] if self.scores[n] is not None]
        # The bottom, and any member whose segment left nothing to continue from (failed, diverged).
        bottom = set(ranked[-cut:]) | {n for n in previous if self.scores[n] is None}
        own = previous[member]
        own_config = self.suggested[own]
        if own not in bottom or not top or own in top:
            return member_config(own_config) | {PBT_KEY: self._segment(member, generation, own)}
        rng = random.Random(f"{self.spec.seed}:pbt:{generation}:{member}")
        donor = rng.choice(top)
        config = self._explore(member_config(self.suggested[donor]), rng)
        return config | {PBT_KEY: self._segment(member, generation, donor, exploited=donor % self.population,
                                                lr_before=float(own_config["lr"]))}

    def _explore(self, config: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        assert self.spec.space is not None
        out = dict(config)
        for name, dim in self.spec.space.dims.items():
            if name in FIXED or not isinstance(dim, Numeric) or dim.integer or dim.values is not None:
                continue
            if name not in out or dim.low is None or dim.high is None:
                continue
            if rng.random() < self.options["resample_probability"]:
                out[name] = _draw(dim, rng)
            else:
                out[name] = min(max(float(out[name]) * rng.choice(self.options["factors"]), dim.low), dim.high)
        return complete_config(out, self.spec.epochs)

    # -- results -----------------------------------------------------------------------------------
    def observe(self, outcome: TrialOutcome) -> None:
        entry = member_of(outcome.config)
        if entry is None:
            return
        length = entry["stop"] - entry["start"]
        whole = outcome.status == "completed" and len(outcome.val_losses) == length and outcome.epochs == length
        # Ranked by where the segment ended, as the next generation continues from there.
        self.scores[outcome.number] = outcome.val_losses[-1] if whole else None

    def state_dict(self) -> dict[str, Any]:
        return {"suggested": self.suggested}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.suggested = [dict(c) for c in state.get("suggested", [])]


def _draw(dim: Any, rng: random.Random) -> Any:
    """One value of a dimension, uniformly (log-uniformly for log ranges)."""
    if not isinstance(dim, Numeric):
        return rng.choice(dim.choices)
    if dim.values is not None:
        return rng.choice(dim.values)
    assert dim.low is not None and dim.high is not None
    x = math.exp(rng.uniform(math.log(dim.low), math.log(dim.high))) if dim.log else rng.uniform(dim.low, dim.high)
    return int(round(x)) if dim.integer else min(max(x, dim.low), dim.high)


__all__ = ["PBT_KEY", "PbtOptions", "PbtStrategy", "exploits", "population", "member_config", "member_of", "piecewise_config",
           "trajectory"]
