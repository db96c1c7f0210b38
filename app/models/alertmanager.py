"""Alertmanager webhook wire format, version 4 (see ../shared/FACTS.md).

Labels and annotations are untrusted text (a templated annotation can carry a log line or a connection
string): they are redacted and capped while the payload is parsed, so the job store, the logs, the pipeline,
MLflow and every PR only ever see the redacted text (app/redact.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app import redact

# Bounds keep a hostile or broken sender from making us store or process unbounded data.
MAX_ALERTS = 1000
MAX_LABELS = 64

Redacted = Annotated[dict[str, str], AfterValidator(redact.labels)]
MAX_URL = 4096


def _link(value: str) -> str:
    """The Prometheus graph link: kept (redacted, bounded) only when it is an http(s) URL; anything else is
    dropped rather than carried into a PR as a link."""
    value = redact.text(value.strip())
    return value if value.startswith(("http://", "https://")) and len(value) <= MAX_URL else ""


class AlertKey(BaseModel):
    """What dedupe needs of an alert. Parsed on its own first, so a repeated delivery (most posts in a storm) is
    recognised without validating and redacting its labels."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    status: Literal["firing", "resolved"]
    startsAt: datetime
    fingerprint: str = Field(min_length=1, max_length=64)


class DeliveryKeys(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    version: Literal["4"]
    alerts: list[AlertKey] = Field(max_length=MAX_ALERTS)


class Alert(AlertKey):
    labels: Redacted = Field(max_length=MAX_LABELS)
    annotations: Redacted = Field(default_factory=dict, max_length=MAX_LABELS)
    endsAt: datetime | None = None
    generatorURL: Annotated[str, AfterValidator(_link)] = ""

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


class WebhookPayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    version: Literal["4"]
    receiver: str = ""
    status: Literal["firing", "resolved"]
    alerts: list[Alert] = Field(max_length=MAX_ALERTS)
    groupLabels: Redacted = Field(default_factory=dict)
    commonLabels: Redacted = Field(default_factory=dict)
    commonAnnotations: Redacted = Field(default_factory=dict)
    externalURL: str = ""
    groupKey: str = ""
    truncatedAlerts: int = 0
