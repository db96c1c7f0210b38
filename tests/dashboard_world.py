"""A job store holding what the dashboard issue shows, every section filled: the ledger's PRs (open, merged and
escalated, closed within the cooldown, closed and lifted, merged with an outcome, rejected) and finished jobs
(no_fix decisions with their reasons, an escalation). Times are fixed so the body is a golden file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.adapters.store import JobStore
from app.models.alertmanager import WebhookPayload
from app.ports import Remediation

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
HOUR = 3600.0
REPO = "https://github.example/acme/gitops/pull"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def alert(name: str, fingerprint: str, labels: dict[str, str], *, starts: str = "2027-01-15T07:30:00Z") -> dict[str, Any]:
    return {"status": "firing", "labels": {"alertname": name, **labels}, "annotations": {},
            "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint}


def finish(store: JobStore, clock: Clock, raw: dict[str, Any], result: dict[str, Any], *, at: float) -> int:
    """One alert delivered, handled and finished with ``result`` at ``at``: the job's id."""
    payload = WebhookPayload.model_validate({"receiver": "autofix", "status": "firing", "alerts": [raw],
                                             "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                                             "externalURL": "http://alertmanager.example:9093", "version": "4",
                                             "groupKey": "{}:{}", "truncatedAlerts": 0})
    clock.now = at
    job_id = store.enqueue(payload)[0].job_id
    job = store.lease("test-worker", ttl=60)
    assert job is not None and job.id == job_id
    assert store.complete(job_id, "test-worker", {"alertname": raw["labels"]["alertname"],
                                                   "fingerprint": raw["fingerprint"], **result})
    return job_id


def no_fix(reason: str, *, workload: str, cause: str, diagnosis: str) -> dict[str, Any]:
    return {"outcome": "no_fix", "reason": reason, "workload": workload, "cause": cause, "pr_url": None,
            "stages": [{"stage": "diagnosis", "seconds": 0.01, "decision": diagnosis}]}


def remediation(number: int, workload: str, cause: str, state: str, *, opened: float, **more: Any) -> Remediation:
    ns, name = workload.split("/")[1:]
    return Remediation(workload=workload, cause=cause, branch=f"autofix/{ns}/{name}/{cause.replace('_', '-')}",
                       pr_number=number, pr_url=f"{REPO}/{number}", state=state, opened_at=opened, **more)


def seeded(tmp: Path, *, now: float = NOW,
           name: str = "jobs.sqlite3") -> tuple[JobStore, Clock, dict[str, int]]:
    """The store of a service that ran for three days; returns it, its clock and the ids of note."""
    clock = Clock(now - 3 * 24 * HOUR)
    store = JobStore(tmp / name, clock=clock)
    rows = [
        remediation(11, "Deployment/shop/checkout", "oom_killed", "open", opened=now - 2 * HOUR, risk=0.42,
                    before={"spec.template.spec.containers[name=checkout].resources.limits.memory": "256Mi"},
                    after={"spec.template.spec.containers[name=checkout].resources.limits.memory": "384Mi"}),
        remediation(7, "Deployment/shop/cart", "oom_killed", "merged", opened=now - 30 * HOUR,
                    merged_at=now - 20 * HOUR, escalated_at=now - 1 * HOUR, risk=0.2),
        remediation(8, "StatefulSet/data/redis", "cpu_throttling", "closed", opened=now - 12 * HOUR,
                    closed_at=now - 10 * HOUR),
        remediation(9, "Deployment/web/frontend", "hpa_maxed_out", "closed", opened=now - 12 * HOUR,
                    closed_at=now - 11 * HOUR, cooldown_lifted_at=now - 5 * HOUR),
        remediation(5, "Deployment/shop/payments", "oom_killed", "merged", opened=now - 60 * HOUR,
                    merged_at=now - 58 * HOUR, final="effective", final_at=now - 30 * HOUR),
        remediation(6, "Deployment/shop/shipping", "probe_misconfigured", "closed", opened=now - 50 * HOUR,
                    closed_at=now - 49 * HOUR - 0.5 * HOUR * 0, final="rejected", final_at=now - 49 * HOUR),
    ]
    for row in rows:
        store.record(row)
    ids = {
        "escalated": finish(store, clock, alert("KubePodCrashLooping", "a1b2c3d4e5f60718",
                                                {"namespace": "shop", "pod": "cart-5d8f7c9b6-x2x9q",
                                                 "container": "cart", "reason": "CrashLoopBackOff"}),
                            {**no_fix("escalated: fix merged at 2027-01-14T12:00:00Z did not resolve (PR #7)",
                                      workload="Deployment/shop/cart", cause="oom_killed",
                                      diagnosis="oom: oom_killed"), "pr_url": f"{REPO}/7"}, at=now - 1 * HOUR),
        "declined": finish(store, clock, alert("KubePodCrashLooping", "0f1e2d3c4b5a6978",
                                               {"namespace": "batch", "pod": "report-28913760-4kq2z",
                                                "container": "report", "reason": "CrashLoopBackOff"}),
                           no_fix("Back-off restarting failed container report in pod report-28913760-4kq2z_batch"
                                  "(1f0e2d3c-0000-4a5b-9c8d-123456789abc) No fix: the container exits 1 with a "
                                  "stack trace in its own code: a bug, not a configuration",
                                  workload="Job/batch/report", cause="app_crash", diagnosis="app_crash: app_crash "
                                  "(no fix)"), at=now - 3 * HOUR),
        "cooldown": finish(store, clock, alert("CPUThrottlingHigh", "9a8b7c6d5e4f3021",
                                               {"namespace": "data", "pod": "redis-0", "container": "redis"}),
                           no_fix("PR #8 was closed unmerged at 2027-01-14T22:00:00Z: no new PR for this workload "
                                  "and cause until 2027-01-17T22:00:00Z unless the evidence changes",
                                  workload="StatefulSet/data/redis", cause="cpu_throttling",
                                  diagnosis="cpu: cpu_throttling"), at=now - 2 * HOUR),
        "opened": finish(store, clock, alert("KubePodCrashLooping", "1234567890abcdef",
                                             {"namespace": "shop", "pod": "checkout-7d9f8b6c5-abcde",
                                              "container": "checkout", "reason": "CrashLoopBackOff"}),
                         {"outcome": "pr_opened", "reason": "", "workload": "Deployment/shop/checkout",
                          "cause": "oom_killed", "pr_url": f"{REPO}/11", "stages": []}, at=now - 2 * HOUR),
    }
    clock.now = now
    return store, clock, ids
