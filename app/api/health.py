"""GET /healthz (the process answers) and GET /readyz (the store answers and the workers run)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import PoolDep, StoreDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: store reachable and workers alive",
            responses={503: {"description": "Not ready"}})
async def readyz(store: StoreDep, pool: PoolDep) -> JSONResponse:
    store_problem = await run_in_threadpool(store.readiness)
    checks = {"store": store_problem is None, "workers": pool.alive()}
    ready = all(checks.values())
    body: dict[str, object] = {"status": "ok" if ready else "unavailable", "checks": checks}
    if store_problem is not None:
        body["reason"] = store_problem
    return JSONResponse(body, status_code=200 if ready else 503)
