"""Workload packages that are not installed anywhere, given with --workload-path: listed, validated
and shipped to every Ray worker, so trials run on nodes that have nothing of them."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lrsearch.workers import registry
from tests.conftest import ServiceProcess, wait_for_job_at

PACKAGE = '''
"""A workload package that is only a folder: nothing installs it."""
from torch import nn

from lrsearch.workers.workloads.digits import MLPDigits


class WideDigits(MLPDigits):
    name = "wide-digits"
    description = "MLP 64-256-10 on the digits, from a workload path."

    def build_model(self, seed: int) -> nn.Module:
        return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
'''


def write_packages(root: Path) -> Path:
    (root / "wide_digits_pkg").mkdir(parents=True)
    (root / "wide_digits_pkg" / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    (root / "broken_pkg").mkdir()
    (root / "broken_pkg" / "__init__.py").write_text("raise RuntimeError('this package is broken')\n")
    (root / "clash_pkg").mkdir()  # a built-in's name: the built-in wins
    (root / "clash_pkg" / "__init__.py").write_text(
        "from lrsearch.workers.workloads.digits import MLPDigits\n\nclass Other(MLPDigits):\n    name = 'mlp-digits'\n")
    (root / "not_a_package").mkdir()
    return root


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sys, "path", list(sys.path))
    # Recorded by monkeypatch (set, then removed), so what use_workload_path writes is undone after.
    monkeypatch.setenv(registry.WORKLOAD_MODULES_ENV, "{}")
    monkeypatch.delenv(registry.WORKLOAD_MODULES_ENV)
    registry.clear_cache()
    yield
    for name in ("wide_digits_pkg", "broken_pkg", "clash_pkg"):
        sys.modules.pop(name, None)
    registry.clear_cache()


def test_a_workload_path_is_scanned_and_its_workloads_named(tmp_path: Path, isolated_registry: None) -> None:
    root = write_packages(tmp_path / "workloads")
    with pytest.warns(UserWarning, match="'mlp-digits'.*ignored"):
        packages = registry.use_workload_path(root)
    assert packages == [str(root / n) for n in ("broken_pkg", "clash_pkg", "wide_digits_pkg")]
    assert registry.workload_names() == [*registry.BUILTIN_WORKLOADS, "wide-digits"]
    workload = registry.get_workload("wide-digits")
    assert type(workload).__name__ == "WideDigits" and registry.workload_metrics("wide-digits")["val_accuracy"] == "max"
    described = {d["name"]: d for d in registry.describe_workloads()}
    assert described["wide-digits"]["description"].endswith("from a workload path.")
    assert type(registry.get_workload("mlp-digits")).__module__ == "lrsearch.workers.workloads.digits"


def test_a_workload_path_must_be_a_directory(tmp_path: Path, isolated_registry: None) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        registry.use_workload_path(tmp_path / "missing")


# Also the test of a service joined to an existing cluster: its trials are placed on both nodes.
def test_a_workload_path_runs_on_both_nodes_of_a_cluster(db_url: str, two_node_cluster: tuple[str, dict[str, str]],
                                                         tmp_path: Path) -> None:
    address, env = two_node_cluster
    root = write_packages(tmp_path / "workloads")
    service = ServiceProcess(db_url, env={**env, "RAY_ADDRESS": address}, log_path=tmp_path / "serve.log",
                             extra_args=["--workload-path", str(root)])
    service.start()
    try:
        listing = [w["name"] for w in httpx.get(f"{service.url}/api/v1/workloads", timeout=60).json()["items"]]
        assert "wide-digits" in listing and "broken_pkg" not in listing
        spec = {"workload": "wide-digits", "strategy": "grid", "epochs": 4, "max_concurrent": 2,
                "space": {"lr": {"values": [0.003, 0.01, 0.03, 0.1, 0.2, 0.3]}, "optimizer": ["sgd"]}}
        created = httpx.post(f"{service.url}/api/v1/jobs", json=spec)
        assert created.status_code == 201, created.text
        job = wait_for_job_at(service.url, created.json()["id"])
        trials = httpx.get(f"{service.url}/api/v1/jobs/{job['id']}/trials").json()["items"]
        assert job["status"] == "completed" and all(t["status"] == "completed" for t in trials), trials
        # The service joined the `ray start` cluster and placed trials on both of its nodes.
        assert len({t["node"] for t in trials}) == 2 and None not in {t["node"] for t in trials}
        assert "2 node" in httpx.get(f"{service.url}/api/v1/healthz").json()["ray"]
    finally:
        service.stop()
