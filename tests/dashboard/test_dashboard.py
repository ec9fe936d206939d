"""The dashboard in a real headless Chromium against a real ``lrsearch serve``; and its HTTP surface."""

from __future__ import annotations

import gzip
import html
import json
import re
import time
from typing import Any

import httpx
import pytest

from lrsearch.service.dashboard import plotly_js_path
from tests.dashboard.conftest import IMG_NAME, SCRIPT_NAME

PLOT_IDS = ["plot-lr-loss", "plot-val", "plot-train", "plot-lr-traj", "plot-best-so-far", "plot-parcoords"]
# Points a Plotly graph div holds: the non-null x values of its traces.
POINTS_JS = """(id) => {
  const d = document.getElementById(id);
  if (!d || !Array.isArray(d.data)) return 0;
  return d.data.reduce((n, t) => n + (t.type === 'parcoords'
    ? ((t.dimensions && t.dimensions[0] && t.dimensions[0].values) || []).length
    : (t.x || []).filter((v) => v !== null && v !== undefined).length), 0);
}"""


# Epochs the trial table shows, summed over its rows ("12 / 200" cells).
EPOCHS_JS = """() => [...document.querySelectorAll('#trials tbody tr')]
  .reduce((n, r) => n + parseInt(r.children[8].textContent, 10), 0)"""


def points(page: Any, plot_id: str) -> int:
    return page.evaluate(f"({POINTS_JS})({json.dumps(plot_id)})")


def visible_rows(page: Any) -> list[str]:
    return page.evaluate("() => [...document.querySelectorAll('#trials tbody tr')].filter(r => !r.hidden)"
                         ".map(r => r.dataset.trial)")


# -- in the browser --------------------------------------------------------------------------
def test_jobs_list_shows_the_jobs(page: Any, service: dict[str, Any]) -> None:
    job = service["finished"]
    page.goto(service["url"] + "/")
    row = page.locator(f'#jobs tbody tr[data-job-id="{job["id"]}"]')
    row.locator("td.name a", has_text="dash-finished").wait_for()
    assert row.locator(".badge").inner_text().strip().endswith("completed")
    assert row.locator(".progress-text").inner_text() == "6 / 6"
    assert row.locator("td").nth(4).inner_text() == format_lr(job["best"]["lr"])
    # The running job offers a cancel button; the finished one does not.
    assert page.locator(f'#jobs tbody tr[data-job-id="{service["running"]["id"]}"] button').is_visible()
    assert not row.locator("button").is_visible()


def format_lr(x: float) -> str:
    return f"{x:.4g}"  # the grid's lrs (0.003, 0.1, 50) print alike in Python and JavaScript


def test_finished_job_page_has_plots_rows_and_best(page: Any, service: dict[str, Any]) -> None:
    job = service["finished"]
    best = service["api"].http.get(f"/jobs/{job['id']}/best").json()
    trials = service["api"].http.get(f"/jobs/{job['id']}/trials").json()["items"]
    epochs = sum(t["epochs"] for t in trials)
    diverged = [t["number"] for t in trials if t["status"] == "diverged"]
    assert diverged and all(t["config"]["lr"] == 50.0 for t in trials if t["number"] in diverged)
    page.goto(f"{service['url']}/jobs/{job['id']}")
    page.wait_for_function("() => document.querySelectorAll('#trials tbody tr').length === 6")
    page.wait_for_function(f"() => {json.dumps(PLOT_IDS)}.filter((id) => ({POINTS_JS})(id) > 0).length >= 6")
    counts = {pid: points(page, pid) for pid in PLOT_IDS}
    assert sum(1 for n in counts.values() if n > 0) >= 3, counts
    # A point per epoch on the curves (plus a marker where a diverged trial's curve ends) ...
    assert counts["plot-lr-traj"] == epochs, counts
    assert epochs <= counts["plot-val"] <= epochs + len(diverged), counts
    # ... a point per trial against lr and trial number; a line through 5 axes per trial that did not diverge.
    with_loss = [t for t in trials if t["val_loss"] is not None]
    assert counts["plot-lr-loss"] == len(trials) and counts["plot-best-so-far"] == 2 * len(with_loss), counts
    assert counts["plot-parcoords"] == 5 * (len(trials) - len(diverged)), counts
    # The x axis of val_loss against lr is logarithmic; hovering a curve names its trial's config.
    assert page.evaluate("() => document.getElementById('plot-lr-loss').layout.xaxis.type") == "log"
    hover = page.evaluate("() => document.getElementById('plot-val').data[0].text[0]")
    assert "lr" in hover and "sgd" in hover and re.search(r"constant|cosine", hover)

    # A row per trial; the diverged ones marked by color and text.
    assert sorted(visible_rows(page), key=int) == [str(n) for n in range(6)]
    assert page.locator("#trials tbody tr.t-completed").count() == 6 - len(diverged)
    for number in diverged:
        row = page.locator(f'#trials tbody tr[data-trial="{number}"]')
        assert row.get_attribute("class").split()[0] == "t-diverged"
        assert row.locator(".badge").inner_text().strip().endswith("diverged")
        assert "diverged" in row.locator("td.note").inner_text()
        color = row.evaluate("(r) => getComputedStyle(r).backgroundColor")
        assert color not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)"), color
    # The best learning rate, as text.
    lr = page.locator("#best-lr")
    assert lr.inner_text() == format_lr(best["lr"])
    assert float(lr.get_attribute("data-lr")) == best["lr"]
    assert page.locator(f'#trials tbody tr.is-best[data-trial="{best["trial"]}"]').count() == 1

    # Sort by val_loss: the best trial comes first; again: descending (trials without one stay last).
    page.click('#trials th[data-sort="val_loss"]')
    ranked = sorted(with_loss, key=lambda t: (t["val_loss"], t["number"]))
    assert visible_rows(page)[:len(ranked)] == [str(t["number"]) for t in ranked]
    assert visible_rows(page)[0] == str(best["trial"])
    page.click('#trials th[data-sort="val_loss"]')
    assert visible_rows(page)[len(ranked) - 1] == str(best["trial"])
    # Filter by status.
    page.select_option("#status-filter", "diverged")
    assert sorted(visible_rows(page)) == sorted(str(n) for n in diverged)
    page.select_option("#status-filter", "completed")
    assert len(visible_rows(page)) == 6 - len(diverged)
    page.select_option("#status-filter", "")

    # Copy the best configuration as JSON, and as a curl snippet that re-runs it.
    page.click("#copy-json")
    page.wait_for_function("() => document.getElementById('copy-json').textContent.startsWith('Copied')")
    assert json.loads(page.evaluate("() => navigator.clipboard.readText()")) == best["config"]
    page.click("#copy-curl")
    page.wait_for_function("() => document.getElementById('copy-curl').textContent.startsWith('Copied')")
    curl = page.evaluate("() => navigator.clipboard.readText()")
    assert curl.startswith("curl -X POST") and f"{service['url']}/api/v1/jobs" in curl
    body = json.loads(curl.split("-d '", 1)[1].rstrip("'"))
    assert body["strategy"] == "manual" and body["configs"] == [best["config"]]
    # ... which the service accepts.
    r = service["api"].http.post("/jobs", json={**body, "epochs": 1})
    assert r.status_code == 201, r.text
    service["api"].http.post(f"/jobs/{r.json()['id']}/cancel")
    assert "configs:" in page.locator("#best-yaml").text_content()

    # How sure the best is: the rates as good as it; and the rate at another batch size, which the
    # config and its copy then carry.
    assert best["lr_interval"] is not None
    assert page.locator("#best-interval").inner_text().startswith("as good: lr ")
    from lrsearch.workers.registry import workload_batch_size

    batch = workload_batch_size("mlp-digits")
    page.fill("#best-batch", str(batch * 2))
    page.locator("#best-batch").dispatch_event("change")
    transfer = page.locator("#best-transfer")
    transfer.wait_for(state="visible")
    assert f"at batch size {batch} to" in transfer.inner_text() and f"at batch size {batch * 2} (linear rule)" in \
        transfer.inner_text()
    scaled = json.loads(page.locator("#best-json").inner_text())
    assert scaled["lr"] == pytest.approx(best["lr"] * 2) and scaled["optimizer"] == "sgd"
    assert page.locator("#best-lr").inner_text() == format_lr(best["lr"] * 2)
    page.fill("#best-batch", "")
    page.locator("#best-batch").dispatch_event("change")
    page.wait_for_function("() => document.getElementById('best-transfer').hidden")

    # Toggle color by schedule: one trace per schedule.
    page.click('button[data-color-by="schedule"]')
    names = page.evaluate("() => document.getElementById('plot-lr-loss').data.map((t) => t.name)")
    assert {"constant", "cosine"} <= set(names)


def test_range_test_job_page_draws_the_finder_plot(page: Any, service: dict[str, Any]) -> None:
    job = service["finder"]
    assert job["status"] == "completed"
    best = service["api"].http.get(f"/jobs/{job['id']}/best").json()
    finder = service["api"].http.get(f"/jobs/{job['id']}/range_test").json()["items"]
    trials = service["api"].http.get(f"/jobs/{job['id']}/trials").json()["items"]
    checks = [t for t in trials if "range_test" not in t["config"]]
    page.goto(f"{service['url']}/jobs/{job['id']}")
    page.wait_for_function("() => document.getElementById('plot-finder').dataset.suggestions")
    assert page.locator("#finder-card").is_visible()
    # Loss against lr on a log axis: per test its batch losses and their smoothing, one point per step.
    steps = sum(len(c["lrs"]) for f in finder for c in f["curves"])
    assert points(page, "plot-finder") == 2 * steps
    assert page.evaluate("() => document.getElementById('plot-finder').layout.xaxis.type") == "log"
    # Each optimizer's suggestion marked, where /best says it is.
    shown = json.loads(page.evaluate("() => document.getElementById('plot-finder').dataset.suggestions"))
    assert shown == best["suggestions"] and set(shown) == {"sgd", "adam"}
    marks = page.evaluate("() => document.getElementById('plot-finder').layout.shapes.map((s) => s.x0)")
    assert sorted(marks) == sorted(best["suggestions"].values())
    labels = page.evaluate("() => document.getElementById('plot-finder').layout.annotations.map((a) => a.text)")
    assert {label.split()[0] for label in labels} == {"sgd", "adam"}
    # The per-epoch plots show the trained checks only, not the sweeps.
    page.wait_for_function(f"() => ({POINTS_JS})('plot-lr-traj') > 0")
    assert points(page, "plot-lr-traj") == sum(t["epochs"] for t in checks)
    assert points(page, "plot-lr-loss") == len(checks)
    # All six trials are rows of the table; a range test's row says what it swept.
    page.wait_for_function("() => document.querySelectorAll('#trials tbody tr').length === 6")
    assert page.locator('#trials tbody tr[data-trial="1"] td.note').inner_text().startswith("range test, seed 1")
    # ... its rates as the range swept, its length in steps (not "95 / 2" epochs at a single "1e-7").
    sweep = next(t for t in trials if t["number"] == 1)["config"]
    row = page.locator('#trials tbody tr[data-trial="1"]')
    low, high = (float(x) for x in row.locator("td").nth(2).inner_text().split(" \u2192 "))
    assert low == pytest.approx(sweep["lr"], rel=1e-3) and high == pytest.approx(sweep["range_test"]["lr_high"], rel=1e-3)
    assert row.locator("td").nth(8).inner_text().endswith(f" / {sweep['range_test']['num_steps']} steps")
    # Two optimizers were checked: the best card lists each one's best.
    per_optimizer = page.locator("#best-per-optimizer")
    assert per_optimizer.is_visible() and per_optimizer.locator("tbody tr").count() == len(best["per_optimizer"]) == 2
    assert {r.split()[0] for r in per_optimizer.locator("tbody tr").all_inner_texts()} == {"sgd", "adam"}


def test_a_step_job_plots_steps_and_names_its_objective(page: Any, service: dict[str, Any]) -> None:
    job = service["stepped"]
    assert job["status"] == "completed"
    trials = service["api"].http.get(f"/jobs/{job['id']}/trials").json()["items"]
    page.goto(f"{service['url']}/jobs/{job['id']}")
    page.wait_for_function(f"() => ({POINTS_JS})('plot-val') > 0")
    layout = "(id) => document.getElementById(id).layout.xaxis.title.text"
    assert page.evaluate(f"({layout})('plot-val')") == "step"
    xs = page.evaluate("() => document.getElementById('plot-val').data.flatMap((t) => t.x || [])"
                       ".filter((v) => v !== null && v !== undefined)")
    assert set(xs) <= {10, 20, 30, 40} and 40 in xs
    assert points(page, "plot-val") >= sum(t["epochs"] for t in trials)
    assert page.locator("#trials thead .objective-name").text_content() == "val_accuracy"
    assert page.locator("#job-meta").inner_text().count("val_accuracy (max)") == 1
    best = service["api"].http.get(f"/jobs/{job['id']}/best").json()
    page.locator("#best-sub").wait_for()
    assert page.locator("#best-sub").inner_text().startswith(f"val_accuracy {best['objective']['value']:.4f}"[:16])
    assert f"at step {best['step']}" in page.locator("#best-sub").inner_text()
    # The best-so-far line climbs: the objective is maximised.
    ys = page.evaluate("() => document.getElementById('plot-best-so-far').data[1].y")
    assert ys == sorted(ys)


def test_other_jobs_have_no_finder_plot(page: Any, service: dict[str, Any]) -> None:
    page.goto(f"{service['url']}/jobs/{service['finished']['id']}")
    page.wait_for_function(f"() => ({POINTS_JS})('plot-val') > 0")
    assert page.locator("#finder-card").is_hidden()
    assert page.locator("#population-card").is_hidden()


def test_a_pbt_job_page_draws_each_members_rate_its_exploits_and_the_best_ancestry(
        page: Any, service: dict[str, Any]) -> None:
    job = service["pbt"]
    assert job["status"] == "completed"
    population = service["api"].http.get(f"/jobs/{job['id']}/population").json()
    best = service["api"].http.get(f"/jobs/{job['id']}/best").json()
    assert len(population["exploits"]) == 1  # two members: the worse copies the better once
    page.goto(f"{service['url']}/jobs/{job['id']}")
    page.wait_for_function("() => (document.getElementById('plot-population').data || []).length >= 4")
    assert page.locator("#population-card").is_visible()
    names = page.evaluate("() => document.getElementById('plot-population').data.map((t) => t.name)")
    assert names == ["member 0", "member 1", "exploit", "best's ancestry"]
    # Each member's rate as a step line over the epochs; the exploit where it happened, at its new rate.
    member_x = page.evaluate("() => document.getElementById('plot-population').data[0].x")
    assert member_x == [0, 2, 2, 4]
    mark = page.evaluate("() => document.getElementById('plot-population').data[2]")
    assert mark["x"] == [2] and mark["y"] == [population["exploits"][0]["lr_after"]]
    ancestry = page.evaluate("() => document.getElementById('plot-population').data[3].y")
    assert ancestry == [s["lr"] for s in best["trajectory"] for _ in (0, 1)]


def test_running_job_updates_without_reload(page: Any, service: dict[str, Any]) -> None:
    job = service["running"]
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto(f"{service['url']}/jobs/{job['id']}")
    page.wait_for_function(f"() => ({POINTS_JS})('plot-val') > 0", timeout=30_000)
    page.evaluate("() => { window.__sameDocument = true; }")
    before_points = points(page, "plot-val")
    before_epochs = page.evaluate(EPOCHS_JS)
    t0 = time.monotonic()
    page.wait_for_function(f"(n) => ({POINTS_JS})('plot-val') > n", arg=before_points, timeout=20_000)
    print(f"new epochs on the plot after {time.monotonic() - t0:.1f} s")
    page.wait_for_function(f"(n) => ({EPOCHS_JS})() > n", arg=before_epochs, timeout=10_000)
    assert page.evaluate("() => window.__sameDocument") is True  # updated in place, not reloaded
    assert page.locator("#trials tbody tr .badge.s-running").count() >= 1
    assert page.locator("#live").inner_text() == "live"
    # No request per trial: metrics come from the one curves endpoint, asking only for what moved.
    assert not [u for u in requests if re.search(r"/trials/\d+/metrics", u)]
    curves = [u for u in requests if "/dashboard-api/" in u]
    assert curves and all("trials=" in u for u in curves[1:]), curves


def test_a_big_job_page_draws_the_servers_summary_and_pages_its_table(page: Any, service: dict[str, Any]) -> None:
    job = service["big"]
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{service['url']}/jobs/{job['id']}")
    page.wait_for_function(f"() => {json.dumps(PLOT_IDS)}.every((id) => document.getElementById(id).querySelector('.main-svg'))")
    assert "150 trials" in page.locator("#summary-note").inner_text()
    # The plots come from the summary: no per-trial curves, no list of every trial.
    assert any("/summary" in u for u in requests)
    assert not any("/curves" in u or "limit=10000" in u for u in requests), requests
    assert points(page, "plot-lr-loss") == 150  # a job this size is not sampled
    traces = page.evaluate("() => document.getElementById('plot-val').data.length")
    assert traces <= 2 * 12 + 1  # a median line and a shaded band per lr band, and the colorbar
    best = service["api"].http.get(f"/jobs/{job['id']}/best").json()
    line = page.evaluate("() => document.getElementById('plot-best-so-far').data[1]")
    assert line["y"][-1] == pytest.approx(best["objective"]["value"], rel=1e-4)
    # The table shows one page of the server's, and pages and sorts there.
    assert visible_rows(page) == [str(n) for n in range(50)]
    assert page.locator("#trials-shown").inner_text() == "1\u201350 of 150 trials"
    page.click("#page-next")
    page.wait_for_function("() => document.querySelector('#trials tbody tr').dataset.trial === '50'")
    assert visible_rows(page) == [str(n) for n in range(50, 100)]
    page.click('#trials th[data-sort="val_loss"]')  # best first, from the first page
    page.wait_for_function(f"() => document.querySelector('#trials tbody tr').dataset.trial === '{best['trial']}'")
    assert page.locator("#trials-shown").inner_text() == "1\u201350 of 150 trials"
    # The job is finished: once the page holds it all, it stops asking.
    page.wait_for_timeout(2500)
    before = len(requests)
    page.wait_for_timeout(2000)
    assert len(requests) == before


def test_a_big_job_page_waits_for_its_summary_when_plotly_is_ready_first(page: Any, service: dict[str, Any]) -> None:
    """Plotly is parsed after the page's script; when it is ready before the summary has come (a slow
    server), the page must not draw a big job's plots from nothing (it threw, reading the sample)."""
    import time

    job = service["big"]

    def slow_summary(route: Any) -> None:
        time.sleep(2.0)  # the real answer, late: Plotly is ready by then
        route.continue_()

    page.route("**/dashboard-api/jobs/*/summary*", slow_summary)
    page.goto(f"{service['url']}/jobs/{job['id']}")
    page.wait_for_function(f"() => {json.dumps(PLOT_IDS)}.every((id) => document.getElementById(id).querySelector('.main-svg'))")
    assert points(page, "plot-lr-loss") == 150
    # The page's uncaught errors are checked when the test ends (tests/dashboard/conftest.py).


def test_submit_form_creates_a_job_and_shows_422_next_to_the_field(page: Any, service: dict[str, Any]) -> None:
    api = service["api"]
    page.goto(service["url"] + "/")
    page.wait_for_selector('#f-workload option[value="mlp-digits"]', state="attached")
    page.fill("#f-name", "dash-form")
    page.select_option("#f-strategy", "grid")
    assert page.locator("#f-max_trials").input_value() == ""  # a grid runs its product: no budget to refuse
    page.fill("#f-lr_low", "0.01")
    page.fill("#f-lr_high", "0.1")
    page.fill("#f-lr_num", "2")
    page.fill("#f-max_concurrent", "1")
    page.fill("#f-epochs", "1")
    page.fill("#f-warmup", "0")
    page.uncheck('#f-optimizers input[value="adam"]')
    page.uncheck('#f-schedules input[value="cosine"]')
    page.click("#submit")
    page.locator("#form-ok a", has_text="dash-form").wait_for()
    page.locator("#jobs tbody td.name a", has_text="dash-form").wait_for()
    created = [j for j in api.http.get("/jobs").json()["items"] if j["name"] == "dash-form"]
    assert len(created) == 1
    spec = created[0]["spec"]
    assert spec["strategy"] == "grid" and spec["epochs"] == 1 and created[0]["total_trials"] == 2
    assert spec["space"]["lr"] == {"low": 0.01, "high": 0.1, "num": 2}
    assert spec["space"]["optimizer"] == ["sgd"] and spec["space"]["schedule"] == ["constant"]

    # A bad learning rate: the server's 422 message appears next to the lr field, and nothing is written.
    total = api.http.get("/jobs").json()["total"]
    page.fill("#f-name", "dash-form-bad")
    page.fill("#f-lr_low", "-1")
    page.click("#submit")
    error = page.locator("#err-lr_low")
    error.wait_for(state="visible")
    assert "> 0" in error.inner_text()
    assert page.locator("#f-lr_low").get_attribute("aria-invalid") == "true"
    assert page.locator("#err-form").is_hidden() and page.locator("#err-lr_high").is_hidden()
    assert api.http.get("/jobs").json()["total"] == total

    # Fixing it clears the message; a field-level type error lands on its own field.
    page.fill("#f-lr_low", "0.01")
    page.fill("#f-epochs", "many")
    page.click("#submit")
    page.locator("#err-epochs").wait_for(state="visible")
    assert page.locator("#err-lr_low").is_hidden()

    # Three mistakes at once: each field is marked in the one answer.
    page.fill("#f-lr_high", "0")
    page.fill("#f-max_concurrent", "0")
    page.click("#submit")
    page.locator("#err-max_concurrent").wait_for(state="visible")
    for field in ("epochs", "lr_high", "max_concurrent"):
        assert page.locator(f"#err-{field}").is_visible(), field
        assert page.locator(f"#f-{field}").get_attribute("aria-invalid") == "true", field
    assert api.http.get("/jobs").json()["total"] == total
    page.fill("#f-lr_high", "0.1")
    page.fill("#f-max_concurrent", "1")

    # The raw JSON spec: its 422s are shown under it.
    page.click("#advanced summary")
    page.fill("#f-raw", json.dumps({"workload": "mlp-digits", "space": {"lr": {"low": 1, "high": 0.1}}}))
    page.click("#raw-submit")
    page.locator("#err-raw").wait_for(state="visible")
    assert "space.lr.low" in page.locator("#err-raw").inner_text()
    page.fill("#f-raw", "{not json")
    page.click("#raw-submit")
    assert "not valid JSON" in page.locator("#err-raw").inner_text()
    assert api.http.get("/jobs").json()["total"] == total


def test_a_failed_trial_shows_its_error_as_text_and_is_not_plotted(page: Any, service: dict[str, Any]) -> None:
    job = service["failing"]
    assert job["status"] == "failed" and "every trial failed (2)" in job["error"], job
    page.goto(f"{service['url']}/jobs/{job['id']}")
    page.wait_for_function("() => document.querySelectorAll('#trials tbody tr').length === 2")
    notes = page.locator("#trials tbody td.note").all_inner_texts()
    assert notes == ["RuntimeError: expected target dtype to be Long but got Float"] * 2, notes
    page.locator("#job-error").wait_for(state="visible")
    assert "RuntimeError: expected target dtype" in page.locator("#job-error").inner_text()
    # A failure says nothing about its rate: no made-up point against lr (a placeholder instead).
    page.wait_for_function("() => document.getElementById('plot-lr-loss').textContent.includes('No trial')")
    assert points(page, "plot-lr-loss") == 0


def test_a_broken_plugin_is_listed_but_cannot_be_picked(page: Any, service: dict[str, Any]) -> None:
    """An installed plug-in that fails to load: the form shows why, and does not offer it."""
    listed = {w["name"]: w for w in service["api"].http.get("/workloads").json()["items"]}
    assert listed["broken-plugin"]["error"].startswith("AttributeError: ")
    page.goto(service["url"] + "/")
    option = page.locator('#f-workload option[value="broken-plugin"]')
    option.wait_for(state="attached")
    assert option.is_disabled() and option.inner_text() == "broken-plugin (failed to load)"
    assert option.get_attribute("title") == listed["broken-plugin"]["error"]


def test_cancel_takes_two_clicks_on_both_pages(page: Any, service: dict[str, Any]) -> None:
    api = service["api"].http
    # Long enough that only a cancel ends them, however slowly the pages answer on a loaded machine.
    spec = {"name": "dash-cancel", "workload": "mlp-digits", "strategy": "random", "max_trials": 1000,
            "epochs": 200, "max_concurrent": 1, "space": {"lr": {"low": 0.001, "high": 0.1}}}
    from_list, from_page = (api.post("/jobs", json=spec).json()["id"] for _ in range(2))
    # The pages' clock stands still while the buttons are clicked: a first click arms a button for
    # 3 s of the page's time, and on a loaded machine two Playwright actions can be further apart.
    start = time.time()
    page.clock.install(time=start)
    page.clock.pause_at(start + 60)  # seconds; ahead of the clock however long install took
    page.goto(service["url"] + "/")
    button = page.locator(f'#jobs tbody tr[data-job-id="{from_list}"] button')
    button.click()
    assert button.inner_text() == "Confirm cancel"  # the first click only arms it
    button.click()
    page.goto(f"{service['url']}/jobs/{from_page}")
    job_button = page.locator("#cancel")
    job_button.click()
    assert job_button.inner_text() == "Click again to cancel"
    page.clock.run_for(3100)  # unconfirmed, it disarms: the next click arms it again
    assert job_button.inner_text() == "Cancel job"
    job_button.click()
    assert job_button.inner_text() == "Click again to cancel"
    assert api.get(f"/jobs/{from_page}").json()["status"] in ("queued", "running")
    job_button.click()
    deadline = time.monotonic() + 120
    while (jobs := [api.get(f"/jobs/{i}").json() for i in (from_list, from_page)]) and \
            {j["status"] for j in jobs} != {"cancelled"}:
        assert time.monotonic() < deadline, [(j["id"], j["status"], j["trial_counts"]) for j in jobs]
        time.sleep(0.2)


def test_hostile_job_names_are_shown_as_text(page: Any, service: dict[str, Any]) -> None:
    jobs = {j["id"]: j["name"] for j in service["hostile"]}
    assert sorted(jobs.values()) == sorted([SCRIPT_NAME, IMG_NAME])
    page.goto(service["url"] + "/")
    for job_id, name in jobs.items():
        link = page.locator(f'#jobs tbody tr[data-job-id="{job_id}"] td.name a')
        link.wait_for()
        assert link.text_content() == name
    for job_id, name in jobs.items():
        page.goto(f"{service['url']}/jobs/{job_id}")
        page.wait_for_function("() => document.getElementById('live').textContent !== 'live' || "
                               "document.querySelector('#job-meta b')")
        assert page.locator("#job-name").text_content() == name
        assert page.title().startswith(name)
        page.wait_for_timeout(300)
    # Nothing the names hold became markup: no image, no inline script (and the fixture asserts no dialog).
    assert page.evaluate("() => document.querySelectorAll('img').length") == 0
    assert page.evaluate("() => [...document.scripts].every((s) => s.src && !s.textContent.trim())")
    assert page.watch.dialogs == []


# -- over HTTP -------------------------------------------------------------------------------
def test_pages_are_html_with_a_strict_policy_and_escaped_names(service: dict[str, Any]) -> None:
    url = service["url"]
    r = httpx.get(url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe" not in csp.split("script-src", 1)[1].split(";")[0]
    srcs = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', r.text)
    assert srcs and all(s.startswith("/static/") for s in srcs), srcs
    for job in service["hostile"]:
        page = httpx.get(f"{url}/jobs/{job['id']}").text
        assert "alert(" in page  # the name is there ...
        assert "<script>alert" not in page and "<img" not in page  # ... escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in httpx.get(f"{url}/jobs/{service['hostile'][0]['id']}").text
    for bad in ("999999", "0", "abc", "-1", "\u00b2", "9" * 30):
        r = httpx.get(f"{url}/jobs/{bad}")
        assert r.status_code == 404 and "Job not found" in r.text
    assert httpx.get(f"{url}/jobs").headers["location"] == "/"
    # Every page shares one head (a partial): its title, the icon and the stylesheet; nothing left unfilled.
    hostile = service["hostile"][0]
    for path, title in (("/", "Jobs"), (f"/jobs/{hostile['id']}", html.escape(hostile["name"])),
                        ("/jobs/999999", "Job not found")):
        page = httpx.get(url + path).text
        assert page.startswith("<!doctype html>") and f"<title>{title} · lrsearch</title>" in page, path
        assert re.search(r'<link rel="stylesheet" href="/static/dashboard\.css\?v=\w+">', page), path
        assert "{{" not in page, path


def test_static_files_and_plotly_come_from_the_service(service: dict[str, Any]) -> None:
    url = service["url"]
    html = httpx.get(url + "/jobs/1").text
    plotly_src = re.search(r'src="(/static/plotly\.min\.js\?v=\w+)"', html).group(1)
    r = httpx.get(url + plotly_src, headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "max-age=31536000" in r.headers["cache-control"]
    assert r.headers.get("content-encoding") == "gzip"
    assert r.content == plotly_js_path().read_bytes()  # httpx decoded the gzip
    raw = httpx.get(url + plotly_src, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers and raw.content == r.content
    assert gzip.decompress(gzip.compress(raw.content)) == raw.content
    etag = r.headers["etag"]
    assert httpx.get(url + plotly_src, headers={"If-None-Match": etag}).status_code == 304
    for name in ("common.js", "job.js", "jobs.js", "dashboard.css", "favicon.svg"):
        assert httpx.get(f"{url}/static/{name}").status_code == 200, name
    for bad in ("nope.js", "..%2Fdashboard.py", "%2E%2E%2Fapp.py", ".hidden"):
        assert httpx.get(f"{url}/static/{bad}").status_code == 404, bad
    assert httpx.get(f"{url}/static/../app.py").status_code == 404


def test_curves_endpoint_answers_all_trials_in_one_query(service: dict[str, Any]) -> None:
    url, job = service["url"], service["finished"]
    base = f"{url}/dashboard-api/jobs/{job['id']}/curves"
    full = httpx.get(base).json()
    epochs = sum(t["epochs"] for t in service["api"].http.get(f"/jobs/{job['id']}/trials").json()["items"])
    assert full["more"] is False and len(full["trial"]) == epochs
    assert list(zip(full["trial"], full["epoch"]))[:4] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    api_metrics = service["api"].http.get(f"/jobs/{job['id']}/trials/2/metrics").json()["items"]
    mine = [i for i, t in enumerate(full["trial"]) if t == 2]
    assert [full["lr"][i] for i in mine] == [float(f"{m['lr']:.7g}") for m in api_metrics]
    assert [full["val_loss"][i] for i in mine] == [float(f"{m['val_loss']:.7g}") for m in api_metrics]
    # Only what the page lacks: trial 0 from epoch 1, trial 3 from epoch 0 (the grid's first two lrs
    # train all 3 epochs).
    part = httpx.get(base, params={"trials": "0:1,3:0"}).json()
    assert list(zip(part["trial"], part["epoch"])) == [(0, 1), (0, 2), (3, 0), (3, 1), (3, 2)]
    assert httpx.get(base, params={"trials": ""}).json()["trial"] == []
    # Paging for big jobs.
    page = httpx.get(base, params={"start": 1, "limit": 4}).json()
    assert page["more"] is True and page["trial"] == [1, 1, 1, 2]
    for bad in ("x", "1:x", "\u00b2:0", "1:" + "9" * 30):
        assert httpx.get(base, params={"trials": bad}).status_code == 422, bad
    assert httpx.get(base, params={"trials": ",".join(f"{n}:0" for n in range(201))}).status_code == 422
    assert httpx.get(f"{url}/dashboard-api/jobs/999999/curves").status_code == 404
