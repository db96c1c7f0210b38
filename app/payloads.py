"""An Alertmanager webhook payload from a file, and each of its alerts through the pipeline, in order.

What `autofix handle` and `autofix demo` share. Imports are lazy (the CLI imports this module at start).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.adapters.store import JobStore
    from app.models.alertmanager import WebhookPayload
    from app.ports import Handler


def read_payload(path: Path) -> WebhookPayload:
    """The payload in ``path``; ConfigError names the file and the invalid locations (never label values)."""
    from pydantic import ValidationError

    from app.errors import ConfigError
    from app.models.alertmanager import WebhookPayload

    try:
        return WebhookPayload.model_validate_json(path.read_bytes())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the payload: {err.strerror}") from err
    except ValidationError as err:
        # Locations and messages only: the input values are alert labels, which may hold secrets.
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5])
        raise ConfigError(f"{path}: not a valid Alertmanager webhook payload: {problems}") from err


ABANDONED_GRACE_SECONDS = 10.0


def handle_payload(pipeline: Handler, payload: WebhookPayload, *, outbox: JobStore,
                   budget_seconds: float | None = None) -> list[dict[str, Any]]:
    """Each alert of the payload through the pipeline, in order; a transient failure is reported, not raised.

    Each alert has the job budget the service gives it (AUTOFIX_JOB_BUDGET_SECONDS, app/worker.py): past it
    the alert's result is `failed` naming the stage, and the next alert goes on. Each handling's run record
    goes into the ``outbox`` (the job store) as soon as the alert is handled; the caller exports it.
    """
    import functools

    from app import deadlines, worker
    from app.errors import TemporaryError
    from app.models.incident import Incident
    from app.models.outcome import Outcome
    from app.models.runs import run_of

    budget = deadlines.DEFAULT_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    results = []
    running = worker.RunningJobs()
    for index, alert in enumerate(payload.alerts):
        incident = Incident.from_alert(alert)
        try:
            outcome = worker.call_within(functools.partial(pipeline.handle, incident), deadlines.Deadline(budget),
                                         name=f"autofix-handle-{alert.fingerprint}", running=running,
                                         job_id=index)
        except TemporaryError as err:
            run = run_of(err)
            outcome = Outcome(alertname=alert.alertname, fingerprint=alert.fingerprint, outcome="failed",
                              reason=f"temporary failure, retry later: {err}", run=run,
                              record_id=run.key if run is not None else None)
        except deadlines.BudgetExceeded as err:
            outcome = Outcome(alertname=alert.alertname, fingerprint=alert.fingerprint, outcome="failed",
                              reason=f"{err.code}: {err}")
        if outcome.run is not None:
            outbox.add_run(outcome.run)
        results.append(outcome.result())
    # A handler given up on at its budget ends soon after (its calls are bounded by the same budget): let it
    # finish before the command exits (worker.RunningJobs.wait_idle says why), but never wait long for it.
    running.wait_idle(ABANDONED_GRACE_SECONDS)
    return results

