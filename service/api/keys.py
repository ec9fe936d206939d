"""API keys (admin scope under --auth): create, list, revoke. Only a key's hash is stored."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from lrsearch.service.api import API_PREFIX
from lrsearch.service.api.deps import SessionDep
from lrsearch.service.auth import create_key, revoke_key
from lrsearch.service.models import ApiKey

router = APIRouter(prefix=f"{API_PREFIX}/keys", tags=["keys"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal["read", "submit", "admin"]
    name: str = Field(default="", max_length=200)


class KeyPublic(BaseModel):
    id: str
    scope: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="the key itself: shown once, never stored")


def _public(row: ApiKey) -> KeyPublic:
    return KeyPublic(id=row.key_id, scope=row.scope, name=row.name, created_at=row.created_at,
                     revoked_at=row.revoked_at)


@router.post("", status_code=201, response_model=KeyCreated)
def create(body: KeyCreate, session: SessionDep) -> KeyCreated:
    row, key = create_key(session, body.scope, body.name)
    session.commit()
    return KeyCreated(**_public(row).model_dump(), key=key)


@router.get("", response_model=dict[str, list[KeyPublic]])
def list_keys(session: SessionDep) -> dict[str, list[KeyPublic]]:
    return {"items": [_public(r) for r in session.scalars(select(ApiKey).order_by(ApiKey.id))]}


@router.post("/{key_id}/revoke", response_model=KeyPublic)
def revoke(key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{8}$")], session: SessionDep) -> KeyPublic:
    row = revoke_key(session, key_id)
    if row is None:
        raise HTTPException(404, f"key {key_id} not found")
    session.commit()
    return _public(row)
