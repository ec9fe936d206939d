"""Settings read only lrsearch's own environment variables; flags (constructor arguments) win."""

from __future__ import annotations

import pytest

from lrsearch.service.config import Settings


def test_database_url_comes_from_lrsearch_database_url_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LRSEARCH_DATABASE_URL", raising=False)
    # A machine-wide DATABASE_URL belongs to some other program: never ours.
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://someone@elsewhere/theirs")
    assert Settings().database_url == "sqlite:///./lrsearch.db"
    monkeypatch.setenv("LRSEARCH_DATABASE_URL", "sqlite:///./from-env.db")
    assert Settings().database_url == "sqlite:///./from-env.db"
    assert Settings(database_url="sqlite:///./from-flag.db").database_url == "sqlite:///./from-flag.db"


def test_ray_address_and_auth_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")  # Ray's own variable, as Ray's tools read it
    monkeypatch.setenv("LRSEARCH_AUTH", "true")
    settings = Settings()
    assert settings.ray_address == "head:6379" and settings.auth is True
    assert Settings(ray_address="other:6379").ray_address == "other:6379"
