"""Every strategy: reproducible, inside its space, within max_trials, restorable; then each one's specifics."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys

import pytest
from search_helpers import (
    ALL_IDS,
    ALL_STRATEGIES,
    EPOCHS,
    MANUAL_CONFIGS,
    Sim,
    configs_equal,
    is_gp,
    make,
    objective,
    outcome_for,
    space_for,
)

from lrsearch.search import (
    STRATEGIES,
    SpecError,
    StrategySpec,
    TrialOutcome,
    is_range_test,
    make_strategy,
    parse_space,
    validate_options,
)
from lrsearch.search.catalog import complete_config, relevant_params
from lrsearch.search.strategies import config_key

every_strategy = pytest.mark.parametrize(("name", "options"), ALL_STRATEGIES, ids=ALL_IDS)


def test_every_registered_strategy_is_tested() -> None:
    assert {name for name, _ in ALL_STRATEGIES} == set(STRATEGIES)


# -- properties every strategy has ---------------------------------------------------------------

@every_strategy
def test_same_seed_and_observations_give_the_same_suggestions(name: str, options: dict) -> None:
    a = Sim(make(name, options, seed=3), concurrency=1 if is_gp(options) else 3).run()
    b = Sim(make(name, options, seed=3), concurrency=1 if is_gp(options) else 3).run()
    assert a.made and configs_equal(a.made, b.made)


@every_strategy
def test_suggestions_lie_in_the_space_and_are_complete(name: str, options: dict) -> None:
    sim = Sim(make(name, options, seed=1), concurrency=1 if is_gp(options) else 3).run()
    space = space_for(name)
    for config in sim.made:
        # Every suggestion carries exactly the keys its optimizer and schedule need.
        expected = {"lr", "optimizer", "schedule", "warmup_fraction"}
        expected |= {p.name for p in relevant_params(config["optimizer"], config["schedule"])}
        config = {k: v for k, v in config.items() if k != "pbt"}  # a member's segment: which, from where
        if is_range_test(config):  # a range test sweeps the space's whole lr range
            assert space is not None
            assert (config["lr"], config["range_test"]["lr_high"]) == (space.dims["lr"].low, space.dims["lr"].high)
            config = {k: v for k, v in config.items() if k != "range_test"}
        assert set(config) == expected
        assert config == complete_config(config, EPOCHS)
        if space is not None:
            assert space.contains(config), config
    if name == "manual":
        assert [c["lr"] for c in sim.made] == [c["lr"] for c in MANUAL_CONFIGS]


@every_strategy
def test_max_trials_is_respected(name: str, options: dict) -> None:
    strategy = make(name, options, max_trials=5)
    sim = Sim(strategy, concurrency=1 if is_gp(options) else 2).run()
    assert len(sim.made) == 5
    assert strategy.suggest() is None and strategy.suggest() is None
    assert strategy.total() == 5


# Crash points (events into the run): before any result, with trials pending, late. One for GP (slow).
CRASHES = [(name, options, crash, f"{id_}-after-{crash}")
           for (name, options), id_ in zip(ALL_STRATEGIES, ALL_IDS, strict=True)
           for crash in ([9] if is_gp(options) else [1, 4, 9, 14])]


@pytest.mark.parametrize(("name", "options", "crash_after"), [c[:3] for c in CRASHES], ids=[c[3] for c in CRASHES])
def test_state_round_trips_through_json_and_replay(name: str, options: dict, crash_after: int) -> None:
    """Saved state + replayed outcomes continue exactly as the run that never stopped."""
    live = Sim(make(name, options, seed=5), concurrency=2 if is_gp(options) else 3).run(max_events=crash_after)
    restored = live.restored(make(name, options, seed=5))
    live.run()
    restored.run()
    assert configs_equal(live.made, restored.made)
    assert live.strategy.state_dict() == restored.strategy.state_dict()


@every_strategy
def test_suggestions_are_not_repeated(name: str, options: dict) -> None:
    sim = Sim(make(name, options, seed=2), concurrency=1 if is_gp(options) else 3).run()
    keys = [config_key(c) for c in sim.made]
    assert len(set(keys)) == len(keys)


@every_strategy
def test_options_are_validated(name: str, options: dict) -> None:
    assert validate_options(name, options) == validate_options(name, validate_options(name, options))
    with pytest.raises(SpecError) as err:
        validate_options(name, {**options, "bogus": 1})
    assert err.value.loc == ("options", "bogus")
    assert "allowed" in err.value.message
    with pytest.raises(SpecError):
        make(name, {**options, "bogus": 1})


def test_unknown_strategy_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as err:
        validate_options("simulated-annealing", {})
    assert err.value.loc == ("strategy",) and "bayesian" in err.value.message
    with pytest.raises(SpecError):
        make_strategy("simulated-annealing", StrategySpec(space=None, epochs=1))


# -- random -----------------------------------------------------------------------------------------

def test_random_lies_in_bounds_and_is_log_uniform_for_lr() -> None:
    strategy = make("random", max_trials=400, seed=9)
    configs = [strategy.suggest() for _ in range(400)]
    lrs = [c["lr"] for c in configs if c]
    assert len(lrs) == 400 and all(1e-4 <= lr <= 1.0 for lr in lrs)
    # log-uniform: about half the draws fall below the geometric middle (1e-2)
    assert 0.4 < sum(lr < 1e-2 for lr in lrs) / len(lrs) < 0.6
    steps = [c["step_size"] for c in configs if c and c["schedule"] == "step"]
    assert steps and all(isinstance(s, int) and 1 <= s <= 4 for s in steps)


def test_random_stops_when_a_small_space_is_exhausted() -> None:
    space = parse_space({"lr": {"values": [0.1, 0.01]}, "optimizer": ["sgd", "adam"]})
    strategy = make("random", space=space, max_trials=10)
    configs = [strategy.suggest() for _ in range(6)]
    assert [c is None for c in configs] == [False] * 4 + [True] * 2


def test_different_seeds_give_different_suggestions() -> None:
    for name, options in [("random", {}), ("bayesian", {})]:
        a = Sim(make(name, options, seed=0)).run()
        b = Sim(make(name, options, seed=1)).run()
        assert not configs_equal(a.made, b.made), name


# -- bayesian ---------------------------------------------------------------------------------------

CONDITIONAL_SPACE = {
    "lr": {"low": 1e-5, "high": 1.0},
    "optimizer": ["sgd", "adam"],
    "schedule": ["constant", "step", "cosine"],
    "step_size": {"low": 1, "high": 5},
    "momentum": {"low": 0.0, "high": 0.99},
}


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_bayesian_samples_a_schedules_parameters_only_under_that_schedule(sampler: str) -> None:
    from optuna.trial import TrialState

    space = parse_space(CONDITIONAL_SPACE)
    n = 24 if sampler == "tpe" else 8
    strategy = make("bayesian", {"sampler": sampler, "n_startup_trials": 4}, space=space, max_trials=n)
    sim = Sim(strategy, concurrency=2 if sampler == "tpe" else 1).run()
    assert len(sim.made) == n
    # What the model sees: the parameters each trial actually drew.
    study = strategy.study()
    assert len(study.trials) == n
    for trial in study.trials:
        if trial.state == TrialState.FAIL:
            continue  # failed trials carry nothing
        assert ("step_size" in trial.params) == (trial.params["schedule"] == "step"), trial.params
        assert ("momentum" in trial.params) == (trial.params["optimizer"] == "sgd"), trial.params
        # gamma is not in the space: never drawn, the catalog default fills it
        assert "gamma" not in trial.params
    steps = [c for c in sim.made if c["schedule"] == "step"]
    assert steps and all(c["gamma"] == 0.1 and 1 <= c["step_size"] <= 5 for c in steps)
    assert len({c["step_size"] for c in steps}) > 1 or len(steps) == 1
    assert all("step_size" not in c for c in sim.made if c["schedule"] != "step")


def test_bayesian_learns_better_than_random() -> None:
    """30 trials on a cheap synthetic objective: TPE's median best beats random search's."""
    space = parse_space({"lr": {"low": 1e-5, "high": 10.0}, "optimizer": ["sgd", "adam", "rmsprop", "adagrad"],
                         "schedule": ["constant", "step", "cosine"]})
    best: dict[str, list[float]] = {"bayesian": [], "random": []}
    for name in best:
        for seed in range(5):
            strategy = make(name, space=space, seed=seed, max_trials=30)
            values = []
            for number in range(30):
                config = strategy.suggest()
                assert config is not None
                values.append(objective(config))
                strategy.observe(TrialOutcome(number, config, "completed", values[-1], 3, (values[-1],)))
            best[name].append(min(values))
    # Medians of the best value over 5 seeds (0.0016 vs 0.081 when written): not a close call.
    assert statistics.median(best["bayesian"]) < statistics.median(best["random"]) / 4, best


def test_bayesian_uses_pending_trials_to_spread_concurrent_suggestions() -> None:
    # Two suggestions in a row with nothing observed in between must differ (constant liar).
    strategy = make("bayesian", {"n_startup_trials": 2}, max_trials=20)
    for number in range(4):
        config = strategy.suggest()
        strategy.observe(outcome_for(number, config))
    a, b = strategy.suggest(), strategy.suggest()
    assert a is not None and b is not None and config_key(a) != config_key(b)
    state = strategy.state_dict()
    assert state["asks"] == 6 and [n for n, _ in state["pending"]] == [4, 5]


def test_bayesian_does_not_depend_on_the_order_outcomes_arrive_in() -> None:
    a, b = make("bayesian", seed=4), make("bayesian", seed=4)
    configs = [a.suggest() for _ in range(8)]
    assert configs_equal(configs, [b.suggest() for _ in range(8)])
    outcomes = [outcome_for(n, c) for n, c in enumerate(configs)]
    for o in outcomes:
        a.observe(o)
    for o in reversed(outcomes):
        b.observe(o)
    assert configs_equal([a.suggest() for _ in range(3)], [b.suggest() for _ in range(3)])


def test_bayesian_past_its_history_cap_sees_the_best_of_the_older_trials_and_the_recent_ones() -> None:
    options = {"max_history": 20, "n_startup_trials": 3}
    live = make("bayesian", options, seed=6, max_trials=60)
    outcomes = []
    for n in range(40):
        config = live.suggest()
        assert config is not None
        outcomes.append(outcome_for(n, config))
        live.observe(outcomes[-1])
    # Of trials 0..29 the 10 best (all completed here), then 30..39 whatever became of them.
    older = sorted((o for o in outcomes[:30] if o.status == "completed"), key=lambda o: o.val_loss)[:10]
    study = live.study()
    assert len(study.trials) == 20
    assert [t.value for t in study.trials[:10]] == [o.val_loss for o in sorted(older, key=lambda o: o.number)]
    assert [t.state.name for t in study.trials[10:]] == [
        {"completed": "COMPLETE", "pruned": "PRUNED", "diverged": "PRUNED", "failed": "FAIL"}[o.status]
        for o in outcomes[30:]]
    # Still a pure function of what is known: a restored strategy, told in another order, goes on alike.
    restored = make("bayesian", options, seed=6, max_trials=60)
    restored.load_state_dict(json.loads(json.dumps(live.state_dict())))
    for o in reversed(outcomes):
        restored.observe(o)
    assert configs_equal([live.suggest() for _ in range(5)], [restored.suggest() for _ in range(5)])


def test_bayesian_model_sees_outcomes_as_documented_and_never_a_nan() -> None:
    from optuna.trial import TrialState

    strategy = make("bayesian", max_trials=10)
    configs = [strategy.suggest() for _ in range(6)]
    strategy.observe(TrialOutcome(0, configs[0], "completed", 0.5, 3, (0.9, 0.7, 0.5)))
    strategy.observe(TrialOutcome(1, configs[1], "pruned", 0.8, 2, (1.0, 0.8)))
    strategy.observe(TrialOutcome(2, configs[2], "diverged", 2.0, 2, (2.0,)))
    strategy.observe(TrialOutcome(3, configs[3], "failed", None, 0, ()))
    strategy.observe(TrialOutcome(4, configs[4], "completed", float("nan"), 3, ()))
    strategy.observe(TrialOutcome(5, configs[5], "pruned", 0.9, 2, (0.9, float("inf"))))
    trials = strategy.study().trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED,
                                         TrialState.FAIL, TrialState.PRUNED, TrialState.PRUNED]
    assert trials[0].value == 0.5
    assert trials[1].intermediate_values == {0: 1.0, 1: 0.8}
    assert trials[2].intermediate_values == {} and trials[4].intermediate_values == {}
    assert trials[5].intermediate_values == {0: 0.9}
    assert trials[5].params and trials[3].params == {}
    for t in trials:
        assert t.value is None or math.isfinite(t.value)
        assert all(math.isfinite(v) for v in t.intermediate_values.values())

    gp = make("bayesian", {"sampler": "gp"}, max_trials=10)
    configs = [gp.suggest() for _ in range(4)]
    gp.observe(TrialOutcome(0, configs[0], "completed", 0.5, 3, (0.9, 0.7, 0.5)))
    gp.observe(TrialOutcome(1, configs[1], "pruned", 0.8, 2, (1.0, 0.8)))
    gp.observe(TrialOutcome(2, configs[2], "diverged", None, 2, (2.0,)))
    gp.observe(TrialOutcome(3, configs[3], "cancelled", None, 1, (3.0,)))
    trials = gp.study().trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.FAIL]
    assert trials[1].value == 0.8
    assert trials[2].value is not None and trials[2].value > 0.8


def test_bayesian_suggests_each_point_of_a_small_discrete_space_once_then_stops() -> None:
    space = parse_space({"lr": {"values": [0.1, 0.01]}, "optimizer": ["sgd", "adam"]})
    strategy = make("bayesian", {"n_startup_trials": 1}, space=space, max_trials=10)
    configs = []
    for number in range(6):
        config = strategy.suggest()
        if config is None:
            break
        configs.append(config)
        strategy.observe(outcome_for(number, config))
    assert len(configs) == 4 and len({config_key(c) for c in configs}) == 4
    assert strategy.suggest() is None


def test_bayesian_lr_values_are_categorical_and_respected() -> None:
    space = parse_space({"lr": {"values": [0.3, 0.03, 0.003]}, "optimizer": ["sgd", "adam"],
                         "warmup_fraction": {"values": [0.0, 0.1]}})
    sim = Sim(make("bayesian", {"n_startup_trials": 2}, space=space, max_trials=10)).run()
    assert sim.made and all(c["lr"] in (0.3, 0.03, 0.003) and c["warmup_fraction"] in (0.0, 0.1) for c in sim.made)


def test_bayesian_counts_a_trial_the_saved_state_missed() -> None:
    # The store may hold a trial whose suggestion came after the last saved state.
    strategy = make("bayesian", seed=1)
    state = json.loads(json.dumps(strategy.state_dict()))
    fresh = make("bayesian", seed=1)
    fresh.load_state_dict(state)
    config = make("bayesian", seed=1).suggest()
    fresh.observe(outcome_for(0, config))
    assert fresh.state_dict()["asks"] == 1
    assert fresh.suggest() is not None and fresh.state_dict()["asks"] == 2


def test_bayesian_lr_windows_follow_each_optimizers_best() -> None:
    """With lr_window_decades W, after the start-up every lr lies within W decades of its optimizer's
    best lr so far (the whole range for an optimizer with no finite loss yet)."""
    space = parse_space({"lr": {"low": 1e-5, "high": 10.0}, "optimizer": ["sgd", "adam", "rmsprop"]})
    strategy = make("bayesian", {"lr_window_decades": 0.5, "n_startup_trials": 4}, space=space, seed=3,
                    max_trials=40)
    best: dict[str, tuple[float, float]] = {}
    in_windows = 0
    for number in range(40):
        config = strategy.suggest()
        assert config is not None and 1e-5 <= config["lr"] <= 10.0
        if number >= 4 and config["optimizer"] in best:
            centre = best[config["optimizer"]][1]
            assert centre / 10 ** 0.5 * (1 - 1e-9) <= config["lr"] <= centre * 10 ** 0.5 * (1 + 1e-9), (config, centre)
            in_windows += 1
        value = objective(config)
        strategy.observe(TrialOutcome(number, config, "completed", value, 3, (value,)))
        if config["optimizer"] not in best or value < best[config["optimizer"]][0]:
            best[config["optimizer"]] = (value, config["lr"])
    assert in_windows > 20
    # The study sees lr as a position in [0, 1] of each trial's window, and suggestions still learn.
    assert all(0.0 <= t.params["lr"] <= 1.0 for t in strategy.study().trials)
    assert min(v for v, _ in best.values()) < 0.12, best  # 0.1 at the optimum (constant schedule)


def test_bayesian_lr_windows_leave_lr_values_and_the_start_up_alone() -> None:
    values = parse_space({"lr": {"values": [0.3, 0.03, 0.003]}, "optimizer": ["sgd", "adam"]})
    sim = Sim(make("bayesian", {"lr_window_decades": 1.0, "n_startup_trials": 2}, space=values, max_trials=6)).run()
    assert sim.made and all(c["lr"] in (0.3, 0.03, 0.003) for c in sim.made)
    plain, windowed = make("bayesian", {"n_startup_trials": 5}), make("bayesian", {"n_startup_trials": 5,
                                                                                 "lr_window_decades": 1.0})
    a, b = Sim(plain, concurrency=1).run(max_events=10), Sim(windowed, concurrency=1).run(max_events=10)
    assert configs_equal(a.made[:5], b.made[:5])  # start-up draws do not depend on the windows


def test_bayesian_defaults_and_options() -> None:
    assert validate_options("bayesian", {}) == {"sampler": "tpe", "max_history": 1000}
    assert validate_options("bayesian", {"sampler": "gp", "n_startup_trials": 0}) == {
        "sampler": "gp", "n_startup_trials": 0, "max_history": 1000}
    for bad, loc in [({"sampler": "cmaes"}, ("options", "sampler")),
                     ({"n_startup_trials": -1}, ("options", "n_startup_trials")),
                     ({"n_startup_trials": True}, ("options", "n_startup_trials")),
                     ({"n_startup_trials": 2.5}, ("options", "n_startup_trials")),
                     ({"lr_window_decades": 0}, ("options", "lr_window_decades")),
                     ({"lr_window_decades": -1.0}, ("options", "lr_window_decades")),
                     ({"lr_window_decades": 7}, ("options", "lr_window_decades")),
                     ({"lr_window_decades": True}, ("options", "lr_window_decades")),
                     ({"lr_window_decades": "1"}, ("options", "lr_window_decades")),
                     ({"max_history": 19}, ("options", "max_history")),
                     ({"max_history": True}, ("options", "max_history"))]:
        with pytest.raises(SpecError) as err:
            validate_options("bayesian", bad)
        assert err.value.loc == loc
    with pytest.raises(SpecError) as err:
        validate_options("bayesian", {"sampler": "cmaes"})
    assert "'tpe'" in err.value.message and "'gp'" in err.value.message
    for name in ("grid", "random", "manual"):
        assert validate_options(name, {}) == {} and validate_options(name, None) == {}
    startup = {m: make("bayesian", max_trials=m).n_startup_trials for m in (8, 30, 100, None)}
    assert startup == {8: 4, 30: 7, 100: 10, None: 10}
    assert make("bayesian", {"n_startup_trials": 2}).n_startup_trials == 2


def test_search_imports_neither_torch_nor_ray() -> None:
    code = (
        "import sys, lrsearch.search, lrsearch.search.early_stopping, lrsearch.search.decisions\n"
        "from lrsearch.search import StrategySpec, make_strategy, parse_space\n"
        "s = make_strategy('bayesian', StrategySpec(parse_space({'lr': {'low': 1e-4, 'high': 1}}), epochs=2))\n"
        "assert s.suggest() is not None\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
