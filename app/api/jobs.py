"""GET /jobs/{id}: where a job stands, and its result (the pipeline's Outcome with its stages) once done."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from app.adapters.store import Job, JobState
from app.api.deps import Authorized, StoreDep

router = APIRouter(tags=["jobs"])


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
async def get_job(job_id: int, store: StoreDep, _auth: Authorized) -> JobView:
    job = await run_in_threadpool(store.get, job_id)
    if job is None:
        raise HTTPException(status_code=404, detail="no such job")
    return JobView.of(job)
