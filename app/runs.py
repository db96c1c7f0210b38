"""`autofix runs show ID`: one run record, read where it is now, without MLflow's web UI (no flask needed).

ID is an MLflow run id or our record key (the PR body names the record before its export; `autofix explain` and
the demo print them). The job store's outbox is read first: a record not exported yet is shown from there (its
params, metrics, tags and artifact names, and why it waits). An exported record, and any MLflow run id, is read
from the tracking store (MLFLOW_TRACKING_URI, else the data dir's sqlite file) with mlflow-skinny's client.
Neither store is created when it does not exist: a typo in AUTOFIX_DATA_DIR says so instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from app.adapters.store import Export
    from app.adapters.tracking import StoredRun
    from app.settings import Settings

VALUE_WIDTH = 160  # a param or tag longer than this is cut on screen (--json prints it whole)


def show(settings: Settings, ident: str, *, out: TextIO, err: TextIO, as_json: bool = False) -> int:
    """Print the run ``ident`` names; 0 when found, 1 when neither the outbox nor MLflow has it."""
    from app.errors import TemporaryError

    export = _outbox(settings.store_location, ident)
    try:
        run, where = _find(settings, ident, export)
    except TemporaryError as error:
        print(f"autofix: {error}", file=err)
        return 1
    if run is None:
        print(f"no run or record {ident} in the outbox ({settings.store_display}) nor in MLflow ({where})", file=err)
        return 1
    if as_json:
        print(json.dumps({**asdict(run), "where": where}, indent=2, sort_keys=True), file=out)
    else:
        print(text(run, where=where), file=out, end="")
    return 0


def _find(settings: Settings, ident: str, export: Export | None) -> tuple[StoredRun | None, str]:
    """The run and where it was read: MLflow when it has it, else the outbox's copy."""
    from app import redact

    uri = settings.tracking_uri
    shown_uri = redact.text(uri)  # credentials inside a tracking URI must not reach the terminal
    run_id = export.run_id if export is not None and export.run_id else ident
    if export is not None and not export.run_id:
        return _from_outbox(export), f"the outbox ({settings.store_display}): {_waiting(export)}"
    sqlite_file = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    if sqlite_file is not None and not Path(sqlite_file).exists():
        return None, f"{shown_uri}: no such file"
    from app.adapters.tracking import MlflowTracker

    return MlflowTracker(uri, ui_url=settings.mlflow_ui_url).stored_run(run_id), shown_uri


def _outbox(path: Path | str, key: str) -> Export | None:
    if isinstance(path, Path) and not path.exists():
        return None
    from app.adapters.store import JobStore

    store = JobStore(path)
    try:
        return store.export_of(key)
    finally:
        store.close()


def _waiting(export: Export) -> str:
    state = "refused by MLflow, kept" if export.state == "failed" else "not in MLflow yet"
    return f"{state} after {export.attempts} attempt(s)" + (f" ({export.error})" if export.error else "")


def _from_outbox(export: Export) -> StoredRun:
    from app.adapters.tracking import StoredRun

    run, record = export.run, export.run.record
    return StoredRun(run_id=None, record=run.key, name=run.name, status=run.status, started=run.created_at,
                     params=dict(record.params), metrics=dict(record.metrics), tags=dict(record.tags),
                     artifacts=sorted(record.artifacts))


def text(run: StoredRun, *, where: str) -> str:
    """The run as lines: a header, then params, metrics, tags and artifacts, sorted by name."""
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.started)) if run.started else "unknown"
    lines = [f"run {run.run_id or '(not exported yet)'}  record {run.record or '-'}",
             f"  name: {run.name}", f"  status: {run.status}, started {started}", f"  read from: {where}"]
    for title, values in (("params", run.params), ("metrics", run.metrics), ("tags", run.tags)):
        lines.append(f"{title} ({len(values)}):")
        lines += [f"  {key} = {_cut(str(value))}" for key, value in sorted(values.items())]
    lines.append(f"artifacts ({len(run.artifacts)}):")
    lines += [f"  {path}" for path in sorted(run.artifacts)]
    return "\n".join(lines) + "\n"


def _cut(value: str) -> str:
    flat = " ".join(value.split())
    return flat if len(flat) <= VALUE_WIDTH else flat[: VALUE_WIDTH - 1] + "…"
