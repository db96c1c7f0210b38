"""POST /webhooks/alertmanager: validate, store durably, answer fast; the workers do the rest.

Alertmanager retries 5xx and drops 4xx until the next group_interval (FACTS.md), so: 2xx for every
well-formed payload (the pipeline decides later what to ignore), 4xx for what retrying cannot fix
(auth, size, shape), 503 only when the store is unavailable.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from app.adapters.store import EnqueueResult, StoreUnavailable
from app.api.deps import Authorized, MetricsDep, PoolDep, StoreDep
from app.models.alertmanager import DeliveryKeys, WebhookPayload

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

MAX_BODY_BYTES = 1024 * 1024  # real payloads are a few KiB; MAX_ALERTS alerts fit well within this
# Why this request was refused, for the "webhook rejected" line the request log writes (app/main.py), kept on
# request.state: what a 4xx detail says, never the body or a header.
REJECTION_DETAIL = "rejection_detail"
MAX_DETAIL_PROBLEMS = 5


class Accepted(BaseModel):
    jobs: list[int]
    duplicates: int


class PayloadTooLarge(Exception):
    """The body is over MAX_BODY_BYTES."""


async def read_bounded(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refusing it early by Content-Length and, for chunked bodies, as soon as it grows past limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _validation_problems(err: ValidationError) -> list[dict[str, Any]]:
    # No input values in the answer: they may be large, and they are the sender's data, not ours to echo.
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in err.errors(include_url=False)]


def parse_payload(body: bytes) -> WebhookPayload:
    """The payload, or HTTPException(422) saying what is wrong with it.

    pydantic's own JSON parser: one pass (faster than json.loads + validate, see benchmarks/intake.py), and
    it refuses deep nesting and invalid UTF-8 with a clear error where json.loads raises RecursionError."""
    try:
        return WebhookPayload.model_validate_json(body)
    except ValidationError as err:
        problems = _validation_problems(err)
        if any(p["type"] == "json_invalid" for p in problems):
            raise HTTPException(status_code=422, detail=f"malformed JSON: {problems[0]['msg']}") from err
        raise HTTPException(status_code=422, detail=problems) from err


@router.post(
    "/webhooks/alertmanager",
    status_code=202,
    response_model=Accepted,
    summary="Alertmanager webhook receiver (payload version 4)",
    responses={401: {"description": "Missing or wrong bearer token"}, 413: {"description": "Body over 1 MiB"},
               422: {"description": "Not JSON, or not an Alertmanager v4 payload"},
               503: {"description": "Job store unavailable: Alertmanager should retry"}},
)
async def receive_alerts(
    request: Request, _auth: Authorized, store: StoreDep, pool: PoolDep, metrics: MetricsDep
) -> Accepted:
    """Store one job per alert (repeated deliveries map to the stored job) and answer 202 with their ids."""
    try:
        body = await read_bounded(request)
    except PayloadTooLarge as err:
        raise _refused(request, HTTPException(status_code=413, detail=f"body larger than {MAX_BODY_BYTES} bytes")) \
            from err
    except ClientDisconnect:
        # The sender went away (or was cut off by the read deadline, app/api/protocol.py): nobody to answer.
        log.debug("webhook sender disconnected before its body was read")
        raise _refused(request, HTTPException(status_code=400, detail="request body incomplete")) from None
    try:
        # A repeat (most deliveries) is answered from its dedupe keys and a short read: no validation and
        # redaction of its labels, no thread-pool hand-off.
        keys = _keys(body)
        known = store.known(keys.alerts) if keys is not None else None
        if keys is not None and known is not None:
            return _accepted(known, [a.status for a in keys.alerts], pool, metrics, receiver="")
        payload = parse_payload(body)
        results = await run_in_threadpool(store.enqueue, payload)
    except HTTPException as err:
        _refused(request, err)
        raise
    except StoreUnavailable as err:
        log.error("webhook not stored: job store unavailable", extra={"error": str(err)})
        raise HTTPException(status_code=503, detail="job store unavailable, retry later",
                            headers={"Retry-After": "5"}) from err
    return _accepted(results, [a.status for a in payload.alerts], pool, metrics, receiver=payload.receiver)


def _refused(request: Request, err: HTTPException) -> HTTPException:
    detail = err.detail[:MAX_DETAIL_PROBLEMS] if isinstance(err.detail, list) else err.detail
    setattr(request.state, REJECTION_DETAIL, detail)
    return err


def _keys(body: bytes) -> DeliveryKeys | None:
    try:
        return DeliveryKeys.model_validate_json(body)
    except ValidationError:
        return None  # the full parse says what is wrong


def _accepted(results: list[EnqueueResult], statuses: list[str], pool: PoolDep, metrics: MetricsDep, *,
              receiver: str) -> Accepted:
    duplicates = sum(r.duplicate for r in results)
    if duplicates < len(results):
        pool.wake()  # only new jobs need a worker now
    for status in statuses:
        metrics.alerts_received.labels(status=status).inc()
    metrics.duplicates.inc(duplicates)
    # A repeated delivery is routine (every group_interval): not worth a line per post in a storm.
    log.log(logging.DEBUG if duplicates == len(results) else logging.INFO, "webhook stored",
            extra={"receiver": receiver, "alerts": len(statuses), "duplicates": duplicates})
    return Accepted(jobs=[r.job_id for r in results], duplicates=duplicates)
