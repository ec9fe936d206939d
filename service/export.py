"""Exports of a job: a table of trials (CSV/JSON) and an Optuna study that Optuna can load."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from lrsearch.search import TrialKind
from lrsearch.search.catalog import COMMON_KEYS
from lrsearch.search.objective import Objective

TRIAL_COLUMNS = ("number", "status", "kind", "objective", "val_loss", "best_epoch", "epochs", "node", "error")


def trial_rows(trials: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """One flat row per trial: the trial's columns, then lr, optimizer, schedule, warmup, then parameters."""
    param_keys: list[str] = []
    for t in trials:
        for key in t["config"]:
            if key not in COMMON_KEYS and key not in param_keys:
                param_keys.append(key)
    header = [*TRIAL_COLUMNS, *COMMON_KEYS, *sorted(param_keys)]
    rows = [{**{c: t.get(c) for c in TRIAL_COLUMNS}, **{k: t["config"].get(k) for k in header[len(TRIAL_COLUMNS):]}}
            for t in trials]
    return header, rows


# A text cell starting with one of these is a formula to a spreadsheet; an error message from a
# plug-in could start with one. Numbers are written as numbers, so a negative value is not touched.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):  # a range test's settings, lr_points: JSON, not Python's repr
        return json.dumps(value)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value  # shown as text, as spreadsheets do for a leading apostrophe
    return value


def to_csv(trials: Sequence[dict[str, Any]]) -> str:
    header, rows = trial_rows(trials)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return buf.getvalue()


def _optuna_params(config: dict[str, Any]) -> dict[str, Any]:
    """A config as Optuna params: a list (lr_points) as its JSON text, a categorical value."""
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in config.items()}


def _distributions(trials: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One Optuna distribution per parameter, wide enough for every trial's value."""
    import optuna

    values: dict[str, list[Any]] = {}
    for t in trials:
        for k, v in _optuna_params(t["config"]).items():
            values.setdefault(k, []).append(v)
    out: dict[str, Any] = {}
    for k, vs in values.items():
        if all(isinstance(v, bool) for v in vs):
            out[k] = optuna.distributions.CategoricalDistribution([False, True])
        elif all(isinstance(v, str) for v in vs):
            out[k] = optuna.distributions.CategoricalDistribution(sorted(set(vs)))
        elif all(isinstance(v, int) for v in vs):
            out[k] = optuna.distributions.IntDistribution(min(vs), max(vs))
        else:
            fs = [float(v) for v in vs]
            out[k] = optuna.distributions.FloatDistribution(min(fs), max(fs), log=k == "lr")
    return out


def to_optuna_study(job: dict[str, Any], trials: Sequence[dict[str, Any]],
                    curves: dict[int, list[float | None]], storage: str, study_name: str) -> Any:
    """Write the job as an Optuna study on its objective (minimize val_loss by default, or the
    job's metric in its direction); ``curves`` (the objective at each evaluation, by trial number)
    become intermediate values. Range-test trials are left out: a sweep of rates is not a trial
    of one configuration."""
    import optuna

    skipped = [t for t in trials if t.get("kind") == TrialKind.RANGE_TEST]
    trials = [t for t in trials if t.get("kind") != TrialKind.RANGE_TEST]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    state = optuna.trial.TrialState
    states = {"completed": state.COMPLETE, "pruned": state.PRUNED}
    dists = _distributions(trials)
    objective = Objective.of(job["spec"].get("objective"))
    study = optuna.create_study(storage=storage, study_name=study_name,
                                direction="maximize" if objective.maximize else "minimize")
    study.set_user_attr("lrsearch_job", job["id"])
    study.set_user_attr("objective", objective.metric)
    study.set_user_attr("workload", job["spec"]["workload"])
    if skipped:
        study.set_user_attr("range_tests_left_out", [t["number"] for t in skipped])
    for t in sorted(trials, key=lambda t: t["number"]):
        st = states.get(t["status"], state.FAIL)
        value = t.get("objective", t["val_loss"]) if st == state.COMPLETE else None
        if st == state.COMPLETE and value is None:
            st = state.FAIL
        curve = {e: v for e, v in enumerate(curves.get(t["number"], [])) if v is not None}
        study.add_trial(optuna.trial.create_trial(
            params=_optuna_params(t["config"]), distributions={k: dists[k] for k in t["config"]}, value=value,
            intermediate_values=curve, state=st,
            user_attrs={"lrsearch_number": t["number"], "lrsearch_status": t["status"]}))
    return study
