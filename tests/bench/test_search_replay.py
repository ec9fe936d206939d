"""The in-process replay of the search: the service's strategy and early stopping, no Ray."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.search_replay import CurveCache, replay, three_seed_pass_share


@pytest.mark.parametrize("variant", ["random", "bayesian", "bayesian+asha"])
def test_a_replay_runs_the_budget_and_counts_every_trained_epoch(tmp_path: Path, variant: str) -> None:
    cache = CurveCache(tmp_path / "curves.pkl")
    run = replay(variant, seed=0, budget=8, epochs=4, cache=cache)
    assert sum(run["statuses"].values()) == 8
    assert 8 <= run["epochs"] <= 8 * 4
    if variant == "bayesian+asha":
        assert run["statuses"]["pruned"] >= 1  # rungs at 2 epochs: some of 8 trials stop there
    else:
        assert run["statuses"]["pruned"] == 0
    # Trained once, then read back: the same seed replays to the same numbers without training.
    cache.save()
    again = CurveCache(tmp_path / "curves.pkl")
    assert replay(variant, seed=0, budget=8, epochs=4, cache=again) == run
    assert again.new == 0


def test_the_target_is_met_at_the_first_epoch_within_it(tmp_path: Path) -> None:
    cache = CurveCache(tmp_path / "curves.pkl")
    loose = replay("random", seed=1, budget=4, epochs=3, cache=cache, target=10.0)
    assert loose["epochs_to_2pct"] == 1  # any finite first epoch is within 10
    assert replay("random", seed=1, budget=4, epochs=3, cache=cache, target=0.0)["epochs_to_2pct"] is None


def test_three_seed_pass_share_counts_subsets_meeting_both_lines() -> None:
    random_epochs, random_best = [200, 200, 200, 200], [0.10, 0.10, 0.10, 0.10]
    assert three_seed_pass_share([90, 90, 90, 90], [0.10] * 4, random_epochs, random_best) == 1.0
    assert three_seed_pass_share([110, 110, 110, 110], [0.10] * 4, random_epochs, random_best) == 0.0
    assert three_seed_pass_share([90, 90, 90, 90], [0.11] * 4, random_epochs, random_best) == 0.0
    # One seed over budget: a 3-seed median stays at 90 in every subset -> all pass.
    assert three_seed_pass_share([90, 90, 90, 300], [0.10] * 4, random_epochs, random_best) == 1.0
    # Two seeds over: a subset passes when it holds both good seeds (2 of the 4 subsets).
    assert three_seed_pass_share([90, 90, 300, 300], [0.10] * 4, random_epochs, random_best) == 0.5


class FlatCurves(CurveCache):
    """Every config's curve: the loss stays at ``level`` (no training: what the replay does with it)."""

    def __init__(self, path: Path, level: float) -> None:
        super().__init__(path)
        self.level = level

    def get(self, config: dict, seed: int, epochs: int) -> tuple[list[float | None], bool]:
        return [self.level] * epochs, False


def test_with_early_stopping_a_first_epoch_that_learned_nothing_ends_the_trial(tmp_path: Path) -> None:
    # 9.0 is above the untrained model's val_loss (~2.3): no trial learned anything in its first epoch.
    hopeless = FlatCurves(tmp_path / "curves.pkl", 9.0)
    pruned = replay("bayesian+asha", seed=0, budget=6, epochs=4, cache=hopeless)
    assert pruned["epochs"] == 6 and pruned["statuses"]["pruned"] == 6
    assert replay("random", seed=0, budget=6, epochs=4, cache=hopeless)["epochs"] == 6 * 4  # no early stopping
    # Below the untrained loss the rungs decide as before: the first trial is the best at its rung.
    learning = replay("bayesian+asha", seed=0, budget=6, epochs=4, cache=FlatCurves(tmp_path / "c2.pkl", 0.5))
    assert learning["epochs"] > 6


class CrossingCurves(CurveCache):
    """A config's first epoch ends at ``low`` (0.1..0.4 with its lr), every later one at ``1 - low``:
    the config that starts best is the worst at ASHA's rung, so it is pruned with the lowest loss."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.first_epochs: list[float] = []

    def get(self, config: dict, seed: int, epochs: int) -> tuple[list[float | None], bool]:
        low = 0.1 + 0.3 * (math.log10(config["lr"]) + 5) / 6  # lr 1e-5..10 -> 0.1..0.4
        self.first_epochs.append(low)
        return [low] + [1 - low] * (epochs - 1), False


def test_the_best_is_the_lowest_loss_of_any_trial_as_the_service_ranks_them(tmp_path: Path) -> None:
    curves = CrossingCurves(tmp_path / "curves.pkl")
    run = replay("bayesian+asha", seed=0, budget=12, epochs=4, cache=curves)
    assert run["statuses"]["pruned"] >= 1 and run["statuses"]["completed"] >= 1
    # The lowest first epoch of all trials, whichever status its trial ended with.
    assert run["best_val_loss"] == min(curves.first_epochs)


class ExplodingCurves(CurveCache):
    """Every config learns in its first epoch, then its loss explodes to a finite value (the trainer
    calls that diverged): the second epoch ends the trial, at ASHA's 2-epoch rung."""

    def get(self, config: dict, seed: int, epochs: int) -> tuple[list[float | None], bool]:
        return [0.5, 50.0 + config["lr"]], True


def test_a_diverged_epoch_ends_the_trial_unheard_by_the_rule_as_in_the_runner(tmp_path: Path) -> None:
    run = replay("bayesian+asha", seed=0, budget=6, epochs=4, cache=ExplodingCurves(tmp_path / "curves.pkl"))
    # The runner stores the exploded epoch and ends the trial as diverged before asking the rule,
    # so no trial is pruned at the rung against another's exploded loss.
    assert run["statuses"] == {"completed": 0, "pruned": 0, "diverged": 6}
    assert run["epochs"] == 6 * 2


class RecordingCurves(CurveCache):
    """Flat learning curves that remember which configs were asked for, and with which seed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.asked: list[tuple[float, int]] = []

    def get(self, config: dict, seed: int, epochs: int) -> tuple[list[float | None], bool]:
        self.asked.append((config["lr"], seed))
        return [0.5] * epochs, False


@pytest.mark.parametrize("variant", ["random", "bayesian"])
def test_a_search_seed_draws_other_configs_on_the_same_trainings(tmp_path: Path, variant: str) -> None:
    def asked(search_seed: int | None) -> list[tuple[float, int]]:
        curves = RecordingCurves(tmp_path / "curves.pkl")
        replay(variant, seed=3, budget=5, epochs=2, cache=curves, search_seed=search_seed)
        return curves.asked

    default = asked(None)
    assert asked(3) == default  # the job's seed seeds the search too, as in the service
    other = asked(1003)
    assert len(other) == len(default) == 5
    assert {seed for _, seed in other} == {3}  # trained with the job's seed ...
    assert [lr for lr, _ in other] != [lr for lr, _ in default]  # ... on other draws


def test_the_gp_variant_runs_bayesian_with_the_gp_sampler_and_only_when_named(tmp_path: Path) -> None:
    from bench.search_efficiency import DEFAULT_VARIANTS, job_spec
    from bench.search_replay import DEFAULT_REPLAYED
    from lrsearch.search.strategies import make_strategy
    from lrsearch.service.config import Settings
    from lrsearch.service.schemas import JobSpec
    from lrsearch.service.validation import check_job_spec

    # Through the service, the variant's JobSpec passes validation with GP as the strategy's sampler.
    spec = job_spec("bayesian-gp+asha", seed=0, budget=8, epochs=4)
    checked = check_job_spec(JobSpec.model_validate(spec), Settings(), ["mlp-digits"])
    assert make_strategy("bayesian", checked.strategy_spec).sampler_name == "gp"
    assert "options" not in job_spec("bayesian+asha", seed=0, budget=8, epochs=4)  # TPE by default
    assert "bayesian-gp+asha" not in DEFAULT_VARIANTS and "bayesian-gp+asha" not in DEFAULT_REPLAYED

    # Replayed: after the 4 start-up trials of an 8-trial job, GP proposes other lrs than TPE.
    def asked(variant: str) -> list[float]:
        curves = RecordingCurves(tmp_path / f"{variant}.pkl")
        run = replay(variant, seed=0, budget=8, epochs=4, cache=curves)
        assert sum(run["statuses"].values()) == 8
        return [lr for lr, _ in curves.asked]

    gp, tpe = asked("bayesian-gp+asha"), asked("bayesian+asha")
    assert len(gp) == len(tpe) == 8 and gp[4:] != tpe[4:]


def test_draws_replay_every_search_again_and_workers_change_nothing(tmp_path: Path, capsys) -> None:
    import json

    from bench.search_replay import DRAW_STRIDE, main

    def run(workers: int, out: str) -> dict:
        args = ["--quick", "--epochs", "3", "--draws", "2", "--workers", str(workers),
                "--cache", str(tmp_path / "curves.pkl"), "--out", str(tmp_path / out)]
        assert main(args) == 0
        return json.loads((tmp_path / out).read_text())

    two = run(2, "two.json")
    assert [d["search_seed_offset"] for d in two["draws"]] == [0, DRAW_STRIDE]
    assert len(two["runs"]) == 2 * 4 * 3  # draws x variants (random, bayesian, bayesian+asha, auto) x seeds
    assert all(sum(r["statuses"].values()) == 8 for r in two["runs"])
    first = [r for r in two["runs"] if r["search_seed_offset"] == 0]
    again = [r for r in two["runs"] if r["search_seed_offset"] == DRAW_STRIDE]
    assert [r["epochs"] for r in first] != [r["epochs"] for r in again] or \
        [r["best_val_loss"] for r in first] != [r["best_val_loss"] for r in again]  # other draws
    assert two["check"] == two["draws"][0]["check"]
    ratios = [d["check"]["bayesian+asha"]["epochs_ratio"] for d in two["draws"]]
    assert two["over_draws"]["bayesian+asha"]["epochs_ratio"] == {
        "mean": sum(ratios) / 2, "min": min(ratios), "max": max(ratios)}
    assert "Over 2 draws" in two["table"]
    capsys.readouterr()
    # One process, from the cache the workers filled and saved: the same runs, nothing trained again.
    one = run(1, "one.json")
    assert one["runs"] == two["runs"]
    assert "0 new curves trained" in capsys.readouterr().err


def test_a_variant_that_cannot_run_the_epochs_is_refused_up_front(capsys) -> None:
    from bench.search_replay import main

    with pytest.raises(SystemExit) as exited:
        main(["--quick", "--epochs", "2", "--variants", "bayesian+asha"])
    assert exited.value.code == 2
    assert "bayesian+asha cannot run 2 epochs" in capsys.readouterr().err


class OrderedCurves(CurveCache):
    """Real range tests, flat learning curves; remembers what was asked for, in order."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.asked: list[tuple[str, dict]] = []

    def get(self, config: dict, seed: int, epochs: int) -> tuple[list[float | None], bool]:
        self.asked.append(("train", config))
        return [0.5] * epochs, False

    def range_test(self, config: dict, seed: int) -> list[tuple[float, float]]:
        self.asked.append(("range_test", config))
        return super().range_test(config, seed)


def test_auto_replays_its_range_tests_first_then_searches_inside_their_windows(tmp_path: Path) -> None:
    from bench.search_efficiency import OPTIMIZERS, batch_epochs

    cache = OrderedCurves(tmp_path / "curves.pkl")
    run = replay("auto", seed=0, budget=12, epochs=4, cache=cache)
    assert sum(run["statuses"].values()) == 12
    asked = list(cache.asked)
    kinds = [kind for kind, _ in asked]
    assert kinds == ["range_test"] * len(OPTIMIZERS) + ["train"] * 8  # no training before every test ended
    assert [c["optimizer"] for _, c in asked[:4]] == OPTIMIZERS
    # A range test costs its steps as batches; the rest is whole epochs of the 8 trainings.
    steps = sum(len(cache.range_test(c, 0)) for kind, c in asked if kind == "range_test")
    training = run["epochs"] - steps * batch_epochs()
    assert training == pytest.approx(round(training), abs=1e-3) and 8 <= round(training) <= 8 * 4  # 3 decimals kept
    # Inside a decade either side of each optimizer's suggestion: 2 decades at most, not the space's 6.
    for optimizer in OPTIMIZERS:
        lrs = [c["lr"] for kind, c in asked if kind == "train" and c["optimizer"] == optimizer]
        assert not lrs or max(lrs) / min(lrs) <= 100 * (1 + 1e-9)
    # The range tests are saved with the curves: the same replay again runs no range test.
    cache.save()
    again = OrderedCurves(tmp_path / "curves.pkl")
    assert replay("auto", seed=0, budget=12, epochs=4, cache=again) == run
    assert again.new == 0


class LrCurves(CurveCache):
    """0.9 after the first epoch (no lower than another's first: not ranked against it), then a
    level that grows with the lr; remembers the lrs asked for, in order."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.lrs: list[float] = []

    def get(self, config: dict, seed: int, epochs: int) -> tuple[list[float | None], bool]:
        self.lrs.append(config["lr"])
        level = 0.1 + 0.05 * (math.log10(config["lr"]) + 5)  # 0.1 .. 0.4 over lr 1e-5 .. 10
        return [0.9] + [level] * (epochs - 1), False


@pytest.mark.parametrize("ties", ["number", "random"])
def test_trials_reaching_a_rung_together_are_heard_in_the_order_ties_says(tmp_path: Path, ties: str) -> None:
    import random

    # Trials 0 and 1 start together and reach ASHA's 2-epoch rung at the same tick. With one value
    # at the rung, the second goes on only if it is better: the worse one is pruned exactly when the
    # better one is heard first.
    outcomes = set()
    for search_seed in range(8):
        curves = LrCurves(tmp_path / "curves.pkl")
        run = replay("bayesian+asha", seed=0, budget=2, epochs=4, cache=curves, search_seed=search_seed, ties=ties)
        draw = random.Random(search_seed)
        first = 0 if ties == "number" else min((draw.random(), n) for n in (0, 1))[1]
        better = min((lr, n) for n, lr in enumerate(curves.lrs))[1]
        expected = {"completed": 1, "pruned": 1} if first == better else {"completed": 2, "pruned": 0}
        assert {k: run["statuses"][k] for k in ("completed", "pruned")} == expected
        assert replay("bayesian+asha", seed=0, budget=2, epochs=4, cache=LrCurves(tmp_path / "c.pkl"),
                      search_seed=search_seed, ties=ties) == run  # seeded: the same order again
        outcomes.add(first == better)
    assert outcomes == {True, False}  # both orders occurred over the 8 draws
    with pytest.raises(ValueError, match="ties"):
        replay("random", seed=0, budget=1, epochs=1, cache=LrCurves(tmp_path / "c.pkl"), ties="alphabetical")


class LateCurves(LrCurves):
    """As LrCurves, but 0.9 for the first three epochs: trials differ from the fourth on."""

    def get(self, config: dict, seed: int, epochs: int) -> tuple[list[float | None], bool]:
        curve, diverged = super().get(config, seed, epochs)
        return [0.9, 0.9, 0.9] + curve[3:], diverged


def test_asha_replaces_the_rung_settings_of_the_variants_that_stop_early(tmp_path: Path, capsys) -> None:
    from bench.search_replay import main, parse_asha, rule_of

    # Two trials reach each epoch together, trial 0 heard first. At the default rung (2 epochs) they
    # tie and both go on; at a rung at 4 epochs trial 1 stops there when trial 0 is the better one.
    late = parse_asha("4,2")
    assert late == {"kind": "asha", "grace_epochs": 4, "reduction_factor": 2}
    outcomes = set()
    for search_seed in range(8):
        curves = LateCurves(tmp_path / "curves.pkl")
        default = replay("bayesian+asha", seed=0, budget=2, epochs=6, cache=curves, search_seed=search_seed)
        assert default["epochs"] == 12 and default["statuses"]["pruned"] == 0
        moved = replay("bayesian+asha", seed=0, budget=2, epochs=6, cache=LateCurves(tmp_path / "c.pkl"),
                       search_seed=search_seed, asha=late)
        first_is_better = curves.lrs[0] < curves.lrs[1]
        assert (moved["epochs"], moved["statuses"]["pruned"]) == ((6 + 4, 1) if first_is_better else (12, 0))
        outcomes.add(first_is_better)
    assert outcomes == {True, False}
    assert rule_of("random", late) is None and rule_of("auto", late) == late
    for bad in ("2", "2,x", "2,3,4"):
        with pytest.raises(ValueError, match="GRACE,FACTOR"):
            parse_asha(bad)
    with pytest.raises(SystemExit) as exited:
        main(["--quick", "--asha", "10,3"])
    assert exited.value.code == 2
    assert "grace_epochs" in capsys.readouterr().err


def test_a_region_target_is_reached_no_later_than_the_grid_best(tmp_path: Path) -> None:
    import json

    from bench.search_efficiency import DEFAULT_OUT as SERVICE_RESULTS
    from bench.search_efficiency import REGION_FACTORS
    from bench.search_replay import main

    def run(target: str) -> dict:
        out = tmp_path / f"{target}.json"
        assert main(["--seeds", "4", "--budget", "4", "--target-budget", "12", "--variants", "random",
                     "--no-optuna", "--target", target, "--cache", str(tmp_path / "curves.pkl"),
                     "--out", str(out)]) == 0
        return json.loads(out.read_text())

    grid, region = run("grid"), run("region")
    assert grid["config"]["target"] == "grid" and "region" not in grid
    assert region["config"]["target"] == "region" and "of the region target" in region["table"]
    service_grid = json.loads(SERVICE_RESULTS.read_text())["grid"]
    for seed in ("0", "1", "2", "3"):
        r = region["region"][seed]
        assert r["factors"] == list(REGION_FACTORS) and len(r["configs"]) == 5
        # The x1 training of the grid's best config is the grid best again (to the last digits, which
        # differ between machines), and every score is a worst of three: no lower than the x1 losses.
        assert REGION_FACTORS[1] == 1.0
        assert math.isclose(r["configs"][0]["val_losses"][1], service_grid[seed]["best_val_loss"], rel_tol=0.01)
        assert r["val_loss"] == min(max(c["val_losses"]) for c in r["configs"])
        assert r["val_loss"] >= min(c["val_losses"][1] for c in r["configs"])
    runs = {r["seed"]: r for r in grid["runs"] if r["budget"] == 12}
    # Seed 3's random search reaches its grid best's 2% within 12 trials: the comparison below bites.
    assert runs[3]["epochs_to_2pct"] is not None
    for r in (r for r in region["runs"] if r["budget"] == 12):
        assert {k: v for k, v in r.items() if k != "epochs_to_2pct"} == \
            {k: v for k, v in runs[r["seed"]].items() if k != "epochs_to_2pct"}
        if runs[r["seed"]]["epochs_to_2pct"] is not None:
            assert r["epochs_to_2pct"] is not None and r["epochs_to_2pct"] <= runs[r["seed"]]["epochs_to_2pct"]


def test_landscapes_count_each_seed_with_its_draws_as_the_search_seeds() -> None:
    from bench.search_replay import landscapes, render

    offsets = [0, 1000, 2000]

    def run(variant: str, seed: int, budget: int, off: int, epochs: int, best: float, hit: int | None) -> dict:
        return {"variant": variant, "seed": seed, "budget": budget, "search_seed_offset": off, "epochs": epochs,
                "best_val_loss": best, "epochs_to_2pct": hit}

    runs = []
    for off in offsets:
        runs += [run("random", s, 30, off, 240, 0.10, None) for s in (0, 1, 2)]
        runs += [run("random", s, 100, off, 800, 0.09, None) for s in (0, 1, 2)]
        # Seed 0: cheap and as good as random, every draw reaches. Seed 1: too many epochs, one
        # draw misses. Seed 2: cheap but worse than random, every draw reaches, but slowly.
        runs += [run("bayesian+asha", 0, 30, off, 100, 0.095, None), run("bayesian+asha", 0, 100, off, 400, 0.08, 200),
                 run("bayesian+asha", 1, 30, off, 130, 0.095, None),
                 run("bayesian+asha", 1, 100, off, 400, 0.08, None if off == 2000 else 100),
                 run("bayesian+asha", 2, 30, off, 100, 0.11, None), run("bayesian+asha", 2, 100, off, 400, 0.08, 300)]
    optuna = {off: [400, 300, 350] for off in offsets}
    out = landscapes(runs, ["random", "bayesian+asha"], 30, 100, offsets, optuna)
    asha = out["bayesian+asha"]
    assert asha["check"] == [0]
    assert asha["every_draw_reached"] == [0, 2]
    assert asha["line"] == [0]  # seed 2: 300 > 0.7 x 350
    assert asha["both"] == [0]
    # Without the plain Optuna script on every draw, the line is not counted.
    assert "line" not in landscapes(runs, ["random", "bayesian+asha"], 30, 100, offsets, None)["bayesian+asha"]
    check = {v: {"median_epochs": 1.0, "epochs_ratio": 1.0, "median_best": 0.1, "best_ratio": 1.0, "pass_share": 0.0}
             for v in ("random", "bayesian+asha")}
    table = render({"config": {"seeds": [0, 1, 2], "budget": 30, "epochs": 10, "concurrency": 2, "target_budget": 100},
                    "check": check, "landscapes": out})
    assert "| bayesian+asha | 1/3 | 2/3 | 1/3 | 1/3 |" in table
