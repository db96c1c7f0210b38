"""An incident is one alert as the pipeline sees it, and the workload it is about."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models.alertmanager import Alert

# Labels that name a workload directly, with the kind they name (kubernetes-mixin, see FACTS.md).
WORKLOAD_LABELS: dict[str, str] = {
    "deployment": "Deployment",
    "statefulset": "StatefulSet",
    "daemonset": "DaemonSet",
    "job_name": "Job",
    "cronjob": "CronJob",
    "horizontalpodautoscaler": "HorizontalPodAutoscaler",
}


class WorkloadRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def short(self) -> str:
        return f"{self.namespace}/{self.name}"


class Incident(BaseModel):
    """One alert: what fired, about what, and the labels that locate it."""

    model_config = ConfigDict(frozen=True)

    alertname: str
    fingerprint: str
    status: Literal["firing", "resolved"]
    starts_at: datetime
    ends_at: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generator_url: str = ""  # the Prometheus graph of the alert's expression (http(s) only, see alertmanager.py)

    @classmethod
    def from_alert(cls, alert: Alert) -> Incident:
        return cls(
            alertname=alert.alertname,
            fingerprint=alert.fingerprint,
            status=alert.status,
            starts_at=alert.startsAt,
            ends_at=alert.endsAt,
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            generator_url=alert.generatorURL,
        )

    def context(self, *, now: datetime | None = None) -> list[tuple[str, str]]:
        """What the alert itself says, in the order an on-call reads it: where, how bad, since when (and, given
        the decision time ``now``, for how long), what, the runbook and the graph. Only what the alert carries
        (kubernetes-mixin labels and annotations, Prometheus' external labels ``prometheus`` and
        ``prometheus_replica``/``replica`` when Alertmanager kept them)."""
        items = [("cluster", self.labels.get("cluster", "")), ("severity", self.labels.get("severity", "")),
                 ("prometheus", self.labels.get("prometheus", "")),
                 ("replica", self.labels.get("prometheus_replica") or self.labels.get("replica", "")),
                 ("since", utc(self.starts_at)), ("for", firing_for(self.starts_at, now) if now else ""),
                 ("summary", self.annotations.get("summary", "")),
                 ("description", self.annotations.get("description") or self.annotations.get("message", "")),
                 ("runbook", self.annotations.get("runbook_url", "")), ("graph", self.generator_url)]
        return [(name, value) for name, value in items if value]

    @property
    def namespace(self) -> str | None:
        return self.labels.get("namespace") or None

    @property
    def pod(self) -> str | None:
        return self.labels.get("pod") or None

    @property
    def container(self) -> str | None:
        return self.labels.get("container") or None

    def workload_hint(self) -> WorkloadRef | None:
        """The workload a workload-level alert names; pod-level alerts return None (walk owners)."""
        ns = self.namespace
        if not ns:
            return None
        for label, kind in WORKLOAD_LABELS.items():
            value = self.labels.get(label)
            if value:
                return WorkloadRef(kind=kind, namespace=ns, name=value)
        return None


def utc(moment: datetime) -> str:
    """ISO 8601 in UTC to the second, as Alertmanager's UI shows it."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def firing_for(start: datetime, now: datetime) -> str:
    """How long an alert has fired, as an on-call says it: "2 h 5 min", "3 d 4 h", "40 s"; "" before it started."""
    start = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    seconds = int((now - start).total_seconds())
    if seconds < 0:
        return ""
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else f"{secs} s"
