"""Early stopping: spec validation, ASHA rungs and cut-offs, NaN handling, replay, Hyperband brackets."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from lrsearch.search import Decision, SpecError, parse_early_stopping
from lrsearch.search.decisions import ENDS, Evaluation, decide, replay_curve
from lrsearch.search.early_stopping import ASHA, EARLY_STOPPERS, EarlyStopper, Hyperband, MedianStopper, rung_milestones

CONTINUE, STOP = Decision.CONTINUE, Decision.STOP


# -- the spec ----------------------------------------------------------------------------------------

def test_none_means_no_early_stopping() -> None:
    assert parse_early_stopping(None, 10) is None


def test_defaults() -> None:
    asha = parse_early_stopping({"kind": "asha"}, 10)
    assert isinstance(asha, ASHA) and (asha.grace_epochs, asha.reduction_factor) == (2, 3)
    hb = parse_early_stopping({"kind": "hyperband", "grace_epochs": 2, "reduction_factor": 2}, 16)
    assert isinstance(hb, Hyperband) and (hb.grace_epochs, hb.reduction_factor) == (2, 2)
    median = parse_early_stopping({"kind": "median"}, 10)
    assert isinstance(median, MedianStopper) and (median.grace_epochs, median.min_trials) == (2, 5)


@pytest.mark.parametrize(("raw", "epochs", "loc", "words"), [
    ({"kind": "bohb"}, 10, ("early_stopping", "kind"), "allowed: ['asha', 'hyperband', 'median']"),
    ({"kind": 3}, 10, ("early_stopping", "kind"), "allowed"),
    ({"grace_epochs": 1}, 10, ("early_stopping", "kind"), "required"),
    ("asha", 10, ("early_stopping",), "object"),
    ({"kind": "asha", "grace_epochs": 0}, 10, ("early_stopping", "grace_epochs"), "[1, 9]"),
    ({"kind": "asha", "grace_epochs": 10}, 10, ("early_stopping", "grace_epochs"), "fewer than"),
    ({"kind": "asha"}, 1, ("early_stopping",), "needs epochs >= 2"),
    ({"kind": "median"}, 1, ("early_stopping",), "needs epochs >= 2"),
    ({"kind": "asha", "grace_epochs": 1.5}, 10, ("early_stopping", "grace_epochs"), "integer"),
    ({"kind": "asha", "grace_epochs": True}, 10, ("early_stopping", "grace_epochs"), "integer"),
    ({"kind": "asha", "reduction_factor": 1}, 10, ("early_stopping", "reduction_factor"), "[2, 100]"),
    ({"kind": "hyperband", "reduction_factor": 10**30}, 10, ("early_stopping", "reduction_factor"), "[2, 100]"),
    ({"kind": "hyperband", "reduction_factor": "3"}, 10, ("early_stopping", "reduction_factor"), "integer"),
    ({"kind": "asha", "patience": 3}, 10, ("early_stopping", "patience"), "allowed"),
    ({"kind": "median", "reduction_factor": 3}, 10, ("early_stopping", "reduction_factor"), "min_trials"),
    ({"kind": "median", "min_trials": 0}, 10, ("early_stopping", "min_trials"), "integer"),
])
def test_bad_specs_name_the_field(raw: object, epochs: int, loc: tuple, words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_early_stopping(raw, epochs)  # type: ignore[arg-type]  # malformed on purpose
    assert err.value.loc == loc
    assert words in err.value.message


def test_decisions_are_the_strings_the_service_compares() -> None:
    assert CONTINUE == "continue" and STOP == "stop" and str(STOP) == "stop"


# -- ASHA ---------------------------------------------------------------------------------------------

def test_rungs_sit_at_grace_times_powers_of_the_reduction_factor_below_epochs() -> None:
    assert rung_milestones(1, 3, 10) == [1, 3, 9]
    assert rung_milestones(1, 3, 9) == [1, 3]
    assert rung_milestones(2, 2, 16) == [2, 4, 8]
    assert ASHA(8, 1, 3).milestones == [1, 3]


def test_asha_cutoffs_keep_the_top_third_of_each_rung() -> None:
    asha = ASHA(epochs=10, grace_epochs=1, reduction_factor=3)
    # Rung at 1 epoch (epoch index 0). Fewer than r values: only the best so far continues.
    assert asha.report(0, 0, 0.5) == CONTINUE
    assert asha.report(1, 0, 0.9) == STOP
    # Third value: only the best of the three continues.
    assert asha.report(2, 0, 0.7) == STOP
    assert asha.report(3, 0, 0.4) == CONTINUE  # 4 values, best 1 kept: 0.4 is the best
    assert asha.report(4, 0, 0.45) == STOP  # 5 values -> top 1 is 0.4
    assert asha.report(5, 0, 0.45) == CONTINUE  # 6 values -> top 2: [0.4, 0.45] (ties continue)
    assert asha.report(6, 0, 0.41) == CONTINUE  # 7 values -> top 2: [0.4, 0.41]
    # Between rungs: continue, nothing recorded.
    assert asha.report(0, 1, 10.0) == CONTINUE
    # Rung at 3 epochs (epoch index 2) starts empty.
    assert asha.report(0, 2, 0.3) == CONTINUE
    rungs = asha.rungs
    assert rungs[0] == (1, {0: 0.5, 1: 0.9, 2: 0.7, 3: 0.4, 4: 0.45, 5: 0.45, 6: 0.41})
    assert rungs[1] == (3, {0: 0.3}) and rungs[2] == (9, {})


def test_asha_grace_period_protects_the_first_epochs() -> None:
    asha = ASHA(epochs=12, grace_epochs=4, reduction_factor=2)
    assert asha.milestones == [4, 8]
    values = [0.3, 0.2, 0.1, 0.9, 0.15]
    for number, v in enumerate(values):
        for epoch in range(3):  # awful early losses: nobody is judged before 4 epochs
            assert asha.report(number, epoch, v * 100) == CONTINUE
    # r = 2: the best half of the values recorded so far continue.
    decisions = [asha.report(number, 3, v) for number, v in enumerate(values)]
    assert decisions == [CONTINUE, CONTINUE, CONTINUE, STOP, CONTINUE]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_loss_stops_and_is_never_recorded(bad: float) -> None:
    clean, poisoned = ASHA(10, 1, 2), ASHA(10, 1, 2)
    values = [0.5, 0.6, 0.4, 0.8, 0.3, 0.7]
    assert poisoned.report(99, 0, bad) == STOP  # at a rung
    assert poisoned.report(98, 1, bad) == STOP  # between rungs
    for number, v in enumerate(values):
        assert clean.report(number, 0, v) == poisoned.report(number, 0, v)
    assert clean.rungs == poisoned.rungs
    assert all(99 not in values and all(math.isfinite(x) for x in values.values()) for _, values in poisoned.rungs)


def test_a_repeated_report_answers_as_before_and_records_nothing() -> None:
    asha = ASHA(10, 1, 3)
    for number, v in enumerate([0.5, 0.6, 0.9]):
        asha.report(number, 0, v)
    before = asha.rungs
    # Trial 2 was stopped at the first rung; hearing about it again (a replay, a retried worker,
    # even with another value) must not stop anybody else nor move the cut-off.
    assert asha.report(2, 0, 0.9) == STOP
    assert asha.report(2, 0, 0.1) == STOP
    assert asha.report(0, 0, 5.0) == CONTINUE
    assert asha.rungs == before


def test_a_trial_worse_than_others_were_in_fewer_epochs_stops_even_first_at_its_rung() -> None:
    asha = ASHA(epochs=10, grace_epochs=2, reduction_factor=3)  # rungs at 2 and 6 epochs
    assert asha.report(0, 0, 0.9) == CONTINUE
    assert asha.report(0, 1, 0.8) == CONTINUE  # first at the 2-epoch rung, nobody to compare with
    assert asha.report(1, 0, 0.3) == CONTINUE  # another trial gets to 0.3 in one epoch
    for epoch in (2, 3, 4):
        assert asha.report(0, epoch, 0.6) == CONTINUE
    # Trial 0 is the first to reach 6 epochs, but still worse than trial 1 after one: it stops.
    assert asha.report(0, 5, 0.5) == STOP
    # Trial 1 is judged against its peers only: its own earlier epochs do not count against it.
    assert asha.report(1, 1, 0.35) == CONTINUE
    assert asha.rungs[1] == (6, {0: 0.5})  # what the rungs record is unchanged


def test_earlier_losses_only_tighten_the_cut_off() -> None:
    asha = ASHA(epochs=10, grace_epochs=2, reduction_factor=3)
    for number in range(10):  # ten trials that stopped after one epoch, all worse than what follows
        asha.report(number, 0, 5.0 + number)
    # How many continue still follows from the rung's own values: of 3 values 1 goes on, as without them.
    assert [asha.report(number, 1, v) for number, v in ((20, 0.5), (21, 0.4), (22, 0.45))] == [
        CONTINUE, CONTINUE, STOP]
    # One trial below the rung that did better in fewer epochs takes a place among the kept.
    asha.report(30, 0, 0.1)
    assert asha.report(23, 1, 0.2) == STOP  # 4 values keep 1, and 0.1 was reached in one epoch
    assert asha.report(31, 1, 0.05) == CONTINUE


def test_a_repeated_or_non_finite_earlier_epoch_does_not_move_the_cut_off() -> None:
    asha = ASHA(epochs=10, grace_epochs=2, reduction_factor=3)
    assert asha.report(1, 0, 0.7) == CONTINUE
    assert asha.report(1, 0, 0.1) == CONTINUE  # heard before (a replay, a retried worker): ignored
    assert asha.report(2, 0, float("nan")) == STOP  # never recorded
    assert asha.report(0, 1, 0.6) == CONTINUE  # 0.6 beats 0.7, the lowest other trial 1 reported


def _live_run(stopper: EarlyStopper, n_trials: int, epochs: int, concurrency: int, seed: int):
    """Trials run `concurrency` at a time, reporting epoch by epoch in interleaved order.

    Returns the finished trials' reported curves (what the store holds) and the trials still running.
    """
    rng = random.Random(seed)
    quality = {n: rng.uniform(0.1, 1.0) for n in range(n_trials)}
    curves: dict[int, list[float]] = {}
    running: list[int] = []
    finished: list[int] = []
    next_number = 0
    while next_number < n_trials or running:
        while len(running) < concurrency and next_number < n_trials:
            running.append(next_number)
            curves[next_number] = []
            next_number += 1
        number = running[rng.randrange(len(running))]
        epoch = len(curves[number])
        v = quality[number] * (1.0 + 2.0 / (epoch + 1)) + rng.uniform(0, 0.05)
        diverged = number % 11 == 5 and epoch == 2  # the service stores no value
        if not diverged:
            curves[number].append(v)
        verdict = decide(Evaluation(number, epoch, None if diverged else v, last=epoch + 1 == epochs,
                                    diverged=diverged), stopper)
        if verdict in ENDS:
            running.remove(number)
            finished.append(number)
            stopper.trial_finished(number, verdict)
    return curves, finished


def _replay(stopper: EarlyStopper, curves: dict[int, list[float]], numbers: list[int]) -> None:
    for number in sorted(numbers):
        replay_curve(stopper, number, curves[number])
        stopper.trial_finished(number, "finished")


@pytest.mark.parametrize("kind", sorted(EARLY_STOPPERS))
def test_replay_rebuilds_the_same_state_and_the_same_future_decisions(kind: str) -> None:
    spec = {"kind": kind, "grace_epochs": 1}
    live = parse_early_stopping(spec, 9)
    assert live is not None
    curves, finished = _live_run(live, n_trials=30, epochs=9, concurrency=4, seed=7)
    replayed = parse_early_stopping(spec, 9)
    assert replayed is not None
    _replay(replayed, curves, finished)  # in number order, not the live order
    if isinstance(live, ASHA):
        assert live.rungs == replayed.rungs
        assert sum(len(v) for _, v in live.rungs) > 30
    # Replaying everything again changes nothing.
    _replay(replayed, curves, finished)
    # New trials meet the same cut-offs in both.
    rng = random.Random(1)
    for number in range(30, 45):
        for epoch in range(8):
            v = rng.uniform(0.1, 3.0)
            a, b = live.report(number, epoch, v), replayed.report(number, epoch, v)
            assert a == b
            if a == STOP:
                break


# -- Hyperband ----------------------------------------------------------------------------------------

def test_hyperband_brackets_have_growing_grace_and_budgets_like_optuna() -> None:
    hb = Hyperband(epochs=27, grace_epochs=1, reduction_factor=3)
    assert [b.milestones for b in hb.brackets] == [[1, 3, 9], [3, 9], [9], []]
    assert hb.budgets == [27, 12, 6, 4]  # ceil(n * r^s / (s + 1)), s = n - 1 - i
    counts = Counter(hb.bracket_of(n) for n in range(4900))
    for i, budget in enumerate(hb.budgets):
        assert counts[i] / 4900 == pytest.approx(budget / sum(hb.budgets), abs=0.01)
    # Any short run of trials already meets several brackets.
    assert len({hb.bracket_of(n) for n in range(8)}) >= 3
    assert Hyperband(epochs=8).budgets == [3, 2] and [b.milestones for b in Hyperband(epochs=8).brackets] == [
        [1, 3], [3]]


def test_hyperband_assignment_is_deterministic_and_routes_reports() -> None:
    a, b = Hyperband(epochs=27), Hyperband(epochs=27)
    assert [a.bracket_of(n) for n in range(100)] == [b.bracket_of(n) for n in range(100)]
    for number in range(40):
        for epoch in range(26):
            if a.report(number, epoch, 1.0 + ((number * 37) % 11) / 10 + 1.0 / (epoch + 1)) == STOP:
                break
    for i, bracket in enumerate(a.brackets):
        members = {n for _, values in bracket.rungs for n in values}
        assert all(a.bracket_of(n) == i for n in members)
    # The last bracket has no rung: its trials always run in full.
    last = len(a.brackets) - 1
    trial = next(n for n in range(100, 200) if a.bracket_of(n) == last)
    assert all(a.report(trial, e, 100.0) == CONTINUE for e in range(26))
    assert a.report(trial, 3, float("nan")) == STOP


# -- median -------------------------------------------------------------------------------------------

def test_median_rule_stops_trials_worse_than_the_median_of_the_others() -> None:
    median = MedianStopper(epochs=10, grace_epochs=2, min_trials=3)
    for number, v in enumerate([1.0, 2.0, 3.0]):
        for epoch in range(3):
            assert median.report(number, epoch, v) == CONTINUE  # fewer than 3 others so far
    assert median.report(3, 0, 9.0) == CONTINUE  # within the grace period
    assert median.report(3, 1, 2.5) == STOP  # best so far 2.5 > median(1, 2, 3)
    assert median.report(4, 0, 1.5) == CONTINUE
    assert median.report(4, 1, 2.5) == CONTINUE  # best so far 1.5 <= median(1, 2, 3, 2.5)
    assert median.report(3, 1, 2.5) == STOP and median.report(5, 1, float("nan")) == STOP


def test_decision_epochs_are_the_rungs() -> None:
    asha = ASHA(epochs=10, grace_epochs=2, reduction_factor=3)
    assert asha.decision_epochs(0) == frozenset({1, 5})  # after 2 and 6 epochs trained
    hb = Hyperband(epochs=27, grace_epochs=1, reduction_factor=3)
    for number in range(20):
        bracket = hb.brackets[hb.bracket_of(number)]
        assert hb.decision_epochs(number) == frozenset(m - 1 for m in bracket.milestones)
    assert MedianStopper(epochs=10, grace_epochs=2, min_trials=3).decision_epochs(0) is None
    assert parse_early_stopping({"kind": "asha"}, 2).grace_epochs == 1  # type: ignore[union-attr]  # asha is never None


# -- the decision after each evaluation (search/decisions.py) ---------------------------------------
@pytest.mark.parametrize("kind", sorted(EARLY_STOPPERS))
def test_a_diverged_evaluation_ends_the_trial_unheard_by_the_rule(kind: str) -> None:
    stopper = parse_early_stopping({"kind": kind}, 9)
    assert stopper is not None
    assert decide(Evaluation(0, 0, 0.5, last=False, diverged=True), stopper) == "diverged"
    fresh = parse_early_stopping({"kind": kind}, 9)
    assert fresh is not None
    # The rule holds nothing of the diverged trial: others are judged as if it never reported.
    for number, v in enumerate([0.9, 0.8, 0.7, 0.6]):
        assert stopper.report(number + 1, 0, v) == fresh.report(number + 1, 0, v)


def test_the_rule_hears_every_evaluation_but_the_last_then_a_stall_ends_it() -> None:
    asha = ASHA(epochs=4, grace_epochs=1, reduction_factor=2)
    asha.report(0, 0, 0.1)
    assert decide(Evaluation(1, 0, 0.9, last=False), asha) == "pruned"  # worse than 0.1 at the rung
    # The same value at a trial's last evaluation is not judged: nothing is left to save.
    assert decide(Evaluation(2, 3, 0.9, last=True), asha) == "completed"
    assert decide(Evaluation(3, 0, 0.05, last=False, stalled=True), asha) == "pruned"
    assert decide(Evaluation(4, 0, None, last=False, paused=True), asha) == "resume"
    assert decide(Evaluation(5, 1, 0.5, last=False), None) == "continue"
