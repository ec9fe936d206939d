"""The workloads a job can name: built-ins and the plug-ins installed on this server."""

from __future__ import annotations

from fastapi import APIRouter

from lrsearch.service.api import API_PREFIX
from lrsearch.service.schemas import Items, WorkloadPublic
from lrsearch.workers.registry import describe_workloads

router = APIRouter(prefix=f"{API_PREFIX}/workloads", tags=["workloads"])


@router.get("", response_model=Items[WorkloadPublic])
def list_workloads() -> Items[WorkloadPublic]:
    return Items[WorkloadPublic](items=[WorkloadPublic(**w) for w in describe_workloads()])
