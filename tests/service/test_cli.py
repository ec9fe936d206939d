"""The CLI against a real uvicorn server: submit --wait, best, jobs, status, cancel, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, ServiceProcess, free_port


@pytest.fixture
def server(shared_service: ServiceProcess) -> ServiceProcess:
    """The run's shared real server (tests/service/conftest.py)."""
    return shared_service


def lrsearch(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lrsearch.service.cli", *args]
    if url:
        cmd += ["--url", url]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)


def test_submit_wait_then_best(server: ServiceProcess, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: cli-grid\nworkload: mlp-digits\nstrategy: grid\nepochs: 3\n"
                    "space:\n  lr: {low: 0.001, high: 0.1, num: 3}\n")
    out = lrsearch("submit", str(spec), "--wait", url=server.url)
    assert out.returncode == 0, out.stderr
    assert "completed" in out.stdout and "best: trial" in out.stdout
    import re

    job_id = int(re.search(r"job (\d+) completed", out.stdout).group(1))
    assert json.loads(lrsearch("status", str(job_id), url=server.url).stdout)["status"] == "completed"
    best = lrsearch("best", str(job_id), url=server.url)
    assert best.returncode == 0 and "lr=0.1" in best.stdout
    # The best trial first, and only it: ordered and cut on the server.
    top = lrsearch("trials", str(job_id), "--order", "rank", "--limit", "1", url=server.url)
    assert top.returncode == 0, top.stderr
    assert "0.1 " in top.stdout and "0.001" not in top.stdout and "0.01 " not in top.stdout
    listing = lrsearch("jobs", url=server.url)
    assert "cli-grid" in listing.stdout and "completed" in listing.stdout


def test_submit_json_prints_the_id_and_cancel(server: ServiceProcess, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"workload": "mlp-digits", "max_trials": 50, "epochs": 50,
                                "space": {"lr": {"low": 1e-3, "high": 0.1}}}))
    out = lrsearch("submit", str(spec), url=server.url)
    assert out.returncode == 0, out.stderr
    job_id = int(out.stdout.strip())
    out = lrsearch("cancel", str(job_id), url=server.url)
    assert out.returncode == 0 and f"job {job_id}" in out.stdout


def test_rejected_spec_shows_the_field_and_exits_4(server: ServiceProcess, tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("workload: mlp-digits\nspace:\n  lr: {low: 1.0, high: 0.1}\n")
    out = lrsearch("submit", str(spec), url=server.url)
    assert out.returncode == 4
    assert "space.lr.low" in out.stderr


def test_unreachable_server_exits_3() -> None:
    out = lrsearch("jobs", url=f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 3 and "cannot reach" in out.stderr


def test_unknown_job_exits_5(server: ServiceProcess) -> None:
    out = lrsearch("best", "424242", url=server.url)
    assert out.returncode == 5 and "not found" in out.stderr


def test_range_test_job_best_prints_the_suggestions(server: ServiceProcess, tmp_path: Path) -> None:
    spec = tmp_path / "finder.yaml"
    spec.write_text("name: cli-finder\nworkload: mlp-digits\nstrategy: range_test\nepochs: 2\n"
                    "space:\n  optimizer: [sgd, adam]\noptions: {num_steps: 40, repeats: 1, verify: false}\n")
    out = lrsearch("submit", str(spec), "--wait", url=server.url)
    assert out.returncode == 0, out.stderr
    assert "range-test suggestion, not trained" in out.stdout
    assert "range-test suggestions: sgd=" in out.stdout and "adam=" in out.stdout


@pytest.mark.parametrize("text, words", [
    ("workload: [unclosed\n", "not a JobSpec"),
    ("- just\n- a list\n", "one object"),
    ("workload: mlp-digits\nname: 2024-01-01\n", "JSON cannot carry"),
])
def test_a_file_that_is_no_spec_exits_4_without_a_traceback(server: ServiceProcess, tmp_path: Path,
                                                           text: str, words: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    out = lrsearch("submit", str(spec), url=server.url)
    assert out.returncode == 4, out.stderr
    said = " ".join(out.stderr.split())  # rich wraps long lines
    assert words in said and "Traceback" not in said


def test_a_bad_job_id_is_a_rejected_request_not_a_spec(server: ServiceProcess) -> None:
    out = lrsearch("status", "0", url=server.url)
    assert out.returncode == 4
    assert "rejected the request" in out.stderr and "job_id" in out.stderr


def completed_manual_job(server: ServiceProcess, tmp_path: Path) -> str:
    """The id of a finished one-trial job (sgd at lr 0.05), submitted with the CLI."""
    spec = tmp_path / "manual.yaml"
    spec.write_text("workload: mlp-digits\nstrategy: manual\nepochs: 2\nconfigs:\n  - {lr: 0.05, optimizer: sgd}\n")
    out = lrsearch("submit", str(spec), "--wait", url=server.url)
    assert out.returncode == 0, out.stderr
    import re

    return re.search(r"job (\d+) completed", out.stdout).group(1)


def test_best_scales_the_lr_to_another_batch_size(server: ServiceProcess, tmp_path: Path) -> None:
    job_id = completed_manual_job(server, tmp_path)
    from lrsearch.workers.registry import workload_batch_size

    batch = workload_batch_size("mlp-digits")
    out = lrsearch("best", job_id, "--batch-size", str(batch * 4), url=server.url)
    assert out.returncode == 0, out.stderr
    assert "lr=0.2 " in out.stdout  # sgd: linear in the batch size
    assert f"lr scaled from 0.05 at batch size {batch} to batch size {batch * 4} (linear)" in out.stdout
    assert '"lr": 0.2' in out.stdout and '"lr": 0.05' not in out.stdout  # the config to train with, scaled
    assert "best sgd: trial 0" in out.stdout and "as good (" in out.stdout  # the interval and the best per optimizer


def test_export_optuna_to_a_taken_study_name_says_so(server: ServiceProcess, tmp_path: Path) -> None:
    job_id = completed_manual_job(server, tmp_path)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = lrsearch("export-optuna", job_id, "--storage", storage, url=server.url)
    assert first.returncode == 0, first.stderr
    again = lrsearch("export-optuna", job_id, "--storage", storage, url=server.url)
    assert again.returncode == 1
    assert "already exists" in again.stderr and "Traceback" not in again.stderr


# -- what a new user trips over (issue 33) -------------------------------------------------------
def test_a_misplaced_or_misspelt_key_gets_a_hint_and_the_file_is_named(server: ServiceProcess,
                                                                        tmp_path: Path) -> None:
    spec = tmp_path / "typos.yaml"
    spec.write_text("workload: mlp-digits\nepoch: 2\nlr: {low: 0.001, high: 0.1}\n"
                    "space:\n  optimzer: [sgd]\n  lr: {low: 0.001, high: 0.1}\n")
    out = lrsearch("submit", str(spec), url=server.url)
    assert out.returncode == 4, out.stderr
    said = " ".join(out.stderr.split())
    assert f"rejected the spec in {spec}" in said
    assert "epoch: unknown field 'epoch'; did you mean 'epochs'?" in said
    assert "lr: unknown field 'lr': it belongs under 'space' (space.lr)" in said
    assert "space.optimzer: unknown dimension 'optimzer'; did you mean 'optimizer'?" in said
    broken = tmp_path / "broken.yaml"
    broken.write_text("workload: mlp-digits\nspace:\n  lr: {low: 0.001\n")
    out = lrsearch("submit", str(broken), url=server.url)
    assert out.returncode == 4 and str(broken) in " ".join(out.stderr.split())


@pytest.mark.parametrize("form", ["127.0.0.1:{port}", "http://127.0.0.1:{port}/api/v1", "http://127.0.0.1:{port}/"])
def test_the_url_may_omit_the_scheme_or_carry_the_api_prefix(server: ServiceProcess, form: str) -> None:
    out = lrsearch("jobs", url=form.format(port=server.port))
    assert out.returncode == 0, out.stderr


def test_a_wrong_url_says_which_url_was_tried(server: ServiceProcess) -> None:
    out = lrsearch("best", "1", url=f"{server.url}/lrsearch")
    said = " ".join(out.stderr.split())
    assert out.returncode == 5 and f"{server.url}/lrsearch/api/v1/jobs/1/best is not an lrsearch route" in said
    assert "root URL" in said
    down = lrsearch("jobs", url=f"127.0.0.1:{free_port()}")
    said = " ".join(down.stderr.split())
    assert down.returncode == 3 and "Is `lrsearch serve` running there?" in said and "Start it" not in said
    odd = lrsearch("jobs", url="ftp://127.0.0.1:1")
    assert odd.returncode == 1 and "is not the service's URL" in " ".join(odd.stderr.split())


def test_ctrl_c_while_waiting_says_the_job_keeps_running(server: ServiceProcess, tmp_path: Path) -> None:
    import signal
    import time

    spec = tmp_path / "long.yaml"
    spec.write_text("name: cli-interrupted\nworkload: mlp-digits\nstrategy: manual\nepochs: 1000\n"
                    "configs:\n  - {lr: 0.01, optimizer: sgd}\n")
    proc = subprocess.Popen([sys.executable, "-m", "lrsearch.service.cli", "submit", str(spec), "--wait",
                             "--url", server.url], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # "job N (cli-interrupted) submitted"
        assert "submitted" in first, first
        job_id = first.split()[1]
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=30)
    finally:
        proc.kill()
    said = " ".join(rest.split())
    assert proc.returncode == 130, said
    assert f"job {job_id} keeps running" in said and f"lrsearch cancel {job_id}" in said and "Traceback" not in said
    status = json.loads(lrsearch("status", job_id, url=server.url).stdout)["status"]
    assert status in ("queued", "running")
    assert lrsearch("cancel", job_id, url=server.url).returncode == 0


def test_jobs_fit_an_80_column_terminal(server: ServiceProcess, tmp_path: Path) -> None:
    import os
    import re

    completed_manual_job(server, tmp_path)
    spec = tmp_path / "long-name.json"
    name = "digits-random-search-with-a-long-name"
    spec.write_text(json.dumps({"name": name, "workload": "mlp-digits", "strategy": "manual", "epochs": 1,
                                "configs": [{"lr": 0.01}]}))
    assert lrsearch("submit", str(spec), url=server.url).returncode == 0
    out = subprocess.run([sys.executable, "-m", "lrsearch.service.cli", "jobs", "--url", server.url], cwd=REPO,
                         capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, out.stdout
    assert "…" not in out.stdout
    assert re.search(r"\b\d\d-\d\d \d\d:\d\d\b", out.stdout)  # the time whole
    assert name[:16] in out.stdout  # wrapped over lines, not cut
    assert "cli-interrupted" in out.stdout or "completed" in out.stdout


def test_a_busy_port_fails_at_once_and_starts_no_ray(tmp_path: Path) -> None:
    import os
    import socket
    import time

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "lrsearch.service.cli", "serve", "--port", str(port),
                              "--db", f"sqlite:///{tmp_path / 'lrsearch.db'}"], cwd=REPO, capture_output=True,
                             text=True, timeout=60, env={**os.environ, "RAY_TMPDIR": str(tmp_path / "ray")})
        took = time.monotonic() - started
    said = " ".join(out.stderr.split())
    assert out.returncode == 1 and f"port {port} on 127.0.0.1 is in use" in said and "--port" in said
    assert not (tmp_path / "ray").exists() and not (tmp_path / "lrsearch.db").exists()  # nothing started
    assert took < 30


def test_successful_reads_leave_no_access_log_lines(server: ServiceProcess) -> None:
    import httpx

    assert server.log_path is not None
    for _ in range(3):
        httpx.get(f"{server.url}/api/v1/jobs").raise_for_status()
    httpx.get(f"{server.url}/api/v1/jobs/987654")  # a 404: logged
    httpx.post(f"{server.url}/api/v1/jobs/987654/cancel")  # a write: logged
    import time

    time.sleep(0.5)
    log = server.log_path.read_text()
    assert '"GET /api/v1/jobs/987654 HTTP/1.1" 404' in log and '"POST /api/v1/jobs/987654/cancel' in log
    assert '"GET /api/v1/jobs HTTP/1.1" 200' not in log
    assert "Running upgrade" in log and "setup plugin" not in log  # the start-up says what it did, no more
    assert f"dashboard at {server.url}/, API docs at {server.url}/docs" in log  # and where to go


def _serve_fails(tmp_path: Path, *args: str, wait: float = 3.0) -> tuple[int, str, float]:
    """Run `lrsearch serve` expected to give up; (exit status, what it said, seconds it took)."""
    import os
    import time

    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "lrsearch.service.cli", "serve", "--port", str(free_port()), *args],
                         cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "LRSEARCH_STARTUP_WAIT_SECONDS": str(wait),
                              "RAY_TMPDIR": str(tmp_path / "ray")})
    return out.returncode, " ".join((out.stdout + out.stderr).split()), time.monotonic() - started


def test_serve_gives_up_on_a_ray_address_where_nothing_answers_and_names_the_fix(tmp_path: Path) -> None:
    port = free_port()
    status, said, took = _serve_fails(tmp_path, "--db", f"sqlite:///{tmp_path / 'lrsearch.db'}",
                                      "--ray-address", f"127.0.0.1:{port}")
    assert status == 3, said
    assert f"waiting for the Ray cluster at 127.0.0.1:{port}" in said  # said while it waits
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in said and f"ray start --head --port={port}" in said
    assert "Traceback" not in said and "\x1b[" not in said
    assert took < 3 + 30  # the wait, then out (ray.init alone would have taken 60 s)
    assert not (tmp_path / "ray").exists() and not (tmp_path / "lrsearch.db").exists()  # nothing started


def test_serve_refuses_a_ray_client_address_with_what_to_use_instead(tmp_path: Path) -> None:
    status, said, took = _serve_fails(tmp_path, "--db", f"sqlite:///{tmp_path / 'lrsearch.db'}",
                                      "--ray-address", "ray://head.example:10001")
    assert status == 3 and "Ray Client cannot stream" in said and "--ray-address head.example:6379" in said, said
    assert "Traceback" not in said and took < 30


def test_serve_waits_for_its_database_then_says_where_it_looked(tmp_path: Path) -> None:
    port = free_port()
    status, said, _ = _serve_fails(tmp_path, "--db", f"postgresql+psycopg://lrsearch:secret@127.0.0.1:{port}/none")
    assert status == 3, said
    assert f"waiting for the database at postgresql+psycopg://lrsearch:***@127.0.0.1:{port}/none" in said
    assert "does not answer" in said and "secret" not in said and "Traceback" not in said
    assert not (tmp_path / "ray").exists()  # Ray is started only once the store answers
