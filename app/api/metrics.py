"""GET /metrics: Prometheus text format from the app's own registry."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from app.adapters.store import StoreUnavailable
from app.api.deps import MetricsDep, StoreDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def metrics(metrics: MetricsDep, store: StoreDep) -> Response:
    # Still expose the counters when the store is busy: a scrape must not fail because of it.
    with contextlib.suppress(StoreUnavailable):
        counts, ages = await run_in_threadpool(lambda: (store.counts(), store.ages()))
        metrics.observe_store(counts, ages)
        metrics.observe_backlog(await run_in_threadpool(store.backlog))
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
