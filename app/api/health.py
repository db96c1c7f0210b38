"""GET /healthz (the process answers) and GET /readyz (the store answers, the workers run, no job is stuck, and
no dependency a pull request needs is down).

/readyz lists every dependency with its state (app.dependencies): the cluster API, git or the forge down makes
it 503 (no fix can be opened); MLflow, the LLM or Prometheus down leaves it 200 with status "degraded".
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import HealthDep, PoolDep, StoreDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: store reachable, workers alive, no job stuck past its budget",
            responses={503: {"description": "Not ready"}})
async def readyz(store: StoreDep, pool: PoolDep, health: HealthDep) -> JSONResponse:
    store_problem = await run_in_threadpool(store.readiness)
    stuck = pool.stuck()  # handlers still running past AUTOFIX_JOB_BUDGET_SECONDS, oldest first
    deps = health.readiness()
    checks = {"store": store_problem is None, "workers": pool.alive(), "jobs_within_budget": not stuck,
              "dependencies": deps.ready}
    ready = all(checks.values())
    status = "unavailable" if not ready else "degraded" if deps.degraded else "ok"
    body: dict[str, object] = {"status": status, "checks": checks,
                               "dependencies": {s.name: s.as_dict() for s in health.snapshot()}}
    stuck_problem = stuck[0].reason() + (f" (and {len(stuck) - 1} more)" if len(stuck) > 1 else "") if stuck else None
    reasons = [r for r in (store_problem, stuck_problem, deps.reason) if r]
    if reasons:
        body["reason"] = "; ".join(reasons)
    return JSONResponse(body, status_code=200 if ready else 503)
