"""The piecewise schedule's points in search/: the catalog's rule, manual configs, spaces and strategies."""

from __future__ import annotations

from typing import Any

import pytest

from lrsearch.search.catalog import (
    MAX_LR_POINTS,
    SCHEDULES,
    check_lr_points,
    complete_config,
    required_params,
)
from lrsearch.search.errors import SpecError
from lrsearch.search.space import parse_space
from lrsearch.search.strategies import STRATEGIES
from lrsearch.search.strategies._manual import validate_manual_config
from lrsearch.search.strategies.base import StrategySpec

POINTS = [[0, 0.1], [3, 0.05], [6, 0.01]]
MANUAL = {"lr": 0.1, "optimizer": "sgd", "schedule": "piecewise", "lr_points": POINTS}


def test_only_piecewise_needs_a_parameter_given() -> None:
    assert [s for s in SCHEDULES if required_params(s)] == ["piecewise"]
    assert [p.name for p in required_params("piecewise")] == ["lr_points"]


def test_points_are_normalised_to_int_steps_and_float_rates() -> None:
    points = check_lr_points(((0, 1), (3.0, 0.5)))
    assert points == [[0, 1.0], [3, 0.5]]
    assert type(points[1][0]) is int and type(points[0][1]) is float


@pytest.mark.parametrize(("points", "where", "says"), [
    ("0,0.1", (), "must be a non-empty list of [at, lr] points"),
    ([], (), "must be a non-empty list of [at, lr] points"),
    ([[0, 0.1]] * (MAX_LR_POINTS + 1), (), f"at most {MAX_LR_POINTS} points, got {MAX_LR_POINTS + 1}"),
    ([[0, 0.1], 3], (1,), "must be a pair [at, lr], got 3"),
    ([[0, 0.1], [1, 0.2, 0.3]], (1,), "must be a pair [at, lr]"),
    ([[2, 0.1]], (0, 0), "the first point must be at 0 (the rate from the start), got 2"),
    ([[0, 0.1], [3, 0.05], [2, 0.01]], (2, 0), "must be greater than the previous point's at (3)"),
    ([[0, 0.1], [3, 0.05], [3, 0.01]], (2, 0), "strictly increasing order, got 3"),
    ([[0, 0.1], [-1, 0.05]], (1, 0), "must be a whole number >= 0"),
    ([[0, 0.1], [1.5, 0.05]], (1, 0), "must be a whole number >= 0"),
    ([[0, 0.1], [True, 0.05]], (1, 0), "must be a whole number >= 0"),
    ([[0, 0.1], [1, 0]], (1, 1), "must be a finite rate > 0 and <= 1000000.0, got 0"),
    ([[0, -0.1]], (0, 1), "must be a finite rate > 0"),
    ([[0, float("nan")]], (0, 1), "got nan"),
    ([[0, 1e7]], (0, 1), "<= 1000000.0"),
    ([[0, "0.1"]], (0, 1), "got '0.1'"),
])
def test_bad_points_name_the_point_and_what_is_wrong(points: Any, where: tuple, says: str) -> None:
    with pytest.raises(SpecError) as info:
        check_lr_points(points, ("x", "lr_points"))
    assert info.value.loc == ("x", "lr_points", *where)
    assert says in info.value.message


# --- manual configs ------------------------------------------------------------------------------------


def test_a_manual_piecewise_config_keeps_its_points() -> None:
    config = validate_manual_config(0, MANUAL, 10)
    assert config["schedule"] == "piecewise" and config["lr_points"] == POINTS and config["lr"] == 0.1
    assert complete_config(config, 10) == config  # completing again changes nothing


@pytest.mark.parametrize(("change", "loc", "says"), [
    ({"lr_points": None}, ("configs", 2, "lr_points"), "is required for the piecewise schedule"),
    ({"lr_points": [[1, 0.1]]}, ("configs", 2, "lr_points", 0, 0), "the first point must be at 0"),
    ({"lr_points": [[0, 0.1], [0, 0.1]]}, ("configs", 2, "lr_points", 1, 0), "strictly increasing"),
    ({"lr_points": [[0, 0.1], [4, float("inf")]]}, ("configs", 2, "lr_points", 1, 1), "finite rate > 0"),
    ({"lr_points": {"0": 0.1}}, ("configs", 2, "lr_points"), "non-empty list"),
    ({"schedule": "cosine"}, ("configs", 2, "lr_points"), "not a parameter of sgd/cosine"),
])
def test_bad_manual_points_name_the_config_and_the_field(change: dict, loc: tuple, says: str) -> None:
    raw = {k: v for k, v in {**MANUAL, **change}.items() if v is not None}
    with pytest.raises(SpecError) as info:
        validate_manual_config(2, raw, 10)
    assert info.value.loc == loc and says in info.value.message, (info.value.loc, info.value.message)


def test_a_manual_job_lists_every_bad_config() -> None:
    configs = ({"lr": 0.1, "schedule": "piecewise"}, MANUAL, {**MANUAL, "lr_points": [[0, 0]]})
    with pytest.raises(SpecError) as info:
        STRATEGIES["manual"](StrategySpec(space=None, epochs=10, configs=configs))
    assert [e.loc for e in info.value.errors] == [("configs", 0, "lr_points"), ("configs", 2, "lr_points", 0, 1)]


# --- spaces: the points are given, never invented ------------------------------------------------------


def test_a_space_offering_piecewise_must_give_the_points() -> None:
    with pytest.raises(SpecError) as info:
        parse_space({"lr": {"low": 1e-3, "high": 1.0}, "schedule": ["constant", "piecewise"]})
    assert info.value.loc == ("space", "lr_points")
    assert "is required when schedule offers piecewise: a search never invents it" in info.value.message


def test_bad_points_in_a_space_name_the_point() -> None:
    with pytest.raises(SpecError) as info:
        parse_space({"lr": {"low": 1e-3, "high": 1.0}, "schedule": ["piecewise"], "lr_points": [[0, 0.1], [0, 1]]})
    assert info.value.loc == ("space", "lr_points", 1, 0)
    with pytest.raises(SpecError) as info:
        parse_space({"lr": {"low": 1e-3, "high": 1.0}, "schedule": ["piecewise"], "lr_points": [[0, "fast"]]})
    assert info.value.loc == ("space", "lr_points", 0, 1)


def _suggestions(strategy: str, space: dict, n: int, **options: Any) -> list[dict]:
    spec = StrategySpec(space=parse_space(space, grid=strategy == "grid"), epochs=8, seed=3,
                        max_trials=None if strategy == "grid" else n, options=options)
    s = STRATEGIES[strategy](spec)
    out = []
    for _ in range(n):
        config = s.suggest()
        if not isinstance(config, dict):
            break
        out.append(config)
    return out


@pytest.mark.parametrize("strategy", ["grid", "random", "bayesian"])
def test_strategies_take_the_spaces_points_as_given(strategy: str) -> None:
    lr = {"low": 1e-3, "high": 1.0, "num": 3} if strategy == "grid" else {"low": 1e-3, "high": 1.0}
    space = {"lr": lr, "optimizer": ["sgd", "adam"], "schedule": ["constant", "piecewise"], "lr_points": POINTS}
    configs = _suggestions(strategy, space, 12)
    piecewise = [c for c in configs if c["schedule"] == "piecewise"]
    assert piecewise and len(piecewise) < len(configs)
    assert all(c["lr_points"] == POINTS for c in piecewise)
    assert all("lr_points" not in c for c in configs if c["schedule"] != "piecewise")
    assert all(parse_space(space, grid=strategy == "grid").contains(c) for c in configs)


def test_a_range_test_of_a_piecewise_space_sweeps_at_a_constant_schedule() -> None:
    space = {"lr": {"low": 1e-5, "high": 1.0}, "schedule": ["piecewise"], "lr_points": POINTS}
    configs = _suggestions("range_test", space, 1, num_steps=10, repeats=1)
    assert configs[0]["schedule"] == "constant" and "lr_points" not in configs[0]
