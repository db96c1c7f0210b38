"""MLflow as the Tracker: one run per alert handled. The only module that imports mlflow.

mlflow is imported in the constructor, not at module level, so ``import app.adapters.tracking`` (and the
CLI's start) stays cheap. ``MlflowClient`` is used rather than the fluent API: it is thread-safe and keeps
no global "active run", which matters when several workers finish runs at once.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from app import redact
from app.errors import TemporaryError
from app.ports import RunHandle, RunRecord

log = logging.getLogger(__name__)

MAX_PARAM_VALUE = 6000  # MLflow rejects longer param values
_MAX_PARAMS_TAGS_PER_BATCH = 100  # MLflow's log_batch limits
_MAX_METRICS_PER_BATCH = 1000
_STATUSES = {"FINISHED", "FAILED", "KILLED"}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_\-. /]")


def sanitize_key(name: str) -> str:
    """A metric/param/tag name MLflow accepts: alphanumerics, ``_ - . /`` and spaces; no ``..`` or leading
    ``/`` (MLflow treats those as path traversal)."""
    clean = _UNSAFE_NAME.sub("_", name).lstrip("/")
    clean = re.sub(r"\.\.+", ".", clean)
    return clean or "_"


class MlflowTracker:
    """Tracker backed by an MLflow tracking store (a server URL or ``sqlite:///...``)."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        ui_url: str | None = None,
        experiment: str = "gitops-autofix",
        artifact_root: Path | None = None,
    ) -> None:
        import mlflow  # heavy: only when a tracker is really built

        self._mlflow = mlflow
        self._client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        self._ui_url = (ui_url or tracking_uri).rstrip("/")
        self._experiment = experiment
        self._artifact_root = artifact_root
        self._experiment_id: str | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ Tracker

    def start_run(self, *, name: str, tags: Mapping[str, str]) -> RunHandle:
        experiment_id = self.experiment_id()
        clean_tags = {sanitize_key(k): redact.text(str(v))[:MAX_PARAM_VALUE] for k, v in tags.items()}
        run = self._call("create run", self._client.create_run, experiment_id, run_name=name, tags=clean_tags)
        run_id = str(run.info.run_id)
        url = f"{self._ui_url}/#/experiments/{experiment_id}/runs/{run_id}"
        log.info("mlflow run started", extra={"run_id": run_id, "experiment_id": experiment_id})
        return RunHandle(run_id=run_id, url=url)

    def finish_run(self, handle: RunHandle, record: RunRecord, *, status: str) -> None:
        final = status.upper()
        if final not in _STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {sorted(_STATUSES)}")
        self._log_batches(handle.run_id, record)
        for name, text in record.artifacts.items():
            # The audit record is read by people outside the on-call team: a second redaction pass over
            # everything rendered from evidence, diffs and model answers.
            self._call("log artifact", self._client.log_text, handle.run_id, redact.text(text), _artifact_name(name))
        self._call("end run", self._client.set_terminated, handle.run_id, status=final)
        log.info("mlflow run finished", extra={"run_id": handle.run_id, "status": final})

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

    def _log_batches(self, run_id: str, record: RunRecord) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
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
        """Run one client call; MLflow and connection errors become TemporaryError (retry the job later)."""
        try:
            return func(*args, **kwargs)
        except (self._mlflow.exceptions.MlflowException, OSError) as err:
            log.warning("mlflow call failed", extra={"operation": what, "error": type(err).__name__})
            raise TemporaryError(f"mlflow: {what} failed: {err}") from err


def _artifact_name(name: str) -> str:
    """A relative artifact path inside the run: no absolute paths, no ``..``."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("/", "..", ".")]
    return "/".join(parts) or "artifact.txt"
