"""range_test and auto: the order of their trials, what they wait for, where they search."""

from __future__ import annotations

import math

import pytest
from search_helpers import Sim, make, outcome_for, range_test_points

from lrsearch.search import WAIT, SpecError, StrategySpec, TrialOutcome, is_range_test, make_strategy, parse_space
from lrsearch.search.range_test import summarize

SPACE = {"lr": {"low": 1e-6, "high": 10.0}, "optimizer": ["sgd", "adam", "rmsprop"],
         "schedule": ["cosine", "constant"], "momentum": {"low": 0.5, "high": 0.99}}


def strategy(name: str, options: dict | None = None, max_trials: int | None = None, space: dict = SPACE):
    return make_strategy(name, StrategySpec(space=parse_space(space), epochs=6, seed=4, max_trials=max_trials,
                                            options=options or {}))


def finish(s, number: int, config: dict, status: str = "completed") -> TrialOutcome:
    outcome = outcome_for(number, config)
    if status != "completed":
        outcome = TrialOutcome(number, config, status, None, 0)
    s.observe(outcome)
    return outcome


def test_range_test_runs_the_tests_then_waits_then_checks_each_suggestion() -> None:
    s = strategy("range_test", {"repeats": 2, "num_steps": 30})
    assert s.total() == 3 * 2 + 3
    tests = [s.suggest() for _ in range(6)]
    assert all(is_range_test(c) for c in tests)
    assert [(c["optimizer"], c["range_test"]["repeat"]) for c in tests] == [
        (o, k) for o in ("sgd", "adam", "rmsprop") for k in (0, 1)]
    # The sweep: the space's lr range at a constant rate; momentum is the catalog default (in range).
    assert all(c["lr"] == 1e-6 and c["range_test"]["lr_high"] == 10.0 and c["schedule"] == "constant" for c in tests)
    assert tests[0]["momentum"] == 0.9
    for n, c in enumerate(tests[:-1]):
        finish(s, n, c)
        assert s.suggest() is WAIT  # a check needs every test
    finish(s, 5, tests[5])
    checks = [s.suggest() for _ in range(3)]
    assert s.suggest() is None
    for check, optimizer in zip(checks, ("sgd", "adam", "rmsprop")):
        curves = [(1e-6, [p[0] for p in pts], [p[1] for p in pts])
                  for pts in (range_test_points(t) for t in tests if t["optimizer"] == optimizer)]
        assert check["optimizer"] == optimizer and not is_range_test(check)
        assert check["lr"] == pytest.approx(summarize(curves)["lr"])
        assert check["schedule"] == "cosine"  # the space's first, as documented
    # adam's curve falls fastest a decade below its minimum (1e-2): the suggestion lies between.
    assert 1e-4 < checks[1]["lr"] < 1e-2


def test_range_test_skips_the_check_of_an_optimizer_whose_tests_all_failed() -> None:
    s = strategy("range_test", {"repeats": 1, "num_steps": 30})
    tests = [s.suggest() for _ in range(3)]
    finish(s, 0, tests[0])
    finish(s, 1, tests[1], status="failed")
    finish(s, 2, tests[2])
    checks = [s.suggest(), s.suggest()]
    assert [c["optimizer"] for c in checks] == ["sgd", "rmsprop"] and s.suggest() is None


def test_range_test_without_verify_and_under_max_trials() -> None:
    s = strategy("range_test", {"repeats": 1, "verify": False})
    assert s.total() == 3
    assert Sim(s).run().made and len(Sim(strategy("range_test", {"verify": False})).run().made) == 9
    capped = strategy("range_test", {}, max_trials=4)
    assert capped.total() == 4 and len(Sim(capped).run().made) == 4


def test_summarize_takes_the_geometric_mean_and_a_blown_up_test_gives_its_start() -> None:
    lrs = [10 ** (-6 + i * 0.1) for i in range(60)]
    a = [2.0 - math.exp(-((math.log10(x) + 3) ** 2)) for x in lrs]
    b = [2.0 - math.exp(-((math.log10(x) + 2) ** 2)) for x in lrs]
    one, two = summarize([(1e-6, lrs, a)]), summarize([(1e-6, lrs, b)])
    both = summarize([(1e-6, lrs, a), (1e-6, lrs, b)])
    assert both["lr"] == pytest.approx(math.sqrt(one["lr"] * two["lr"]))
    assert both["spread"]["n"] == 2 and both["spread"]["min"] == pytest.approx(min(one["lr"], two["lr"]))
    assert summarize([(3e-5, [3e-5], [9.0])])["lr"] == pytest.approx(3e-5)
    assert summarize([]) is None


def test_auto_searches_inside_a_window_around_each_suggestion() -> None:
    s = strategy("auto", {"num_steps": 40}, max_trials=30)
    sim = Sim(s, concurrency=2).run()
    made = sim.made
    assert len(made) == 30 and all(is_range_test(c) for c in made[:3])
    assert not any(is_range_test(c) for c in made[3:])
    windows = s.windows()
    # The first searched trials are the suggestions themselves, one per optimizer.
    assert [(c["optimizer"], c["lr"]) for c in made[3:6]] == [
        (o, pytest.approx(windows[o][2])) for o in ("sgd", "adam", "rmsprop")]
    for c in made[3:]:
        low, high, suggestion = windows[c["optimizer"]]
        assert low == pytest.approx(max(1e-6, suggestion / 10)) and high == pytest.approx(min(10.0, suggestion * 10))
        assert low * (1 - 1e-9) <= c["lr"] <= high * (1 + 1e-9)
    # The rest of the space is searched: schedules and momentum vary.
    assert {c["schedule"] for c in made[3:]} == {"cosine", "constant"}
    assert len({c.get("momentum") for c in made[3:] if c["optimizer"] == "sgd"}) > 1


def test_auto_is_better_than_random_on_the_objective() -> None:
    def best(name: str, seed: int) -> float:
        s = make_strategy(name, StrategySpec(space=parse_space({**SPACE, "lr": {"low": 1e-6, "high": 10.0}}),
                                             epochs=6, seed=seed, max_trials=20, options={"num_steps": 40}
                                             if name == "auto" else {}))
        return min(o.val_loss for o in Sim(s, concurrency=2).run().finished if o.val_loss is not None)

    auto = sorted(best("auto", seed) for seed in range(5))
    rand = sorted(best("random", seed) for seed in range(5))
    assert auto[2] < rand[2]


@pytest.mark.parametrize(("options", "max_trials", "space", "loc"), [
    ({}, 3, SPACE, ("max_trials",)),
    ({"repeats": 2}, 6, SPACE, ("max_trials",)),
    ({}, 20, {**SPACE, "lr": {"values": [0.1, 0.01]}}, ("space", "lr")),
    ({"window_decades": 7}, 20, SPACE, ("options", "window_decades")),
    ({"sampler": "cma"}, 20, SPACE, ("options", "sampler")),
    ({"verify": True}, 20, SPACE, ("options", "verify")),
])
def test_auto_rejects_what_it_cannot_do(options: dict, max_trials: int, space: dict, loc: tuple) -> None:
    with pytest.raises(SpecError) as err:
        strategy("auto", options, max_trials=max_trials, space=space)
    assert err.value.loc == loc


def test_contract_helpers_build_finder_strategies() -> None:
    # The shared contract tests (test_strategies.py) run these through the same simulated service.
    assert make("range_test", {"num_steps": 40}).total() == 12
    assert make("auto", {"num_steps": 40}).total() == 12
