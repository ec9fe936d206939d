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
