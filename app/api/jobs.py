"""GET /jobs/{id}: where a job stands, and its result (the pipeline's Outcome with its stages) once done."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from app.adapters.store import Job, JobState
from app.api.deps import Authorized, StoreDep

router = APIRouter(tags=["jobs"])

# SQLite's INTEGER is 64-bit: a larger id is a client error (422), not an OverflowError (found by schemathesis).
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class JobView(BaseModel):
    id: int
    state: JobState
    attempts: int
    fingerprint: str
    alertname: str
    alert_status: str
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobView:
        return cls(
            id=job.id, state=job.state, attempts=job.attempts, fingerprint=job.fingerprint,
            alertname=job.alertname, alert_status=job.alert_status, result=job.result, error=job.error,
            created_at=datetime.fromtimestamp(job.created_at, UTC),
            updated_at=datetime.fromtimestamp(job.updated_at, UTC),
        )


@router.get("/jobs/{job_id}", response_model=JobView, summary="One job's state and result",
            responses={404: {"description": "No such job"}})
async def get_job(job_id: JobId, store: StoreDep, _auth: Authorized) -> JobView:
    job = await run_in_threadpool(store.get, job_id)
    if job is None:
        raise HTTPException(status_code=404, detail="no such job")
    return JobView.of(job)
