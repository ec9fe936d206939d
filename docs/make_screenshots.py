"""Screenshots of the dashboard for the docs: docs/dashboard-jobs.png, -job.png and -range-test.png.

Starts a real ``lrsearch serve`` on a throwaway SQLite file, runs a few small jobs, and photographs
the pages in headless Chromium (Debian's ``chromium`` package, driven by Playwright)::

    .venv/bin/python docs/make_screenshots.py [--out docs] [--chromium /usr/bin/chromium]

About a minute or two on a laptop. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

SHOWCASE = {
    "name": "digits: sgd vs adam over 4 schedules", "workload": "mlp-digits", "strategy": "random",
    "max_trials": 28, "max_concurrent": 2, "epochs": 12, "seed": 7,
    "space": {"lr": {"low": 1e-4, "high": 3.0}, "optimizer": ["sgd", "adam"],
              "schedule": ["constant", "step", "cosine", "onecycle"], "warmup_fraction": {"values": [0.0, 0.2]}},
}
OTHERS = [
    {"name": "wine grid", "workload": "mlp-wine", "strategy": "grid", "epochs": 6, "max_concurrent": 2,
     "space": {"lr": {"low": 1e-3, "high": 1.0, "num": 4}, "optimizer": ["adam"], "schedule": ["constant", "cosine"]}},
    {"name": "breast cancer, random", "workload": "logreg-breast-cancer", "strategy": "random", "max_trials": 8,
     "max_concurrent": 2, "epochs": 6, "seed": 1, "space": {"lr": {"low": 1e-4, "high": 1.0}, "optimizer": ["sgd", "adamw"]}},
]
# The range-test card of a range_test job (examples/range-test.yaml).
FINDER = {"name": "digits-range-test", "workload": "mlp-digits", "strategy": "range_test", "epochs": 10,
          "space": {"optimizer": ["sgd", "adam", "rmsprop", "adagrad"]}}
RUNNING = {"name": "cnn digits (running)", "workload": "cnn-digits", "strategy": "random", "max_trials": 40,
           "max_concurrent": 1, "epochs": 30, "seed": 3, "space": {"lr": {"low": 1e-3, "high": 0.3}}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(what)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--num-cpus", type=int, default=max(2, min(4, os.cpu_count() or 2)))
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="lrsearch-shots-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "lrsearch.service.cli", "serve", "--port", str(port),
                             "--db", f"sqlite:///{tmp / 'lrsearch.db'}", "--num-cpus", str(args.num_cpus),
                             "--log-level", "warning"], cwd=REPO, stdout=log, stderr=log, start_new_session=True)
    try:
        api = httpx.Client(base_url=f"{url}/api/v1", timeout=30)

        def healthy() -> bool:
            try:
                return api.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, 120, "the service to start")
        ids = []
        for spec in [FINDER, *OTHERS, SHOWCASE]:  # one after the other: the screenshots need them finished anyway
            job_id = api.post("/jobs", json=spec).raise_for_status().json()["id"]
            wait_for(lambda j=job_id: api.get(f"/jobs/{j}").json()["status"] in ("completed", "failed", "cancelled"),
                     600, f"job {job_id} ({spec['name']}) to finish")
            print(f"job {job_id} ({spec['name']}) done", flush=True)
            ids.append(job_id)
        finder, showcase = ids[0], ids[-1]
        running = api.post("/jobs", json=RUNNING).raise_for_status().json()["id"]
        wait_for(lambda: api.get(f"/jobs/{running}").json()["trial_counts"]["completed"] >= 2, 300, "the running job")

        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
            page.goto(f"{url}/")
            page.wait_for_selector("#jobs tbody tr")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(args.out / "dashboard-jobs.png"))
            page.goto(f"{url}/jobs/{showcase}")
            page.wait_for_function("() => document.getElementById('live').textContent === 'idle'", timeout=30_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(args.out / "dashboard-job.png"), full_page=True)
            page.goto(f"{url}/jobs/{finder}")
            page.wait_for_function("() => document.getElementById('plot-finder').dataset.suggestions", timeout=30_000)
            page.wait_for_timeout(1000)
            page.locator("#finder-card").screenshot(path=str(args.out / "dashboard-range-test.png"))
            browser.close()
        api.post(f"/jobs/{running}/cancel")
        print(f"wrote dashboard-jobs.png, dashboard-job.png and dashboard-range-test.png in {args.out}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
