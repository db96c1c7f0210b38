"""`autofix handle` (and the demo): one payload through the real pipeline, then its run records to MLflow.

The results come first (``on_results``: the PRs are open, every alert decided), then the export, within a
bounded wait: a one-shot command never waits for MLflow before its PRs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.payloads import handle_payload

if TYPE_CHECKING:
    from app.models.alertmanager import WebhookPayload
    from app.ports import ClusterReader
    from app.settings import Settings

Results = list[dict[str, Any]]


def handle_and_export(settings: Settings, payload: WebhookPayload, *, cluster: ClusterReader | None = None,
                      wait: float | None = None, on_results: Callable[[Results], None] | None = None,
                      ) -> tuple[Results, dict[str, float]]:
    """`autofix handle`: every alert through the real pipeline, then ``on_results`` (the PRs are open, the
    results decided), then the run records to MLflow within ``wait`` seconds (AUTOFIX_EXPORT_WAIT_SECONDS).
    Returns the results and what is left in the outbox (sent by the next `serve` or `handle`)."""
    from app.adapters.store import JobStore
    from app.wiring import build_exporter, build_handler, repo_set_of

    store = JobStore(settings.store_location)
    try:
        pipeline = build_handler(settings, cluster=cluster, store=store)  # one pipeline per cluster of clusters.yaml
        exporter = build_exporter(settings, store, forge=getattr(pipeline, "forge", None), repos=repo_set_of(pipeline))
        seconds = settings.export_wait_seconds if wait is None else wait
        if seconds > 0:
            exporter.warm_up()  # MLflow's import and store, beside the pipeline (which mostly waits on git and HTTP)
        results = handle_payload(pipeline, payload, outbox=store, budget_seconds=settings.job_budget_seconds)
        if on_results is not None:
            on_results(results)
        left = exporter.drain(seconds=seconds)
    finally:
        store.close()
    return results, left
