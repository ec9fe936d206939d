"""A big job's summary (service/job_summary.py) and its table pages, on both backends: what the
job page of a 10,000-trial job draws and lists instead of every trial and metric row."""

from __future__ import annotations

import math
import random
import statistics
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert

from lrsearch.service import job_summary
from lrsearch.service.db import make_engine
from lrsearch.service.models import Job, Metric, Trial, utcnow

TRIALS = 2000  # beyond the sample: the page gets SAMPLE_POINTS of them
EPOCHS = 3


def store_job(db_url: str, status: str = "completed") -> tuple[int, list[dict[str, Any]]]:
    """A job of TRIALS trials with EPOCHS evaluations each (some diverged), as a search leaves it."""
    rng = random.Random(3)
    engine = make_engine(db_url)
    trials = []
    with engine.begin() as conn:
        job_id = conn.execute(insert(Job).values(
            name="big", status=status, spec={"workload": "synthetic", "strategy": "random", "epochs": EPOCHS},
            strategy_state={}, total_trials=TRIALS, created_at=utcnow(), cancel_requested=False,
            finished_at=utcnow() if status == "completed" else None)).inserted_primary_key[0]
        for n in range(TRIALS):
            lr = 10 ** rng.uniform(-4, 0)
            diverged = lr > 0.3 and rng.random() < 0.5
            curve = [1.0 / (e + 1) + (math.log10(lr) + 2) ** 2 / 10 for e in range(EPOCHS)]
            trials.append({"job_id": job_id, "number": n, "status": "diverged" if diverged else "completed",
                           "config": {"lr": lr, "optimizer": rng.choice(["sgd", "adam"]), "schedule": "constant",
                                      "warmup_fraction": 0.0},
                           "objective": None if diverged else min(curve), "val_loss": None if diverged else min(curve),
                           "epochs": EPOCHS, "attempts": 1, "kind": "training", "curve": curve})
        conn.execute(insert(Trial), [{k: v for k, v in t.items() if k != "curve"} for t in trials])
        ids = dict(conn.exec_driver_sql(f"SELECT number, id FROM trials WHERE job_id = {job_id}").all())
        conn.execute(insert(Metric), [{"trial_id": ids[t["number"]], "epoch": e, "train_loss": v, "val_loss": v,
                                       "lr": t["config"]["lr"]} for t in trials for e, v in enumerate(t["curve"])])
    engine.dispose()
    return int(job_id), trials


def test_the_summary_samples_the_best_and_aggregates_every_curve(api_only: TestClient, db_url: str) -> None:
    job_id, trials = store_job(db_url)
    summary = api_only.get(f"/dashboard-api/jobs/{job_id}/summary").json()
    assert summary["trials"] == TRIALS and summary["sampled"] is True
    points = summary["points"]
    assert len(points["number"]) == job_summary.SAMPLE_POINTS
    ranked = sorted((t for t in trials if t["objective"] is not None), key=lambda t: t["objective"])
    # The best trials are all there; the diverged ones too, up to their share.
    assert {t["number"] for t in ranked[:job_summary.BEST_POINTS]} <= set(points["number"])
    diverged = [points["statuses"][s] for s in points["status"]].count("diverged")
    assert diverged >= min(job_summary.DIVERGED_POINTS, sum(t["status"] == "diverged" for t in trials))
    # The rest is spread over the whole job, not its first trials.
    assert max(points["number"]) > TRIALS * 0.95 and min(points["number"]) < TRIALS * 0.05
    assert len(summary["parcoords"]["index"]) == job_summary.PARCOORDS_POINTS
    # Best so far: over every trial, where it improved, ending at the last trial.
    best, expected = math.inf, []
    for t in trials:
        if t["objective"] is not None and t["objective"] < best:
            best = t["objective"]
            expected.append(t["number"])
    line = summary["best_so_far"]
    assert line["x"] == [*expected, TRIALS - 1]
    assert math.isclose(line["y"][-1], ranked[0]["objective"], rel_tol=1e-4)
    # Curves: per lr band and epoch, the median over the band's trials.
    bands = summary["bands"]["items"]
    assert len(bands) == job_summary.LR_BANDS
    assert sum(b["trials"] for b in bands) == TRIALS
    for band in (bands[0], bands[-1]):
        members = [t for t in trials if band["lo"] * 0.999 <= t["config"]["lr"] <= band["hi"] * 1.001]
        values = sorted(t["curve"][1] for t in members)
        assert band["epoch"] == list(range(EPOCHS))
        assert values[0] <= band["val"]["p50"][1] <= values[-1]
        assert math.isclose(band["val"]["p50"][1], values[round(0.5 * (len(values) - 1))], rel_tol=1e-4)
        assert abs(band["val"]["p50"][1] - statistics.median(values)) < 0.05
    # A page that holds this version is told so, in a few bytes.
    again = api_only.get(f"/dashboard-api/jobs/{job_id}/summary", params={"since": summary["stamp"]})
    assert again.json() == {"stamp": summary["stamp"], "unchanged": True}
    assert api_only.get("/dashboard-api/jobs/999999/summary").status_code == 404


def test_a_small_job_is_summarised_whole(api_only: TestClient, db_url: str) -> None:
    job_id, trials = store_job(db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:  # keep 40 of the trials
        conn.exec_driver_sql(f"DELETE FROM trials WHERE job_id = {job_id} AND number >= 40")
    engine.dispose()
    summary = api_only.get(f"/dashboard-api/jobs/{job_id}/summary").json()
    assert summary["sampled"] is False and summary["points"]["number"] == list(range(40))


def test_the_table_pages_on_the_server_in_the_order_asked(api_only: TestClient, db_url: str) -> None:
    job_id, trials = store_job(db_url, status="running")
    base = f"/dashboard-api/jobs/{job_id}/trials"
    page = api_only.get(base, params={"offset": 100, "limit": 50}).json()
    assert page["total"] == TRIALS and [t["number"] for t in page["items"]] == list(range(100, 150))
    # Best first, the diverged (no objective) last, either way round; numbers break ties.
    ranked = api_only.get(base, params={"order": "rank", "limit": 500}).json()["items"]
    values = [t["objective"] for t in ranked]
    assert values == sorted(values)
    last = api_only.get(base, params={"order": "-rank", "offset": TRIALS - 10, "limit": 10}).json()["items"]
    assert all(t["objective"] is None for t in last)
    only = api_only.get(base, params={"status": "diverged", "limit": 500}).json()
    assert only["total"] == sum(t["status"] == "diverged" for t in trials)
    assert {t["status"] for t in only["items"]} == {"diverged"}
    # An unchanged page is not sent again; a bad order is a 422 naming it.
    again = api_only.get(base, params={"offset": 100, "limit": 50, "since": page["stamp"]}).json()
    assert again == {"stamp": page["stamp"], "unchanged": True}
    bad = api_only.get(base, params={"order": "lr"})
    assert bad.status_code == 422 and "order" in bad.text
    # The REST API lists in the same orders.
    rest = api_only.get(f"/api/v1/jobs/{job_id}/trials", params={"order": "rank", "limit": 500}).json()
    assert [t["number"] for t in rest["items"]] == [t["number"] for t in ranked]
    # Pages by number (found in the index while the numbers are 0..n-1), either way round, and by
    # position once a number is missing.
    numbers = lambda **p: [t["number"] for t in api_only.get(f"/api/v1/jobs/{job_id}/trials", params=p).json()["items"]]  # noqa: E731
    assert numbers(offset=TRIALS - 10, limit=20) == list(range(TRIALS - 10, TRIALS))
    assert numbers(order="-number", offset=5, limit=3) == [TRIALS - 6, TRIALS - 7, TRIALS - 8]
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM trials WHERE job_id = {job_id} AND number = 7")
    engine.dispose()
    assert numbers(offset=10, limit=3) == [11, 12, 13]
    assert numbers(order="-number", offset=TRIALS - 10, limit=3) == [9, 8, 6]
