"""GET /report?days=N: per cause, what the bot decided over the last N days and what became of its PRs.

The same numbers as `autofix report --json` (app/reports.py), read from the job store; the same token as /jobs.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from app import reports
from app.api.deps import Authorized, StoreDep

router = APIRouter(tags=["report"])

Days = Annotated[float, Query(gt=0, le=3660, allow_inf_nan=False, description="the window, in days back from now")]


@router.get("/report", summary="Per cause: PRs opened, merged, effective, reverted, no_fix by reason, median times")
async def get_report(store: StoreDep, _auth: Authorized, days: Days = 30.0) -> dict[str, Any]:
    report = await run_in_threadpool(reports.read, store, now=time.time(), days=days)
    return report.as_json()
