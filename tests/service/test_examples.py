"""Every spec in examples/ is one the service accepts as it stands (the README points users at them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert {p.stem for p in EXAMPLES} >= {"grid", "random", "bayesian", "bayesian-asha", "manual",
                                          "range-test", "auto"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_spec_is_accepted(api_only: TestClient, path: Path) -> None:
    spec = yaml.safe_load(path.read_text())
    r = api_only.post("/api/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["name"] == spec["name"] and job["spec"]["strategy"] == spec["strategy"]
    assert job["total_trials"] is None or job["total_trials"] >= 1
