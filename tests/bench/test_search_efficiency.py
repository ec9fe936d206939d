"""The service benchmark's own arithmetic: the region target, and how runs are summarized against it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench.search_efficiency import (
    OPTUNA,
    REGION_FACTORS,
    grid_configs,
    job_spec,
    main,
    region_target,
    render,
    run_plain_optuna,
    summarize,
)

POINTS, EPOCHS = 5, 10  # 5 log-spaced lrs: 1e-5, 3.16e-4, ..., 10


def grid_entry(top: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    """A grid result as ``run_grid`` stores it: the top configs with 6-digit lrs and 5-digit losses."""
    return {"seed": 0, "points": POINTS, "best_val_loss": top[0][1],
            "top5": [{"val_loss": round(v, 5), "lr": float(f"{c['lr']:.6g}"), "optimizer": c["optimizer"],
                      "schedule": c["schedule"]} for c, v in top]}


class Landscape:
    """val_loss by (optimizer, schedule, lr): ``lucky`` holds at exactly one lr and ``around`` near it."""

    def __init__(self, levels: dict[tuple[str, str], tuple[float, float]]) -> None:
        self.levels = levels
        self.asked: list[dict[str, Any]] = []

    def train(self, config: dict[str, Any]) -> tuple[list[float | None], bool]:
        self.asked.append(config)
        lucky, around = self.levels[(config["optimizer"], config["schedule"])]
        at_grid_point = any(math.isclose(config["lr"], c["lr"], rel_tol=1e-12) for c in grid_configs(POINTS, EPOCHS))
        level = lucky if at_grid_point else around
        if math.isinf(level):
            return [None] * 2, True  # diverged
        return [level * 3, level * 2, level], False


def five(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Five grid configs of distinct settings at the grid's second lr (inside the space's ends)."""
    second = sorted({c["lr"] for c in configs})[1]
    seen, out = set(), []
    for c in (c for c in configs if c["lr"] == second):
        if (c["optimizer"], c["schedule"]) not in seen:
            seen.add((c["optimizer"], c["schedule"]))
            out.append(c)
    return out[:5]


def test_the_region_target_is_the_best_worst_of_three_and_says_whether_it_is_exact() -> None:
    top = five(grid_configs(POINTS, EPOCHS))
    # The grid best is a lucky point (0.100 at its lr, 0.150 within 1%); the second config is a
    # plateau at 0.104; the third diverges next to its lr; the rest are worse plateaus.
    levels = {(c["optimizer"], c["schedule"]): lv for c, lv in zip(top, [
        (0.100, 0.150), (0.104, 0.104), (0.101, math.inf), (0.110, 0.110), (0.112, 0.112)])}
    land = Landscape(levels)
    region = region_target(grid_entry([(c, levels[(c["optimizer"], c["schedule"])][0]) for c in top]),
                           EPOCHS, land.train)
    assert region["val_loss"] == pytest.approx(0.104)  # the plateau, not the lucky point
    assert region["exact"]  # no higher than the fifth best grid loss (0.112)
    assert [c["score"] for c in region["configs"]] == pytest.approx([0.150, 0.104, None, 0.110, 0.112])
    # Each top config trained at its full-precision grid lr times each factor (the stored lr is rounded).
    assert len(land.asked) == 5 * len(REGION_FACTORS)
    grid_lr = top[0]["lr"]
    assert [c["lr"] for c in land.asked[:3]] == pytest.approx([grid_lr * f for f in REGION_FACTORS], rel=1e-12)
    assert land.asked[1]["lr"] == grid_lr and f"{grid_lr:.6g}" != repr(grid_lr)


def test_a_top_config_at_an_end_of_the_space_is_not_trained_outside_it() -> None:
    from bench.search_efficiency import LR_HIGH, LR_LOW

    edge = [c for c in grid_configs(POINTS, EPOCHS) if c["lr"] in (LR_LOW, LR_HIGH)][:5]
    land = Landscape({(c["optimizer"], c["schedule"]): (0.1, 0.1) for c in edge})
    region_target(grid_entry([(c, 0.1) for c in edge]), EPOCHS, land.train)
    assert {c["lr"] for c in land.asked} <= {LR_LOW, LR_LOW * 1.01, LR_HIGH * 0.99, LR_HIGH}


def test_a_region_target_above_the_fifth_grid_loss_is_only_a_bound() -> None:
    top = five(grid_configs(POINTS, EPOCHS))
    # Every top config is a lucky point: the best neighbour-robust score (0.140) is above the fifth
    # grid loss (0.108), and a config outside the top five could score lower.
    levels = {(c["optimizer"], c["schedule"]): (0.100 + 0.002 * i, 0.140 + 0.01 * i) for i, c in enumerate(top)}
    region = region_target(grid_entry([(c, levels[(c["optimizer"], c["schedule"])][0]) for c in top]),
                           EPOCHS, Landscape(levels).train)
    assert region["val_loss"] == pytest.approx(0.140)
    assert not region["exact"]


def run(variant: str, seed: int, to_grid: int | None, to_region: int | None) -> dict[str, Any]:
    return {"variant": variant, "seed": seed, "epochs_to_2pct": to_grid, "epochs_to_2pct_finish_order": to_grid,
            "epochs_to_2pct_region": to_region, "epochs_total": 300, "best_val_loss": 0.1, "seconds": 1.0}


def test_runs_are_summarized_against_both_targets_with_their_own_ratio_to_plain_optuna() -> None:
    runs = [run("bayesian+asha", 0, 100, 80), run("bayesian+asha", 1, None, 150), run("bayesian+asha", 2, 120, 90),
            run(OPTUNA, 0, 300, 200), run(OPTUNA, 1, None, 250), run(OPTUNA, 2, 400, 300)]
    out = summarize(runs, ["bayesian+asha", OPTUNA])
    asha = out["bayesian+asha"]
    assert (asha["reached"], asha["reached_region"]) == (2, 3)
    assert asha["median_epochs_to_2pct"] == 120 and asha["ratio_to_optuna"] == pytest.approx(120 / 400)
    assert asha["median_epochs_to_2pct_region"] == 90 and asha["ratio_to_optuna_region"] == pytest.approx(90 / 250)
    table = render({"config": {"grid_points": POINTS, "epochs": EPOCHS, "seeds": [0, 1, 2], "budget": 100},
                    "grid": {}, "summary": out})
    assert "against the region target" in table
    assert "| lrsearch bayesian+asha | 3/3 | 80, 150, 90 | 90 | 0.36x |" in table


def test_runs_without_a_region_target_are_summarized_as_before() -> None:
    legacy = [{k: v for k, v in run("random", s, 100, 90).items() if k != "epochs_to_2pct_region"} for s in (0, 1)]
    out = summarize(legacy, ["random"])
    assert "reached_region" not in out["random"] and "ratio_to_optuna_region" not in out["random"]
    assert "region target" not in render({"config": {"grid_points": POINTS, "epochs": EPOCHS, "seeds": [0, 1],
                                                     "budget": 100}, "grid": {}, "summary": out}).split("\n\n", 2)[2]


def test_a_run_is_searched_with_its_seed_and_trained_from_the_training_seed() -> None:
    spec = job_spec("bayesian+asha", 3, 100, EPOCHS, training_seed=0)
    assert (spec["seed"], spec["training_seed"]) == (3, 0)
    # The plain Optuna script: the sampler follows the seed, the trainings the training seed.
    a, again = (run_plain_optuna(seed=1, budget=2, epochs=1, training_seed=5) for _ in range(2))
    other_init = run_plain_optuna(seed=1, budget=2, epochs=1, training_seed=6)
    assert [t["curve"] for t in a["trials"]] == [t["curve"] for t in again["trials"]]
    assert [t["config"] for t in a["trials"]] == [t["config"] for t in other_init["trials"]]
    assert [t["curve"] for t in a["trials"]] != [t["curve"] for t in other_init["trials"]]


def test_the_tables_say_which_landscape_the_runs_trained_on() -> None:
    grid = {str(s): {"seed": s, "best_val_loss": 0.1, "within_2pct": 1,
                     "best_config": {"lr": 0.01, "optimizer": "adam", "schedule": "constant"}} for s in (0, 1)}
    out = summarize([run("random", s, 100, 90) for s in (0, 1)], ["random"])
    one = render({"config": {"grid_points": POINTS, "epochs": EPOCHS, "seeds": [0, 1], "budget": 100,
                             "training_seed": 1, "training_seeds": [1]}, "grid": grid, "summary": out})
    assert "2 search seeds (every run trained from training seed 1)" in one
    assert [line.split(" |")[0] for line in one.splitlines() if line.startswith(("| 0 |", "| 1 |"))] == ["| 1"]
    each = render({"config": {"grid_points": POINTS, "epochs": EPOCHS, "seeds": [0, 1], "budget": 100},
                   "grid": grid, "summary": out})  # results from before the option: each seed its own
    assert "2 search seeds (each seed also the training's)" in each
    assert sum(line.startswith(("| 0 |", "| 1 |")) for line in each.splitlines()) == 2


@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_a_training_seed_that_is_not_one_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--training-seed", value])
    assert exit_.value.code == 2 and "--training-seed" in capsys.readouterr().err
