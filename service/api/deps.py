"""Dependencies shared by the routers: a session per request, the settings, the runner."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from lrsearch.service.config import Settings
from lrsearch.service.runner import JobRunner


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_runner(request: Request) -> JobRunner | None:
    return request.app.state.runner


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RunnerDep = Annotated[JobRunner | None, Depends(get_runner)]
LimitQuery = Annotated[int, Query(ge=1, le=10_000, description="page size")]
OffsetQuery = Annotated[int, Query(ge=0, le=2**31 - 1, description="rows to skip")]
