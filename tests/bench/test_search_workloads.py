"""The search-across-workloads benchmark: a landscape trained on a coarse grid, every search replayed on it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.search_workloads import (
    OPTUNA,
    TUNE,
    Landscape,
    LandscapeSpec,
    best_at,
    grid_configs,
    load_or_build,
    main,
    quartiles,
    run_lrsearch,
    run_plain_optuna,
    run_ray_tune,
    run_real_tuner,
    variants,
)

# Real trainings, few of them: 7 lrs x 16 optimizer/schedule pairs of 3 epochs (a second or two).
SPEC = LandscapeSpec("logreg-breast-cancer", epochs=3, per_decade=1)


@pytest.fixture(scope="module")
def landscape(tmp_path_factory: pytest.TempPathFactory) -> Landscape:
    return load_or_build(SPEC, tmp_path_factory.mktemp("landscapes"), budget=10, workers=1)


def test_a_landscape_answers_an_lr_with_its_nearest_grid_point(landscape: Landscape) -> None:
    lrs = SPEC.lrs()
    assert len(lrs) == 7 and math.isclose(lrs[0], 1e-5) and math.isclose(lrs[-1], 10.0)
    assert len(grid_configs(SPEC)) == 7 * 16
    config = {"optimizer": "adam", "schedule": "cosine"}
    grid_point = landscape.get({**config, "lr": 1e-2}, 0, 3)
    assert landscape.get({**config, "lr": 1.2e-2}, 0, 3) == grid_point  # within half a decade's cell
    assert landscape.get({**config, "lr": 4e-2}, 0, 3) == landscape.get({**config, "lr": 1e-1}, 0, 3)
    assert landscape.get({**config, "lr": 1e-7}, 0, 3) == landscape.get({**config, "lr": 1e-5}, 0, 3)  # clipped
    assert landscape.get({**config, "lr": 1e-2}, 0, 3) != landscape.get({**config, "lr": 1e-4}, 0, 3)
    assert 0 < landscape.best() < landscape.untrained


def test_a_landscape_is_read_back_and_retrained_only_for_another_spec(landscape: Landscape, tmp_path: Path) -> None:
    path = tmp_path / f"{SPEC.workload}.json"
    path.write_text(json.dumps(landscape.to_json()))
    again = load_or_build(SPEC, tmp_path, budget=10, workers=1)
    assert again.curves == landscape.curves and again.range_tests == landscape.range_tests
    assert again.best() == landscape.best()
    other = LandscapeSpec(SPEC.workload, epochs=2, per_decade=1)
    rebuilt = load_or_build(other, tmp_path, budget=10, workers=1)
    assert rebuilt.spec == other and all(len(c) <= 2 for cs in rebuilt.curves.values() for c, _ in cs)
    assert Landscape.from_json(json.loads(path.read_text())).spec == other  # and saved over the old one


def _check_run(run: dict, rounds: int, budget: int, extra: float = 0.0) -> None:
    """A run's trace falls as rounds go on; its budget's trials trained 1 to ``rounds`` rounds each
    (plus ``extra``: range tests)."""
    trace = run["trace"]
    assert trace and run["best"] == trace[-1][1]
    assert all(b[0] >= a[0] and b[1] < a[1] for a, b in zip(trace, trace[1:]))
    assert budget + extra <= run["rounds"] <= budget * rounds + extra


@pytest.mark.parametrize("variant", ["random", "bayesian", "bayesian+asha", "auto"])
def test_every_lrsearch_strategy_replays_on_a_landscape(landscape: Landscape, variant: str) -> None:
    run = run_lrsearch(landscape, variants()[variant], seed=1, budget=10)
    # auto's first 4 trials are range tests: they cost their steps as batches and report no val_loss.
    range_tests = sum(len(p) for p in landscape.range_tests.values()) * landscape.step_rounds
    if variant == "auto":
        assert run["trace"][0][0] > range_tests
    _check_run(run, SPEC.rounds, *((10,) if variant != "auto" else (6, range_tests)))
    assert run_lrsearch(landscape, variants()[variant], seed=1, budget=10) == run  # seeded


def test_plain_optuna_and_ray_tune_replay_on_a_landscape(landscape: Landscape) -> None:
    optuna = run_plain_optuna(landscape, seed=0, budget=12)
    _check_run(optuna, SPEC.rounds, 12)
    tune = run_ray_tune(landscape, seed=0, budget=12)
    _check_run(tune, SPEC.rounds, 12)
    assert tune["rounds"] < 12 * SPEC.rounds  # ASHA's defaults (grace 1, r 4) stop some trials after one epoch
    assert run_ray_tune(landscape, seed=0, budget=12) == tune


def test_a_step_landscape_counts_evaluations_and_replays_every_variant(tmp_path: Path) -> None:
    spec = LandscapeSpec("logreg-breast-cancer", steps=30, eval_every=10, per_decade=1)
    # A step job's trainings; the budget of 6 leaves auto room for its range tests.
    landscape = load_or_build(spec, tmp_path, budget=6, workers=1)
    assert spec.rounds == 3 and spec.unit == "steps" and spec.per_round == 10
    assert {len(c) for cs in landscape.curves.values() for c, d in cs if not d} == {3}
    assert math.isclose(landscape.step_rounds, 1 / 10)
    for name, how in variants().items():
        run = run_lrsearch(landscape, how, seed=0, budget=6)
        assert run["trace"], name
    # A variant's grace counts evaluations on every landscape: on a step job it is stated in steps.
    grace_one = {"strategy": "bayesian", "early_stopping": {"kind": "asha", "grace_epochs": 1}}
    assert run_lrsearch(landscape, grace_one, seed=0, budget=6)["trace"]


def test_best_at_and_quartiles_read_the_curves() -> None:
    trace = [(2, 0.5), (5, 0.3), (9, 0.2)]
    assert best_at(trace, 1) == math.inf and best_at(trace, 2) == 0.5 and best_at(trace, 8) == 0.3
    assert best_at(trace, 100) == 0.2
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)
    assert quartiles([1.0, 2.0, math.inf, math.inf, math.inf])[1] == math.inf  # most seeds with nothing yet


def test_the_benchmark_writes_its_table_curves_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    assert main(["--quick", "--workloads", "logreg-breast-cancer", "--workers", "1", "--out", str(out),
                 "--plots", str(tmp_path / "plots"), "--landscapes", str(tmp_path / "landscapes"),
                 "--extra", 'auto-g1={"strategy": "auto", "early_stopping": {"kind": "asha", "grace_epochs": 1}}']) == 0
    result = json.loads(out.read_text())
    summary = result["workloads"]["logreg-breast-cancer"]
    assert set(summary["curves"]) == {"random", "bayesian", "bayesian+asha", "auto", "auto-g1", OPTUNA, TUNE}
    assert len(result["runs"]) == 7 * 3  # every variant on 3 seeds
    for name, row in summary["table"].items():
        assert row["final"]["median"] >= 1.0  # nothing beats the landscape's own best
        if name != OPTUNA:
            low, high = row["at_1"]["minus_optuna_90pct"]
            assert low <= high
    assert set(result["verdicts"]["logreg-breast-cancer"]) >= {"at_0.25", "at_0.5", "at_1", "reach_within_0.7x"}
    assert "| plain Optuna (TPE + Hyperband) |" in result["table"]
    svg = (tmp_path / "plots" / "logreg-breast-cancer.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 7


def test_the_replayed_ray_tune_matches_a_real_tuner_one_trial_at_a_time(landscape: Landscape, tmp_path: Path) -> None:
    # A real tune.Tuner on its own local Ray, in a process of its own (this one may hold a Ray already).
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        real = pool.apply(run_real_tuner, (landscape, 3, 6))
    replayed = run_ray_tune(landscape, seed=3, budget=6, concurrency=1)
    assert real["reported_rounds"] == replayed["rounds"] - replayed["unreported"]
    assert real["best"] == replayed["best"]
