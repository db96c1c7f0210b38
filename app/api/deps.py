"""Request dependencies as ``Annotated`` aliases: what create_app built, found on ``app.state.services``."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated, cast

from fastapi import Depends, HTTPException, Request

from app.adapters.store import JobStore
from app.api.telemetry import Metrics
from app.dependencies import DependencyHealth
from app.settings import Settings
from app.worker import WorkerPool


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: JobStore
    pool: WorkerPool
    metrics: Metrics
    health: DependencyHealth = field(default_factory=DependencyHealth)  # what each dependency last did


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain ``def`` dependency in the thread pool, a hand-off per request per dependency.
    return cast(Services, request.app.state.services)


async def get_settings(request: Request) -> Settings:
    return (await get_services(request)).settings


async def get_store(request: Request) -> JobStore:
    return (await get_services(request)).store


async def get_pool(request: Request) -> WorkerPool:
    return (await get_services(request)).pool


async def get_metrics(request: Request) -> Metrics:
    return (await get_services(request)).metrics


async def get_health(request: Request) -> DependencyHealth:
    return (await get_services(request)).health


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
PoolDep = Annotated[WorkerPool, Depends(get_pool)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
HealthDep = Annotated[DependencyHealth, Depends(get_health)]


async def require_token(request: Request, settings: SettingsDep) -> None:
    """When a webhook token is configured, demand ``Authorization: Bearer <token>``.

    Only the header counts: a token in the query string would end up in access logs and proxies' logs.
    compare_digest keeps the comparison time independent of how much of the token matched.
    """
    token = settings.webhook_token.get_secret_value() if settings.webhook_token is not None else ""
    if not token:  # an empty AUTOFIX_WEBHOOK_TOKEN means "not set", as for any unset variable
        return
    expected = token.encode()
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    supplied = credentials.strip().encode() if scheme.lower() == "bearer" else b""
    if not hmac.compare_digest(supplied, expected):
        raise HTTPException(
            status_code=401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


Authorized = Annotated[None, Depends(require_token)]
