"""A real ``lrsearch serve`` (SQLite file) and a real headless Chromium driven by Playwright.

Chromium is Debian's package (``apt-get install chromium``; .ci/run installs it). Outside CI a
machine without it skips these tests with a printed reason; with CI=true that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServiceProcess, once, stop_after_last_use

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TERMINAL = ("completed", "cancelled", "failed")


def chromium_path() -> str | None:
    """LRSEARCH_CHROMIUM if set (a path that does not exist means: no browser), else Debian's chromium."""
    explicit = os.environ.get("LRSEARCH_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    reason = None
    if path is None:
        reason = "chromium is not installed (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError as exc:
            reason = f"playwright is not importable: {exc}"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the dashboard's browser tests need Chromium in CI: {reason}")
        print(f"skipping the dashboard's browser tests: {reason}")
        pytest.skip(reason)
    assert path is not None
    return path


def wait_until(pred: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(what)


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=f"{url}/api/v1", timeout=30)

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post("/jobs", json=spec)
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, job_id: int) -> dict[str, Any]:
        return self.http.get(f"/jobs/{job_id}").json()

    def wait(self, job_id: int, timeout: float = 90.0) -> dict[str, Any]:
        return wait_until(lambda: (j := self.job(job_id))["status"] in TERMINAL and j, timeout,
                          f"job {job_id} to finish")


# 3 lrs x 2 schedules; SGD at lr 50 diverges, so the page has diverged trials to mark.
FINISHED_SPEC = {"name": "dash-finished", "workload": "mlp-digits", "strategy": "grid", "epochs": 3,
                 "max_concurrent": 2, "seed": 0,
                 "space": {"lr": {"values": [0.003, 0.1, 50.0]}, "optimizer": ["sgd"],
                           "schedule": ["constant", "cosine"]}}
# Long enough to run through the whole module; cancelled at teardown. (At SUMMARY_ABOVE trials:
# its page still draws every trial.)
SUMMARY_ABOVE = 100
RUNNING_SPEC = {"name": "dash-running", "workload": "mlp-digits", "strategy": "random", "max_trials": SUMMARY_ABOVE,
                "epochs": 200, "max_concurrent": 1, "seed": 1,
                "space": {"lr": {"low": 1e-3, "high": 0.3}, "optimizer": ["sgd", "adam"],
                          "schedule": ["cosine", "onecycle"], "warmup_fraction": {"values": [0.0, 0.1]}}}
# Range tests of two optimizers, then a 2-epoch check at each suggestion.
FINDER_SPEC = {"name": "dash-finder", "workload": "mlp-digits", "strategy": "range_test", "epochs": 2,
               "max_concurrent": 2, "space": {"optimizer": ["sgd", "adam"]},
               "options": {"num_steps": 50, "repeats": 2}}
SCRIPT_NAME = "<script>alert(1)</script>"
IMG_NAME = '<img src=x onerror="alert(2)">'


# A step job ranked by accuracy: the page counts steps and names the objective.
STEP_SPEC = {"name": "dash-steps", "workload": "mlp-digits", "strategy": "grid", "steps": 40, "eval_every": 10,
             "objective": {"metric": "val_accuracy"},
             "space": {"lr": {"values": [0.01, 0.1, 1.0]}, "optimizer": ["sgd"]}}


# A population of two: after the first segment the worse member copies the better one.
PBT_SPEC = {"name": "dash-pbt", "workload": "mlp-digits", "strategy": "pbt", "epochs": 4, "max_concurrent": 2,
            "space": {"lr": {"low": 1e-3, "high": 0.5}, "optimizer": ["sgd"]},
            "options": {"population": 2, "interval": 2}}


# More trials than the service draws one by one (SUMMARY_ABOVE): its page shows the server's summary.
BIG_SPEC = {"name": "dash-big", "workload": "synthetic", "strategy": "random", "max_trials": 150, "epochs": 3,
            "max_concurrent": 2, "seed": 2, "space": {"lr": {"low": 1e-4, "high": 3.0}, "optimizer": ["sgd", "adam"]}}


# A user's workload whose loss raises (a label of the wrong dtype, as people write it): every trial fails.
FAILING_PACKAGE = """
from lrsearch.workers.workloads.digits import MLPDigits


def _wrong_dtype_loss(output, target):
    raise RuntimeError("expected target dtype to be Long but got Float")


class FailingDigits(MLPDigits):
    name = "failing-digits"
    description = "mlp-digits with a loss that raises"

    def loss_fn(self):
        return _wrong_dtype_loss
"""
FAILING_SPEC = {"name": "dash-failing", "workload": "failing-digits", "strategy": "grid", "epochs": 1,
                "max_retries": 0, "space": {"lr": {"values": [0.01, 0.1]}, "optimizer": ["sgd"]}}


@pytest.fixture(scope="session")
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The service with a finished 6-trial job, a long running job and two jobs with hostile names.

    One for the dashboard's modules (its jobs take half a minute to run), stopped after the last
    test that uses it: the running job trains until then."""
    tmp = tmp_path_factory.mktemp("dashboard")
    (tmp / "workloads" / "failing_digits").mkdir(parents=True)
    (tmp / "workloads" / "failing_digits" / "__init__.py").write_text(FAILING_PACKAGE)
    # An installed plug-in whose entry point names nothing: listed with its load error, refused in jobs.
    dist = tmp / "site" / "broken_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[lrsearch.workloads]\nbroken-plugin = broken_plugin:does_not_exist\n")
    (tmp / "site" / "broken_plugin.py").write_text("")
    pythonpath = os.pathsep.join(p for p in (str(tmp / "site"), os.environ.get("PYTHONPATH")) if p)
    svc = ServiceProcess(f"sqlite:///{tmp / 'lrsearch.db'}", log_path=tmp / "serve.log",
                         env={"LRSEARCH_POLL_INTERVAL": "0.2", "PYTHONPATH": pythonpath,
                              "LRSEARCH_DASHBOARD_SUMMARY_TRIALS": str(SUMMARY_ABOVE)},
                         extra_args=["--workload-path", str(tmp / "workloads")]).start()
    api = Api(svc.url)
    running = None

    def stop() -> None:
        if running is not None:
            try:
                api.http.post(f"/jobs/{running['id']}/cancel")
            except httpx.HTTPError:
                pass
        api.http.close()
        svc.stop()

    stop = once(stop)
    stop_after_last_use(request, Path(__file__).parent, stop)
    try:
        finished = api.submit(FINISHED_SPEC)
        finder = api.submit(FINDER_SPEC)
        stepped = api.submit(STEP_SPEC)
        pbt = api.submit(PBT_SPEC)
        failing = api.submit(FAILING_SPEC)
        big = api.submit(BIG_SPEC)
        api.wait(finished["id"])
        api.wait(finder["id"])
        api.wait(stepped["id"])
        api.wait(pbt["id"])
        api.wait(failing["id"])
        api.wait(big["id"])
        running = api.submit(RUNNING_SPEC)
        tiny = {"workload": "mlp-digits", "strategy": "random", "max_trials": 1, "epochs": 1,
                "max_concurrent": 1, "space": {"lr": {"low": 0.01, "high": 0.1}}}
        hostile = [api.submit({**tiny, "name": SCRIPT_NAME}), api.submit({**tiny, "name": IMG_NAME})]
        yield {"url": svc.url, "api": api, "finished": api.job(finished["id"]), "finder": api.job(finder["id"]),
               "stepped": api.job(stepped["id"]), "pbt": api.job(pbt["id"]), "failing": api.job(failing["id"]), "big": api.job(big["id"]), "running": running,
               "hostile": hostile, "log": tmp / "serve.log"}
    finally:
        stop()


@pytest.fixture(scope="session")
def browser(request: pytest.FixtureRequest, chromium: str) -> Iterator[Any]:
    """One headless Chromium for the dashboard's modules, closed after the last test that uses it."""
    from playwright.sync_api import sync_playwright

    with contextlib.ExitStack() as stack:
        p = stack.enter_context(sync_playwright())
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        stack.callback(b.close)
        stop_after_last_use(request, Path(__file__).parent, once(stack.close))
        yield b


class PageWatch:
    """What a page did that it must not: uncaught errors, dialogs, requests that leave the service."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.external: list[str] = []

    def attach(self, page: Any) -> None:
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("request", lambda req: None if req.url.startswith((self.origin, "data:", "blob:"))
                else self.external.append(req.url))


@pytest.fixture
def page(browser: Any, service: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=service["url"])
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    watch = PageWatch(service["url"])
    watch.attach(pg)
    pg.watch = watch
    yield pg
    context.close()
    assert watch.errors == [], f"uncaught errors in the page: {watch.errors}"
    assert watch.external == [], f"the page fetched from elsewhere: {watch.external}"
    assert watch.dialogs == [], f"the page opened dialogs: {watch.dialogs}"
