"""`lrsearch serve --auth`: nobody in without a key; scopes; revocation; submission rate limits."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, ServiceProcess, free_port

SPEC = {"workload": "synthetic", "max_trials": 1, "epochs": 1, "space": {"lr": {"low": 0.01, "high": 0.1}}}


def create_key(db: str, scope: str) -> str:
    out = subprocess.run([sys.executable, "-m", "lrsearch.service.cli", "keys", "create", "--scope", scope, "--db", db],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.split()[-1]  # the key is the last word


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("auth")
    db = f"sqlite:///{tmp / 'auth.db'}"
    keys = {scope: create_key(db, scope) for scope in ("read", "submit", "admin")}
    service = ServiceProcess(db, log_path=tmp / "serve.log", extra_args=["--auth"],
                             env={"LRSEARCH_SUBMIT_BURST": "3", "LRSEARCH_SUBMIT_RATE_PER_MINUTE": "1",
                                  "LRSEARCH_PREWARM_ACTORS": "0"}).start()
    yield service, keys
    service.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/healthz", "/api/v1/workloads", "/metrics", "/",
                                  "/jobs/1", "/docs", "/openapi.json", "/api/v1/jobs/1/trials", "/no-such-page"])
def test_no_or_wrong_key_is_401_everywhere(secured: tuple[ServiceProcess, dict[str, str]], path: str) -> None:
    service, _ = secured
    assert httpx.get(service.url + path).status_code == 401
    assert httpx.get(service.url + path, headers=bearer("lrs_00000000_wrong")).status_code == 401
    assert httpx.get(service.url + path, headers=bearer("garbage")).status_code == 401
    assert httpx.post(f"{service.url}/api/v1/jobs", json=SPEC).status_code == 401


def test_liveness_needs_no_key_and_says_nothing_else(secured: tuple[ServiceProcess, dict[str, str]]) -> None:
    """A load balancer's probe holds no key: /livez answers it, with nothing a caller could use."""
    service, _ = secured
    for headers in ({}, bearer("lrs_00000000_wrong")):
        r = httpx.get(f"{service.url}/livez", headers=headers)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert httpx.post(f"{service.url}/livez").status_code == 405  # only GET: nothing else is open
    assert httpx.get(f"{service.url}/livez/x").status_code == 401  # the exact path, no more


def test_dashboard_without_key_shows_the_login_page(secured: tuple[ServiceProcess, dict[str, str]]) -> None:
    service, keys = secured
    r = httpx.get(service.url + "/", headers={"accept": "text/html"})
    assert r.status_code == 401 and "<form" in r.text and "API key" in r.text
    with httpx.Client(base_url=service.url) as browser:
        bad = browser.post("/login", data={"key": "lrs_00000000_nope", "next": "/"})
        assert bad.status_code == 401
        # Every form of the sign-in page refuses to be framed (no clickjacking) and to be sniffed.
        for page in (r, bad, browser.get("/login")):
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
            assert page.headers["x-content-type-options"] == "nosniff"
        ok = browser.post("/login", data={"key": keys["read"], "next": "//evil.example/"})
        assert ok.status_code == 303 and ok.headers["location"] == "/"  # never an open redirect
        assert "httponly" in ok.headers["set-cookie"].lower()
        assert browser.get("/").status_code == 200  # the cookie carries the key
        assert browser.get("/api/v1/jobs").status_code == 200
        browser.get("/logout")
        assert browser.get("/api/v1/jobs").status_code == 401


def test_scopes(secured: tuple[ServiceProcess, dict[str, str]]) -> None:
    service, keys = secured
    url = service.url
    assert httpx.get(f"{url}/api/v1/jobs", headers=bearer(keys["read"])).status_code == 200
    before = httpx.get(f"{url}/api/v1/jobs", headers=bearer(keys["read"])).json()["total"]
    r = httpx.post(f"{url}/api/v1/jobs", json=SPEC, headers=bearer(keys["read"]))
    assert r.status_code == 403 and "submit" in r.json()["detail"]
    assert httpx.get(f"{url}/api/v1/jobs", headers=bearer(keys["read"])).json()["total"] == before
    r = httpx.post(f"{url}/api/v1/jobs", json=SPEC, headers=bearer(keys["submit"]))
    assert r.status_code == 201
    job_id = r.json()["id"]
    assert httpx.post(f"{url}/api/v1/jobs/{job_id}/cancel", headers=bearer(keys["read"])).status_code == 403
    # Keys are an admin's business.
    assert httpx.get(f"{url}/api/v1/keys", headers=bearer(keys["submit"])).status_code == 403
    created = httpx.post(f"{url}/api/v1/keys", json={"scope": "read", "name": "ci"}, headers=bearer(keys["admin"]))
    assert created.status_code == 201
    new_key = created.json()["key"]
    listing = httpx.get(f"{url}/api/v1/keys", headers=bearer(keys["admin"])).text
    assert new_key not in listing and created.json()["id"] in listing  # the key itself is never shown again
    assert httpx.get(f"{url}/api/v1/jobs", headers=bearer(new_key)).status_code == 200
    revoked = httpx.post(f"{url}/api/v1/keys/{created.json()['id']}/revoke", headers=bearer(keys["admin"]))
    assert revoked.status_code == 200
    deadline = time.monotonic() + 15  # verified keys are cached for a few seconds
    while httpx.get(f"{url}/api/v1/jobs", headers=bearer(new_key)).status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_submissions_are_rate_limited_per_key(secured: tuple[ServiceProcess, dict[str, str]], tmp_path: Path) -> None:
    service, keys = secured
    db = service.db_url
    key = create_key(db, "submit")
    codes = [httpx.post(f"{service.url}/api/v1/jobs", json=SPEC, headers=bearer(key)).status_code for _ in range(5)]
    assert codes[:3] == [201, 201, 201] and codes[3:] == [429, 429]
    r = httpx.post(f"{service.url}/api/v1/jobs", json=SPEC, headers=bearer(key))
    assert int(r.headers["retry-after"]) > 0
    # Another key has its own budget.
    assert httpx.post(f"{service.url}/api/v1/jobs", json=SPEC, headers=bearer(create_key(db, "submit"))).status_code == 201


def test_cli_passes_the_token(secured: tuple[ServiceProcess, dict[str, str]]) -> None:
    service, keys = secured
    cmd = [sys.executable, "-m", "lrsearch.service.cli", "jobs", "--url", service.url]
    assert subprocess.run(cmd, cwd=REPO, capture_output=True, timeout=60).returncode != 0
    out = subprocess.run([*cmd, "--token", keys["read"]], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_auth_from_the_environment(tmp_path: Path) -> None:
    # LRSEARCH_AUTH=true does what --auth does (a deployment sets it in the environment).
    db = f"sqlite:///{tmp_path / 'env-auth.db'}"
    key = create_key(db, "read")
    service = ServiceProcess(db, log_path=tmp_path / "serve.log",
                             env={"LRSEARCH_AUTH": "true", "LRSEARCH_PREWARM_ACTORS": "0"}).start()
    try:
        assert httpx.get(f"{service.url}/api/v1/jobs").status_code == 401
        assert httpx.get(f"{service.url}/api/v1/jobs", headers=bearer(key)).status_code == 200
    finally:
        service.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_public_address_without_auth_refuses_to_start(host: str, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "lrsearch.service.cli", "serve", "--host", host, "--port", str(free_port()),
                          "--db", f"sqlite:///{tmp_path / 'x.db'}"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "without --auth" in out.stderr
    assert not (tmp_path / "x.db").exists()  # refused before touching anything
