"""The web service: create_app wires settings, job store, worker pool, routers and error handlers.

Lifecycle: the pool starts with the app (lifespan) and stops on shutdown; a job still running at shutdown
keeps its lease, which expires so the next process takes the job up again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import dependencies
from app.adapters.store import JobStore, StoreUnavailable
from app.api import alerts, health, jobs, metrics, report
from app.api.deps import Services
from app.api.telemetry import Metrics
from app.dependencies import DependencyHealth
from app.ports import Handler
from app.settings import Settings
from app.worker import WorkerPool

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)

# Alertmanager keeps its connection open between notifications; above any group_interval we expect (FACTS.md).
KEEP_ALIVE_SECONDS = 75
GRACEFUL_SHUTDOWN_SECONDS = 30
POOL_STOP_SECONDS = 10.0
EXPORT_STOP_SECONDS = 5.0  # an export in flight is abandoned after this; its lease expires, the next start resends it
PURGE_INTERVAL_SECONDS = 3600.0
DASHBOARD_CHECK_SECONDS = 5.0  # how often the service asks whether the dashboard issue is due (app/dashboard.Keeper)
WEBHOOK_PATH = "/webhooks/alertmanager"


def create_app(settings: Settings, *, pipeline: Handler | None = None) -> FastAPI:
    """The FastAPI app; ``pipeline`` defaults to the real one built from settings."""
    from app import policies

    # an invalid policy stops the service: ConfigError with file and line
    policies.configured(settings)
    store = JobStore(settings.store_location)  # first: a corrupt store stops the start in one line (StartupError)
    if pipeline is None:
        # Imported here: the pipeline pulls in heavy clients, and tests inject their own handler.
        from app.wiring import build_handler

        pipeline = build_handler(settings)  # one pipeline, or one per cluster of clusters.yaml behind a router
    # Warned once the configuration is known good: a start that fails says only what is wrong, in one line.
    log.info("job store opened", extra={"store": settings.store_display})
    if settings.webhook_token is None or not settings.webhook_token.get_secret_value():
        log.warning("AUTOFIX_WEBHOOK_TOKEN is not set: the webhook accepts posts without authentication")
    # What each dependency last did: jobs report through their deadlines, the exporter directly (/readyz, /metrics).
    dependency_health = DependencyHealth(known=_known_dependencies(settings))
    metrics_ = Metrics(health=dependency_health, build=_renderer_versions())
    _observe_stages(pipeline, metrics_)
    pool = WorkerPool(store, pipeline, workers=settings.workers, lease_seconds=settings.lease_seconds,
                      budget_seconds=settings.job_budget_seconds, on_outcome=metrics_.job_finished,
                      health=dependency_health)
    services = Services(settings=settings, store=store, pool=pool, metrics=metrics_, health=dependency_health)
    from app.wiring import build_exporter, repo_set_of

    exporter = build_exporter(settings, store, forge=getattr(pipeline, "forge", None), health=dependency_health,
                              repos=repo_set_of(pipeline))
    exporting = threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool.start()
        # Run records to MLflow, in the background: the records earlier runs left, then each job's as it ends.
        export_thread = threading.Thread(target=exporter.run, args=(exporting,), name="autofix-exporter", daemon=True)
        export_thread.start()
        retention = asyncio.create_task(_purge_finished_jobs(store, settings.job_retention_days * 86400))
        following = asyncio.create_task(_follow_outcomes(settings, store, pipeline))
        board = asyncio.create_task(_keep_dashboard(store, _board_forge(pipeline), settings))
        try:
            yield
        finally:
            retention.cancel()
            following.cancel()
            board.cancel()
            exporting.set()
            export_thread.join(timeout=EXPORT_STOP_SECONDS)
            stopped = pool.stop(POOL_STOP_SECONDS)
            # The last jobs' records: a bounded last pass (what is left waits in the outbox for the next start).
            if not export_thread.is_alive():
                await run_in_threadpool(exporter.drain, seconds=EXPORT_STOP_SECONDS)
            if stopped:
                store.close()  # only when no worker thread can still touch the connection

    app = FastAPI(title="GitOps Autofix", version="0.1.0", lifespan=lifespan, docs_url="/docs")
    app.state.services = services
    for module in (alerts, health, jobs, metrics, report):
        app.include_router(module.router)
    _install_error_handlers(app)
    _install_request_log(app, metrics_)
    return app


def _renderer_versions() -> dict[str, str]:
    """The renderers' versions for autofix_build_info (app/adapters/renderers.py; cached there after the first
    call); "unknown" when that module cannot say."""
    from app.adapters import renderers

    found = getattr(renderers, "renderer_versions", None)
    try:
        versions = found() if callable(found) else {}
    except Exception:  # noqa: BLE001 - a label is not worth a failed start
        log.warning("renderer versions unknown", exc_info=True)
        versions = {}
    return {name: str(versions.get(name) or "unknown") for name in ("kustomize", "helm")}


def _observe_stages(pipeline: Handler, metrics_: Metrics) -> None:
    """Each stage's duration into the histogram: the real pipeline takes an observer (a test's handler has no
    stages to time)."""
    from app.pipeline import Pipeline

    # A router over several clusters (app/clusters.py) holds one pipeline per cluster: each is observed.
    for each in [pipeline, *getattr(pipeline, "pipelines", {}).values()]:
        if isinstance(each, Pipeline):
            each.on_stage = metrics_.stage_observer()


def _known_dependencies(settings: Settings) -> list[str]:
    """The dependencies this configuration talks to: listed by /readyz as "unknown" until first called."""
    known = [dependencies.CLUSTER, dependencies.GIT, dependencies.FORGE, dependencies.MLFLOW]
    return known + ([dependencies.LLM] if settings.llm_enabled else [])


async def _purge_finished_jobs(store: JobStore, older_than: float) -> None:
    """Keep finished jobs for the retention period only (AUTOFIX_JOB_RETENTION_DAYS): at start, then hourly."""
    while True:
        try:
            purged = await run_in_threadpool(store.purge, older_than=older_than)
            if purged:
                log.info("finished jobs past retention deleted", extra={"jobs": purged})
        except StoreUnavailable:
            log.warning("job retention skipped: job store unavailable", exc_info=True)
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)


def _board_forge(handler: Handler) -> Any:
    """The forge of the repository the dashboard issue lives in (repositories.yaml's ``dashboard: true`` entry,
    else the default one), whether the handler is one pipeline or a router over clusters; a test's handler: its own."""
    from app.wiring import repo_set_of

    found = repo_set_of(handler)
    if found is None:
        return getattr(handler, "forge", None)
    return found.get(found.dashboard.name).forge


async def _keep_dashboard(store: JobStore, forge: Any, settings: Settings) -> None:
    """The dashboard issue (app/dashboard.py), kept current after jobs finish: checked every few seconds, written
    at most once per policy ``dashboard.interval_seconds``. A forge without issues (a test's handler) has none."""
    from app import dashboard, policies

    policy = policies.configured(settings)
    if not policy.dashboard.enabled or not hasattr(forge, "find_issue"):
        return
    keeper = dashboard.Keeper(board=forge, jobs=store, ledger=store, policy=policy, clock=time.time)
    while True:
        await asyncio.sleep(DASHBOARD_CHECK_SECONDS)
        try:
            await run_in_threadpool(keeper.tick)
        except Exception:  # the forge or the store failing must not stop the service: next time
            log.warning("dashboard issue not updated", exc_info=True)


async def _follow_outcomes(settings: Settings, store: JobStore, pipeline: Handler) -> None:
    """Each fix followed to its end (app/outcomes.py), every policy ``outcomes.interval_seconds``, from the first
    interval on; a handler that is not the real pipeline (a test's) has nothing to follow with."""
    from app.wiring import build_outcomes, follower_of

    follower = follower_of(pipeline)  # several clusters: a pipeline reading them all
    if follower is None:
        return
    once = build_outcomes(settings, store, pipeline=follower)
    while True:
        await asyncio.sleep(follower.policy.outcomes.interval_seconds)
        try:
            rows = await run_in_threadpool(once)
            log.info("outcomes followed", extra={"rows": len(rows), "decided": sum(1 for r in rows if r.final)})
        except Exception:  # noqa: BLE001 - the forge, cluster or store away for a moment: the next pass tries again
            log.warning("outcomes pass failed", exc_info=True)


def _install_error_handlers(app: FastAPI) -> None:
    async def store_unavailable(_: Request, err: Exception) -> Response:
        log.error("request failed: job store unavailable", extra={"error": str(err)})
        return JSONResponse({"detail": "job store unavailable, retry later"}, status_code=503,
                            headers={"Retry-After": "5"})

    async def invalid_request(_: Request, err: Exception) -> Response:
        assert isinstance(err, RequestValidationError)
        problems = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in err.errors()]
        return JSONResponse({"detail": problems}, status_code=422)

    async def unexpected(request: Request, err: Exception) -> Response:
        # The traceback goes to our log; the client learns nothing about our internals.
        log.error("request failed", extra={"path": request.url.path}, exc_info=err)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.add_exception_handler(StoreUnavailable, store_unavailable)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unexpected)


def _install_request_log(app: FastAPI, metrics_: Metrics) -> None:
    """Structured request log and webhook metrics: path without query string, never headers.

    A plain ASGI middleware: starlette's BaseHTTPMiddleware costs a task and a stream per request, which showed
    in the intake benchmark's profile (benchmarks/intake.py)."""
    app.add_middleware(_RequestLog, metrics_=metrics_)


class _RequestLog:
    def __init__(self, app: ASGIApp, metrics_: Metrics) -> None:
        self.app = app
        self.metrics = metrics_

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._observe(scope, status[0], time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        path = str(scope.get("path", ""))
        if path == WEBHOOK_PATH:
            self.metrics.webhook_latency.observe(elapsed)
            self.metrics.webhook_requests.labels(code=str(status)).inc()
            if 400 <= status < 500:
                self._rejected(scope, status)
        log.debug("http request", extra={"method": scope.get("method"), "path": path, "status": status,
                                        "ms": round(elapsed * 1000, 1)})


    def _rejected(self, scope: Scope, status: int) -> None:
        """One WARNING line and one count per webhook refused (4xx): why, and who sent what size. Never a
        header's value: whether an Authorization header came at all is all the line says about the token."""
        reason = REJECTION_REASONS.get(status, "other")
        self.metrics.webhook_rejected.labels(reason=reason).inc()
        headers = {name: value for name, value in scope.get("headers", [])}
        declared = headers.get(b"content-length", b"").decode("latin-1")
        client = scope.get("client")
        extra: dict[str, Any] = {
            "reason": reason, "status": status, "remote_addr": f"{client[0]}:{client[1]}" if client else None,
            "content_length": int(declared) if declared.isdigit() else None,
            "user_agent": headers.get(b"user-agent", b"").decode("latin-1")[:120] or None}
        detail = scope.get("state", {}).get(alerts.REJECTION_DETAIL)
        if reason == "auth":  # (a field named after the header would be masked whole by the redaction)
            detail = "wrong bearer token" if b"authorization" in headers else "no Authorization header"
        if detail:
            extra["detail"] = detail
        log.warning("webhook rejected", extra=extra)


# Why a webhook was refused, by status (autofix_webhook_rejected_total{reason}): 503 is not a refusal but the
# store failing, logged as an error where it happens.
REJECTION_REASONS = {401: "auth", 403: "auth", 400: "incomplete", 408: "timeout", 413: "size", 415: "payload",
                     422: "payload", 405: "method", 429: "rate"}


class DropQueryString(logging.Filter):
    """Cuts the query string from uvicorn's access log lines: a token misplaced there must not be logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def _redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, DropQueryString) for f in access.filters):
        access.addFilter(DropQueryString())


def server_config(app: FastAPI, *, host: str, port: int) -> uvicorn.Config:
    """uvicorn settings for Alertmanager as a client: long keep-alive, read deadlines, graceful stop, no query
    strings logged."""
    import uvicorn

    from app.api import protocol

    services = getattr(app.state, "services", None)  # an app not made by create_app (benchmarks): defaults
    settings: Settings = services.settings if isinstance(services, Services) else Settings()
    _redact_access_log()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        # Header and body read deadlines: a client that trickles its request cannot hold a connection.
        http=protocol.with_deadlines(header_seconds=settings.http_header_seconds,
                                     body_seconds=settings.http_body_seconds),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        proxy_headers=False,
        # No handlers of uvicorn's own: its lines reach the root handler app.logs installed, in the same format.
        log_config=None,
    )


def run(settings: Settings, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve until SIGTERM/SIGINT, then finish in-flight requests and stop the workers."""
    import uvicorn

    uvicorn.Server(server_config(create_app(settings), host=host, port=port)).run()
