"""/docs and /redoc render with no network: their scripts and styles come from the service."""

from __future__ import annotations

from typing import Any

import httpx


def test_swagger_ui_lists_the_operations_from_the_service_alone(page: Any, service: dict[str, Any]) -> None:
    # The page fixture fails the test on any request to another host (there is no CDN to reach).
    page.goto(f"{service['url']}/docs")
    page.locator(".opblock-summary-path", has_text="/api/v1/jobs/{job_id}/best").first.wait_for()
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/jobs" in paths and "/api/v1/jobs/{job_id}/population" in paths


def test_redoc_renders_the_operations_from_the_service_alone(page: Any, service: dict[str, Any]) -> None:
    page.goto(f"{service['url']}/redoc")
    page.get_by_text("Read Best").first.wait_for(state="attached")
    assert page.get_by_text("Read Population").count() > 0


def test_the_docs_pages_name_only_local_assets(service: dict[str, Any]) -> None:
    for path in ("/docs", "/redoc"):
        body = httpx.get(f"{service['url']}{path}").text
        assert "cdn.jsdelivr.net" not in body and "fonts.googleapis.com" not in body
        assert "/static/" in body
    description = httpx.get(f"{service['url']}/openapi.json").json()["info"]["description"]
    for strategy in ("range_test", "auto", "pbt"):
        assert strategy in description
