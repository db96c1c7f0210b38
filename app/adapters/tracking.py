"""MLflow as the RunSink: one run per alert handled, exported from the outbox. The only module that imports
mlflow, and only the exporter (app/exporter.py) and `autofix doctor` build it: never the path from alert to PR.

mlflow is imported in the constructor, not at module level, so ``import app.adapters.tracking`` (and the
CLI's start) stays cheap. ``MlflowClient`` is used rather than the fluent API: it is thread-safe and keeps
no global "active run". Its own HTTP retries are cut short (the outbox retries with backoff instead, and an
unreachable server must not hold the exporter for minutes): MLFLOW_HTTP_REQUEST_TIMEOUT and
MLFLOW_HTTP_REQUEST_MAX_RETRIES default to ours unless set in the environment.

An export is idempotent: the run is tagged ``autofix_record=<key>`` when it is created, and an export repeated
after a crash (the run created, the outbox not told) finds that run and logs into it again. Params and tags
are rewritten with the same values, metrics carry the record's own timestamp (MLflow keeps one point per
key, timestamp, step and value), artifacts are overwritten.

A record with a curve (``metrics/curve.json``) also gets the chart as ``metrics/curve.png``, drawn here at
export (app/adapters/png.py, Pillow, imported only then): the path from alert to PR never draws an image. A
curve that cannot be drawn (no Pillow, a record edited by hand) costs the image, never the export.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from app import dependencies as deps
from app import redact
from app.errors import PermanentError, TemporaryError
from app.models.metrics import Curve
from app.models.runs import CURVE_ARTIFACT, CURVE_PNG, PendingRun
from app.ports import RunHandle, RunRecord

log = logging.getLogger(__name__)

MAX_PARAM_VALUE = 6000  # MLflow rejects longer param values
_MAX_PARAMS_TAGS_PER_BATCH = 100  # MLflow's log_batch limits
_MAX_METRICS_PER_BATCH = 1000
_STATUSES = {"FINISHED", "FAILED", "KILLED"}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_\-. /]")
HTTP_TIMEOUT_SECONDS = 10  # one MLflow REST call (its default is 120 s)
HTTP_MAX_RETRIES = 0  # its default is 7, with backoff: minutes against a dead server; the outbox retries
RECORD_TAG = "autofix_record"


_IDENT = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a run id or record key: also safe inside a filter string


@dataclass(frozen=True)
class StoredRun:
    """One run as `autofix runs show` prints it (from MLflow, or from the outbox before its export)."""

    run_id: str | None
    record: str | None
    name: str
    status: str
    started: float  # Unix seconds
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: list[str]


def sanitize_key(name: str) -> str:
    """A metric/param/tag name MLflow accepts: alphanumerics, ``_ - . /`` and spaces; no ``..`` or leading
    ``/`` (MLflow treats those as path traversal)."""
    clean = _UNSAFE_NAME.sub("_", name).lstrip("/")
    clean = re.sub(r"\.\.+", ".", clean)
    return clean or "_"


class MlflowTracker:
    """RunSink backed by an MLflow tracking store (a server URL or ``sqlite:///...``)."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        ui_url: str | None = None,
        experiment: str = "gitops-autofix",
        artifact_root: Path | None = None,
    ) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(HTTP_TIMEOUT_SECONDS))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(HTTP_MAX_RETRIES))
        import mlflow  # heavy: only when a tracker is really built

        self._mlflow = mlflow
        self._client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        self._ui_url = (ui_url or tracking_uri).rstrip("/")
        self._experiment = experiment
        self._artifact_root = artifact_root
        self._experiment_id: str | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ RunSink

    def export(self, run: PendingRun) -> RunHandle:
        if run.amends is not None:
            return self._amend(run, run.amends)
        final = run.status.upper()
        if final not in _STATUSES:
            raise ValueError(f"unknown run status {run.status!r}; expected one of {sorted(_STATUSES)}")
        experiment_id = self.experiment_id()
        run_id = self._find(experiment_id, run.key) or self._create(experiment_id, run)
        self._log_batches(run_id, run.record, timestamp_ms=int(run.created_at * 1000))
        for name, text in run.record.artifacts.items():
            # The audit record is read by people outside the on-call team: a second redaction pass over
            # everything rendered from evidence, diffs and model answers.
            self._call("log artifact", self._client.log_text, run_id, redact.text(text), _artifact_name(name))
        if CURVE_ARTIFACT in run.record.artifacts:
            self._log_chart(run_id, run.record.artifacts[CURVE_ARTIFACT])
        self._call("end run", self._client.set_terminated, run_id, status=final)
        log.info("mlflow run exported", extra={"run_id": run_id, "record": run.key, "status": final})
        return RunHandle(run_id=run_id, url=f"{self._ui_url}/#/experiments/{experiment_id}/runs/{run_id}")

    def prepare(self) -> None:
        self.experiment_id()

    def _amend(self, run: PendingRun, key: str) -> RunHandle:
        """Add an amendment's tags and metrics to the run of record ``key``: the same values and timestamp
        each attempt, so a repeated export changes nothing. The run not in MLflow yet (its own record still
        waits in the outbox) is a TemporaryError: the amendment is tried again after it."""
        experiment_id = self.experiment_id()
        run_id = self._find(experiment_id, key)
        if run_id is None:
            raise TemporaryError(f"mlflow: no run tagged {RECORD_TAG}={key} yet", code="mlflow_run_missing",
                                 dependency=deps.MLFLOW, kind=deps.HTTP_4XX)
        self._log_batches(run_id, run.record, timestamp_ms=int(run.created_at * 1000))
        log.info("mlflow run amended", extra={"run_id": run_id, "record": key, "amendment": run.key})
        return RunHandle(run_id=run_id, url=f"{self._ui_url}/#/experiments/{experiment_id}/runs/{run_id}")

    def _log_chart(self, run_id: str, curve_json: str) -> None:
        """The curve's chart as ``metrics/curve.png`` next to its data."""
        try:
            from app.adapters import png

            image = png.draw(Curve.model_validate_json(curve_json))
        except (ImportError, ValueError, OSError) as err:
            log.warning("curve chart not drawn", extra={"error": type(err).__name__})
            return
        if image is None:
            return
        folder, _, name = CURVE_PNG.rpartition("/")
        with tempfile.TemporaryDirectory(prefix="autofix-chart-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(image)
            self._call("log artifact", self._client.log_artifact, run_id, str(path), folder)

    def _find(self, experiment_id: str, key: str) -> str | None:
        """The run an earlier attempt created for this record, if any."""
        found = self._call("search runs", self._client.search_runs, [experiment_id],
                           filter_string=f"tags.{RECORD_TAG} = '{key}'", max_results=1)
        return str(found[0].info.run_id) if found else None

    def _create(self, experiment_id: str, run: PendingRun) -> str:
        tags = {sanitize_key(k): redact.text(str(v))[:MAX_PARAM_VALUE] for k, v in run.record.tags.items()}
        tags[RECORD_TAG] = run.key
        created = self._call("create run", self._client.create_run, experiment_id,
                             start_time=int(run.created_at * 1000), run_name=run.name, tags=tags)
        return str(created.info.run_id)

    # ------------------------------------------------------------ helpers

    def experiment_id(self) -> str:
        """The experiment's id, created on first use (with our artifact root, not ./mlartifacts)."""
        with self._lock:
            if self._experiment_id is None:
                self._experiment_id = self._ensure_experiment()
            return self._experiment_id

    def _ensure_experiment(self) -> str:
        found = self._call("get experiment", self._client.get_experiment_by_name, self._experiment)
        if found is not None:
            return str(found.experiment_id)
        location = self._artifact_root.resolve().as_uri() if self._artifact_root else None
        try:
            return str(self._client.create_experiment(self._experiment, artifact_location=location))
        except self._mlflow.exceptions.MlflowException as err:
            # another process may have created it between our lookup and create
            again = self._call("get experiment", self._client.get_experiment_by_name, self._experiment)
            if again is None:
                raise TemporaryError(f"mlflow: cannot create experiment {self._experiment}: {err}") from err
            return str(again.experiment_id)

    def scored_runs(self, *, limit: int = 50_000) -> list[tuple[dict[str, float], dict[str, str]]]:
        """(metrics, tags) of the experiment's runs that carry a risk score, newest first, for `autofix
        calibrate`. Read-only: an experiment not created yet has no runs (it is not created here)."""
        found = self._call("get experiment", self._client.get_experiment_by_name, self._experiment)
        if found is None:
            return []
        rows: list[tuple[dict[str, float], dict[str, str]]] = []
        token = None
        while len(rows) < limit:
            page = self._call("search runs", self._client.search_runs, [str(found.experiment_id)],
                              filter_string="metrics.risk >= 0", max_results=min(1000, limit - len(rows)),
                              order_by=["attributes.start_time DESC"], page_token=token)
            rows += [(dict(r.data.metrics), dict(r.data.tags)) for r in page]
            token = page.token
            if not token:
                break
        return rows

    def stored_run(self, ident: str) -> StoredRun | None:
        """The run ``ident`` names, read-only (`autofix runs show`): an MLflow run id, else our record key (the
        run's ``autofix_record`` tag). None when neither names a run in this store."""
        if not _IDENT.fullmatch(ident):
            return None
        run = self._run_or_none(ident)
        if run is None:
            found = self._call("get experiment", self._client.get_experiment_by_name, self._experiment)
            hits = [] if found is None else self._call(
                "search runs", self._client.search_runs, [str(found.experiment_id)],
                filter_string=f"tags.{RECORD_TAG} = '{ident}'", max_results=1)
            run = hits[0] if hits else None
        if run is None:
            return None
        info, data = run.info, run.data
        return StoredRun(run_id=str(info.run_id), record=data.tags.get(RECORD_TAG), name=str(info.run_name or ""),
                         status=str(info.status), started=(info.start_time or 0) / 1000,
                         params=dict(data.params), metrics=dict(data.metrics),
                         tags={k: v for k, v in data.tags.items() if not k.startswith("mlflow.")},
                         artifacts=self._artifact_paths(str(info.run_id), ""))

    def _run_or_none(self, run_id: str) -> Any:
        try:
            return self._call("get run", self._client.get_run, run_id)
        except PermanentError as err:  # 404: no run with that id (it may be a record key)
            if int(getattr(err.__cause__, "get_http_status_code", lambda: 0)()) == 404:
                return None
            raise

    def _artifact_paths(self, run_id: str, path: str) -> list[str]:
        found: list[str] = []
        for item in self._call("list artifacts", self._client.list_artifacts, run_id, path or None):
            found += self._artifact_paths(run_id, item.path) if item.is_dir else [str(item.path)]
        return found

    def _log_batches(self, run_id: str, record: RunRecord, *, timestamp_ms: int) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = timestamp_ms
        params = [Param(sanitize_key(k), redact.text(str(v))[:MAX_PARAM_VALUE]) for k, v in record.params.items()]
        tags = [RunTag(sanitize_key(k), redact.text(str(v))[:MAX_PARAM_VALUE]) for k, v in record.tags.items()]
        metrics = [Metric(sanitize_key(k), float(v), now, 0) for k, v in record.metrics.items()]
        # one log_batch in the usual case; split only past MLflow's per-batch limits
        while params or tags or metrics:
            p_count = min(len(params), _MAX_PARAMS_TAGS_PER_BATCH)
            t_count = min(len(tags), _MAX_PARAMS_TAGS_PER_BATCH - p_count)
            m_count = min(len(metrics), _MAX_METRICS_PER_BATCH - p_count - t_count)
            self._call(
                "log batch",
                self._client.log_batch,
                run_id,
                metrics=metrics[:m_count],
                params=params[:p_count],
                tags=tags[:t_count],
            )
            params, tags, metrics = params[p_count:], tags[t_count:], metrics[m_count:]

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one client call. MLflow refusing the record itself (a 4xx such as INVALID_PARAMETER_VALUE) is a
        PermanentError: sending it again cannot help. Anything else (connection refused, timeouts, 5xx, a
        locked sqlite store) is a TemporaryError: the outbox tries again later."""
        try:
            return func(*args, **kwargs)
        except (self._mlflow.exceptions.MlflowException, OSError) as err:
            log.warning("mlflow call failed", extra={"operation": what, "error": type(err).__name__})
            status = int(getattr(err, "get_http_status_code", lambda: 500)())
            if isinstance(err, self._mlflow.exceptions.MlflowException) and 400 <= status < 500 \
                    and status not in (408, 429):
                raise PermanentError(f"mlflow: {what} refused: {_first_line(err)}", code="mlflow_refused",
                                     dependency=deps.MLFLOW, kind=deps.HTTP_4XX) from err
            raise TemporaryError(f"mlflow: {what} failed: {_first_line(err)}", code="mlflow_unavailable",
                                 dependency=deps.MLFLOW, kind=_kind(err)) from err


def _kind(err: BaseException) -> str:
    """How MLflow failed, as app.dependencies names it (its REST client wraps the requests error in text)."""
    text = f"{type(err).__name__} {err}".lower()
    if "timed out" in text or "timeout" in text:
        return deps.TIMEOUT
    if "refused" in text:
        return deps.REFUSED
    if "max retries exceeded" in text or "connection" in text or isinstance(err, OSError):
        return deps.UNREACHABLE
    return deps.HTTP_5XX


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def _artifact_name(name: str) -> str:
    """A relative artifact path inside the run: no absolute paths, no ``..``."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("/", "..", ".")]
    return "/".join(parts) or "artifact.txt"
