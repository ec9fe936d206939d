"""Malformed and hostile requests, as an attacker or a careless user sends them: all 4xx, no 5xx,
and nothing written."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from lrsearch.service.app import create_app
from lrsearch.service.config import Settings
from tests.conftest import BACKENDS, drop_pg_database, make_pg_database

GOOD = {"workload": "mlp-digits", "strategy": "random", "max_trials": 4, "epochs": 2,
        "space": {"lr": {"low": 1e-4, "high": 1.0}}}


@pytest.fixture(scope="module", params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        pg_reason: str | None) -> Iterator[TestClient]:
    """The real app without a job runner, one per backend for the module: every test here checks
    that its request wrote nothing by the count before and after, so one store serves them all."""
    pg_database = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'lrsearch.db'}"
    else:
        if pg_reason:
            print(f"skipping PostgreSQL: {pg_reason}")
            pytest.skip(f"PostgreSQL unreachable ({pg_reason}); CI runs these")
        pg_database, url = make_pg_database()
    try:
        with TestClient(create_app(Settings(database_url=url, run_jobs=False)), raise_server_exceptions=False) as c:
            yield c
    finally:
        if pg_database is not None:
            drop_pg_database(pg_database)


def deep(n: int) -> str:
    return "[" * n + "]" * n


RAW_BODIES = [
    ("not json", b"{oops", "application/json"),
    ("empty", b"", "application/json"),
    ("nan literal lr", b'{"workload": "mlp-digits", "space": {"lr": {"low": NaN, "high": 1}}}', "application/json"),
    ("infinity lr", b'{"workload": "mlp-digits", "space": {"lr": {"low": 1e-3, "high": Infinity}}}',
     "application/json"),
    ("1e999 lr", b'{"workload": "mlp-digits", "space": {"lr": {"low": 1e-3, "high": 1e999}}}', "application/json"),
    ("deeply nested", ('{"workload": "mlp-digits", "space": {"lr": ' + deep(5000) + "}}").encode(),
     "application/json"),
    ("array body", b"[1, 2, 3]", "application/json"),
    ("string body", b'"hello"', "application/json"),
    ("null body", b"null", "application/json"),
    ("form body", b"workload=mlp-digits", "application/x-www-form-urlencoded"),
    ("text body", json.dumps(GOOD).encode(), "text/plain"),
    ("invalid utf-8", b'{"name": "\xff\xfe", "workload": "mlp-digits"}', "application/json"),
    ("duplicate keys to smuggle", b'{"workload": "mlp-digits", "workload": "../../etc/passwd", '
                                  b'"space": {"lr": {"low": 0.1, "high": 1}}}', "application/json"),
]

SPECS = [
    ("code in spec", {**GOOD, "code": "__import__('os').system('id')"}),
    ("import path workload", {**GOOD, "workload": "os:system"}),
    ("file path workload", {**GOOD, "workload": "/etc/passwd"}),
    ("pickle in options", {**GOOD, "options": {"sampler": "gASVCwAAAAAAAACMBXBvc2l4lC4="}}),
    ("huge name", {**GOOD, "name": "x" * 100_000}),
    ("empty name", {**GOOD, "name": ""}),
    ("negative seed", {**GOOD, "seed": -1}),
    ("huge seed", {**GOOD, "seed": 2**70}),
    ("float trials", {**GOOD, "max_trials": 2.5}),
    ("bool trials", {**GOOD, "max_trials": True}),
    ("huge epochs", {**GOOD, "epochs": 10**9}),
    ("huge concurrency", {**GOOD, "max_concurrent": 10**6}),
    ("negative cpu", {**GOOD, "resources": {"cpu": -1}}),
    ("nan gpu", {**GOOD, "resources": {"cpu": 1, "gpu": float("nan")}}),
    ("extra resource", {**GOOD, "resources": {"cpu": 1, "tpu": 1}}),
    ("retries", {**GOOD, "max_retries": 1000}),
    ("space as list", {**GOOD, "space": [1, 2]}),
    ("lr as string", {**GOOD, "space": {"lr": "0.1"}}),
    ("lr values empty", {**GOOD, "space": {"lr": {"values": []}}}),
    ("lr values huge list", {**GOOD, "space": {"lr": {"values": [0.1 + i * 1e-6 for i in range(5000)]}}}),
    ("lr both forms", {**GOOD, "space": {"lr": {"low": 0.1, "high": 1, "values": [0.2]}}}),
    ("negative warmup", {**GOOD, "space": {"lr": {"low": 0.1, "high": 1}, "warmup_fraction": {"values": [-0.5]}}}),
    ("warmup over 1", {**GOOD, "space": {"lr": {"low": 0.1, "high": 1}, "warmup_fraction": {"values": [2.0]}}}),
    ("optimizer dict", {**GOOD, "space": {"lr": {"low": 0.1, "high": 1}, "optimizer": {"sgd": 1}}}),
    ("optimizer empty", {**GOOD, "space": {"lr": {"low": 0.1, "high": 1}, "optimizer": []}}),
    ("nesterov string", {**GOOD, "space": {"lr": {"low": 0.1, "high": 1}, "nesterov": ["yes"]}}),
    ("momentum above 1", {**GOOD, "space": {"lr": {"low": 0.1, "high": 1}, "momentum": {"values": [5]}}}),
    ("grid of a million", {**GOOD, "strategy": "grid", "max_trials": None,
                           "space": {"lr": {"low": 1e-5, "high": 1, "num": 1000},
                                     "momentum": {"low": 0, "high": 0.99, "num": 1000}}}),
    ("manual 100k configs", {"workload": "mlp-digits", "strategy": "manual",
                             "configs": [{"lr": 0.1}] * 100_000}),
    ("manual config not object", {"workload": "mlp-digits", "strategy": "manual", "configs": [0.1]}),
    ("manual unknown key", {"workload": "mlp-digits", "strategy": "manual", "configs": [{"lr": 0.1, "x": 1}]}),
    ("early stopping unknown", {**GOOD, "early_stopping": {"kind": "magic"}}),
    ("early stopping grace", {**GOOD, "early_stopping": {"kind": "asha", "grace_epochs": 0}}),
    ("bad sampler", {**GOOD, "strategy": "bayesian", "options": {"sampler": "genetic"}}),
    ("lr window nan", {**GOOD, "strategy": "bayesian", "options": {"lr_window_decades": float("nan")}}),
    ("lr window huge", {**GOOD, "strategy": "bayesian", "options": {"lr_window_decades": 1e308}}),
    ("lr window for auto", {**GOOD, "strategy": "auto", "options": {"lr_window_decades": 1.0}}),
]

BAD_PATHS = [
    ("GET", "/api/v1/jobs/abc"), ("GET", "/api/v1/jobs/-1"), ("GET", "/api/v1/jobs/0"),
    ("GET", "/api/v1/jobs/99999999999999999999999"), ("GET", "/api/v1/jobs/1.5"),
    ("GET", "/api/v1/jobs/1/trials/abc/metrics"), ("GET", "/api/v1/jobs/1/trials/-1/metrics"),
    ("GET", "/api/v1/jobs?limit=-1"), ("GET", "/api/v1/jobs?limit=abc"), ("GET", "/api/v1/jobs?offset=-5"),
    ("GET", "/api/v1/jobs?limit=100000000"), ("GET", "/api/v1/jobs/1/trials?status=exploded"),
    ("GET", "/api/v1/jobs/1/export?format=pickle"), ("POST", "/api/v1/jobs/abc/cancel"),
    ("DELETE", "/api/v1/jobs/1"), ("PUT", "/api/v1/jobs"), ("GET", "/api/v1/../../etc/passwd"),
    ("GET", "/static/../../pyproject.toml"), ("GET", "/api/v1/keys/zzz/revoke"),
]


def count(api: TestClient) -> int:
    return api.get("/api/v1/jobs").json()["total"]


@pytest.mark.parametrize("case", RAW_BODIES, ids=[c[0] for c in RAW_BODIES])
def test_raw_bodies(api: TestClient, case: tuple) -> None:
    _, body, content_type = case
    before = count(api)
    r = api.post("/api/v1/jobs", content=body, headers={"content-type": content_type})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert count(api) == before


@pytest.mark.parametrize("case", SPECS, ids=[c[0] for c in SPECS])
def test_hostile_specs(api: TestClient, case: tuple) -> None:
    _, spec = case
    before = count(api)
    body = json.dumps(spec, allow_nan=True).encode()
    r = api.post("/api/v1/jobs", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert count(api) == before


@pytest.mark.parametrize(("method", "path"), BAD_PATHS, ids=[f"{m} {p}" for m, p in BAD_PATHS])
def test_bad_paths_and_params(api: TestClient, method: str, path: str) -> None:
    before = count(api)
    r = api.request(method, path)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert count(api) == before


def test_8_mib_body_gets_413(api: TestClient) -> None:
    before = count(api)
    big = b'{"workload": "mlp-digits", "name": "' + b"a" * (8 * 1024 * 1024) + b'"}'
    r = api.post("/api/v1/jobs", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    # Without a content-length (chunked), the cap holds too.
    def chunks() -> Iterator[bytes]:
        for _ in range(9):
            yield b"a" * (1024 * 1024)

    r = api.post("/api/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert count(api) == before


def test_a_name_with_markup_is_stored_as_text(api: TestClient) -> None:
    r = api.post("/api/v1/jobs", json={**GOOD, "name": "<script>alert(1)</script>"})
    assert r.status_code == 201 and r.json()["name"] == "<script>alert(1)</script>"
