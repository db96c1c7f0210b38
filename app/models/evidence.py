"""Evidence gathered read-only from the cluster, redacted and bounded as it is built.

Everything the cluster says is untrusted: building an Evidence redacts every object and log (app/redact.py),
so no stage, artifact, prompt or PR can see the text as the cluster returned it.

Kubernetes objects are kept as the JSON the API server returns (camelCase keys, as `kubectl get -o json`
prints them), so a snapshot file and the live API give the detectors the very same input.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app import redact
from app.models.incident import Incident, WorkloadRef
from app.models.metrics import Metrics

K8sObject = dict[str, Any]
MAX_LOG_CHARS = 16_000  # the tail of each container log kept (the end of a log is where the crash is)


class Evidence(BaseModel):
    model_config = ConfigDict(frozen=True)

    incident: Incident
    workload: WorkloadRef
    # The live workload object (Deployment, StatefulSet, ...), and the controller objects between it and
    # the pods (ReplicaSets of a Deployment, newest revision first).
    object: K8sObject
    replicasets: list[K8sObject] = Field(default_factory=list)
    pods: list[K8sObject] = Field(default_factory=list)
    # Events whose involvedObject is the workload, one of its ReplicaSets, or one of its pods.
    events: list[K8sObject] = Field(default_factory=list)
    # "pod/container" -> tail of the previous container's log (or the current one when none), redacted.
    logs: dict[str, str] = Field(default_factory=dict)
    nodes: list[K8sObject] = Field(default_factory=list)
    # Other objects in the namespace that detectors compare against (ConfigMaps' names and keys only, PVCs,
    # StorageClasses, HPAs, ResourceQuotas): never Secrets' data.
    related: list[K8sObject] = Field(default_factory=list)
    # The GitOps objects that manage the workload (Argo CD Application, Flux Kustomization/HelmRelease).
    gitops: list[K8sObject] = Field(default_factory=list)
    # What Prometheus says about the workload over the window before the alert (app/models/metrics.py);
    # None when the evidence stage did not look (tests that build evidence by hand, snapshots).
    metrics: Metrics | None = None

    @field_validator("object", mode="before")
    @classmethod
    def _redact_object(cls, value: Any) -> Any:
        return redact.obj(value)

    @field_validator("replicasets", "pods", "events", "nodes", "related", "gitops", mode="before")
    @classmethod
    def _redact_objects(cls, value: Any) -> Any:
        return [redact.obj(item) for item in value] if isinstance(value, list) else value

    @field_validator("logs", mode="before")
    @classmethod
    def _redact_logs(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {str(k): redact.capped(str(v), max_chars=MAX_LOG_CHARS) for k, v in value.items()}

    def events_for(self, kind: str, name: str) -> list[K8sObject]:
        return [
            e for e in self.events
            if e.get("involvedObject", {}).get("kind") == kind and e.get("involvedObject", {}).get("name") == name
        ]

    def pod_named(self, name: str) -> K8sObject | None:
        for pod in self.pods:
            if pod.get("metadata", {}).get("name") == name:
                return pod
        return None
