"""A typed Python client for the lrsearch REST API (the CLI uses it too)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from lrsearch.service.api import API_PREFIX

TERMINAL_JOB_STATUSES = ("completed", "cancelled", "failed")


class LrsearchError(RuntimeError):
    """The server answered with an error (``status`` is the HTTP status)."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def service_url(url: str) -> str:
    """The service's root URL as people type it: ``127.0.0.1:8000`` means ``http://127.0.0.1:8000``,
    and a URL ending in the API's own prefix (``.../api/v1``) means the root above it."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    return url



class Client:
    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None,
                 timeout: float = 30.0) -> None:
        self.url = service_url(url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url + API_PREFIX, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text}
            message = body.get("message") or body.get("detail") if isinstance(body, dict) else body
            if not isinstance(message, str):
                message = str(message)
            if response.status_code == 404 and message == "Not Found":  # no such route: not lrsearch's answer
                message = (f"{response.request.method} {response.request.url} is not an lrsearch route; "
                           f"is {self.url} the service's root URL (like http://127.0.0.1:8000)?")
            raise LrsearchError(response.status_code, message, body.get("detail") if isinstance(body, dict) else None)
        return response.json()

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/jobs", json=spec)

    def jobs(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return self._request("GET", "/jobs", params={"limit": limit, "offset": offset})["items"]

    def job(self, job_id: int) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{job_id}")

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._request("POST", f"/jobs/{job_id}/cancel")

    def best(self, job_id: int, batch_size: int | None = None) -> dict[str, Any]:
        """The job's best trial; with ``batch_size``, its lr scaled from the job's batch size to that one."""
        params = {"batch_size": batch_size} if batch_size is not None else None
        return self._request("GET", f"/jobs/{job_id}/best", params=params)

    def trials(self, job_id: int, status: str | None = None, order: str = "number",
               limit: int | None = None) -> list[dict[str, Any]]:
        """The job's trials in ``order`` (number, rank: the best first, epochs, status; "-" reverses),
        the first ``limit`` of them (all by default, 10,000 per request)."""
        items: list[dict[str, Any]] = []
        while limit is None or len(items) < limit:
            page = 10_000 if limit is None else min(10_000, limit - len(items))
            params: dict[str, Any] = {"limit": page, "offset": len(items), "order": order}
            if status:
                params["status"] = status
            answer = self._request("GET", f"/jobs/{job_id}/trials", params=params)
            items += answer["items"]
            if not answer["items"] or len(items) >= answer["total"]:
                break
        return items

    def metrics(self, job_id: int, number: int) -> list[dict[str, Any]]:
        return self._request("GET", f"/jobs/{job_id}/trials/{number}/metrics")["items"]

    def workloads(self) -> list[dict[str, Any]]:
        return self._request("GET", "/workloads")["items"]

    def wait(self, job_id: int, poll: float = 0.5, timeout: float | None = None,
             on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the job ends; returns the final Job."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_update is not None:
                on_update(job)
            if job["status"] in TERMINAL_JOB_STATUSES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(poll)
