"""The search space: parsing, validation errors that name the field, grids and membership."""

from __future__ import annotations

import pytest

from lrsearch.search import SpecError, parse_space
from lrsearch.search.catalog import OPTIMIZERS, SCHEDULES, complete_config


def error(raw: object, *, grid: bool = False) -> SpecError:
    with pytest.raises(SpecError) as err:
        parse_space(raw, grid=grid)
    return err.value


def test_defaults_fill_the_common_dimensions() -> None:
    space = parse_space({"lr": {"low": 1e-4, "high": 1.0}})
    assert space.optimizers == ("sgd",) and space.schedules == ("constant",)
    assert space.dims["warmup_fraction"].grid_points() == [0.0]
    assert space.dims["lr"].log


@pytest.mark.parametrize(("raw", "loc", "words"), [
    ({"lr": {"low": -1e-3, "high": 1.0}}, ("space", "lr", "low"), "> 0"),
    ({"lr": {"low": 0.0, "high": 1.0}}, ("space", "lr", "low"), "> 0"),
    ({"lr": {"low": 1e-4, "high": float("nan")}}, ("space", "lr", "high"), "finite"),
    ({"lr": {"low": 1e-4, "high": float("inf")}}, ("space", "lr", "high"), "finite"),
    ({"lr": {"low": 0.1, "high": 0.1}}, ("space", "lr", "low"), "must be < high"),
    ({"lr": {"low": 1.0, "high": 0.1}}, ("space", "lr", "low"), "must be < high"),
    ({"lr": {"low": 1e-4}}, ("space", "lr", "high"), "required"),
    ({"lr": {"values": []}}, ("space", "lr", "values"), "non-empty"),
    ({"lr": {"values": [0.1, -1]}}, ("space", "lr", "values", 1), "> 0"),
    ({"lr": {"values": [0.1], "low": 1}}, ("space", "lr", "low"), "allowed"),
    ({"lr": "fast"}, ("space", "lr"), "low"),
    ({}, ("space", "lr"), "required"),
    ({"lr": {"low": 1e-4, "high": 1.0}, "optimizer": ["sgd", "lamb"]}, ("space", "optimizer", 1), "allowed"),
    ({"lr": {"low": 1e-4, "high": 1.0}, "schedule": ["warm-restarts"]}, ("space", "schedule", 0), "allowed"),
    ({"lr": {"low": 1e-4, "high": 1.0}, "batch_size": [32]}, ("space", "batch_size"), "allowed"),
    ({"lr": {"low": 1e-4, "high": 1.0, "num": 5}}, ("space", "lr", "num"), "only grid"),
    ({"lr": {"low": 1e-4, "high": 1.0}, "warmup_fraction": {"low": 0.0, "high": 0.95}},
     ("space", "warmup_fraction", "high"), "<= 0.9"),
    ({"lr": {"low": 1e-4, "high": 1.0}, "step_size": {"low": 1.5, "high": 4}}, ("space", "step_size", "low"),
     "integer"),
    ({"lr": {"low": 1e-4, "high": 1.0}, "step_size": {"values": [2, 2.5]}}, ("space", "step_size", "values", 1),
     "integer"),
    ({"lr": {"low": 1e-4, "high": 1.0}, "momentum": {"low": 0.0, "high": 1.5}}, ("space", "momentum", "high"),
     "<= 0.999"),
    ({"lr": {"low": 1e-4, "high": 1.0}, "nesterov": ["yes"]}, ("space", "nesterov", 0), "true or false"),
    ([1, 2], ("space",), "object"),
])
def test_validation_errors_name_the_field(raw: dict, loc: tuple, words: str) -> None:
    err = error(raw)
    assert err.loc == loc
    assert words in err.message
    assert str(err).startswith(".".join(str(p) for p in loc))


def test_unknown_names_list_what_is_allowed() -> None:
    err = error({"lr": {"low": 1e-4, "high": 1.0}, "optimizer": ["lamb"]})
    assert all(name in err.message for name in OPTIMIZERS)
    err = error({"lr": {"low": 1e-4, "high": 1.0}, "schedule": ["nope"]})
    assert all(name in err.message for name in SCHEDULES)
    err = error({"lr": {"low": 1e-4, "high": 1.0}, "dropout": {"low": 0, "high": 1}})
    assert "step_size" in err.message and "warmup_fraction" in err.message


def test_grid_needs_num_or_values() -> None:
    err = error({"lr": {"low": 1e-4, "high": 1.0}}, grid=True)
    assert err.loc == ("space", "lr") and "num" in err.message
    err = error({"lr": {"low": 1e-4, "high": 1.0, "num": 0}}, grid=True)
    assert err.loc == ("space", "lr", "num")
    err = error({"lr": {"low": 1e-4, "high": 1.0, "num": True}}, grid=True)
    assert err.loc == ("space", "lr", "num")


def test_grid_points_are_log_spaced_for_lr_and_exact_at_the_ends() -> None:
    space = parse_space({"lr": {"low": 1e-4, "high": 1.0, "num": 5}, "warmup_fraction": {"low": 0, "high": 0.2,
                                                                                          "num": 3}}, grid=True)
    assert space.dims["lr"].grid_points() == [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert space.dims["warmup_fraction"].grid_points() == pytest.approx([0.0, 0.1, 0.2])
    assert space.grid_size() == 15


def test_duplicates_collapse() -> None:
    space = parse_space({"lr": {"values": [0.1, 0.1, 0.01]}, "optimizer": ["adam", "adam"]})
    assert space.dims["lr"].grid_points() == [0.1, 0.01] and space.optimizers == ("adam",)


def test_contains() -> None:
    space = parse_space({"lr": {"low": 1e-4, "high": 1.0}, "optimizer": ["sgd", "adam"],
                         "schedule": ["constant", "step"], "step_size": {"values": [1, 3]}})
    inside = complete_config({"lr": 1e-2, "optimizer": "adam", "schedule": "constant"}, 6)
    assert space.contains(inside)
    assert space.contains({**inside, "lr": 1.0}) and space.contains({**inside, "lr": 1e-4})
    assert not space.contains({**inside, "lr": 1.5})
    assert not space.contains({**inside, "optimizer": "rmsprop"})
    assert not space.contains({**inside, "schedule": "cosine"})
    assert space.contains({**inside, "schedule": "step", "step_size": 3})
    assert not space.contains({**inside, "schedule": "step", "step_size": 2})


def test_a_spec_error_survives_pickling_with_its_field_and_message() -> None:
    import pickle

    with pytest.raises(SpecError) as err:
        parse_space({"lr": {"low": -1, "high": 1}})
    again = pickle.loads(pickle.dumps(err.value))  # as a process pool or Ray returns it
    assert isinstance(again, SpecError)
    assert (again.loc, again.message, str(again)) == (err.value.loc, err.value.message, str(err.value))
    assert again.loc[:2] == ("space", "lr")
