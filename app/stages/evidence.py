"""Evidence stage: read the workload's state from the cluster (read-only); the Evidence model redacts it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app import kube
from app.detectors import rollout
from app.errors import NoFix
from app.models.evidence import Evidence
from app.models.incident import Incident, WorkloadRef
from app.models.metrics import Metrics
from app.policies import Policy
from app.ports import ClusterReader, MetricsReader
from app.stages import End, Output
from app.stages import metrics as metrics_reading

MAX_PODS = 20
MAX_LOG_PODS = 3
LOG_LINES = 200
MAX_EVENTS = 100
ARGOCD_TRACKING = "argocd.argoproj.io/tracking-id"
INSTANCE_LABEL = "app.kubernetes.io/instance"
FLUX_KS = ("kustomize.toolkit.fluxcd.io/name", "kustomize.toolkit.fluxcd.io/namespace")
FLUX_HR = ("helm.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/namespace")

K8sObject = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Gathered(Output):
    evidence: Evidence


def collect(*, cluster: ClusterReader, workload: WorkloadRef, incident: Incident,
            metrics: MetricsReader | None = None, policy: Policy | None = None) -> Gathered:
    """The stage: the evidence, and how much of it there is. With ``policy`` (the pipeline) the metrics are read
    too (``metrics`` None: not configured); without, Evidence.metrics stays None (not looked)."""
    ev = gather(cluster, workload, incident, metrics=metrics, policy=policy)
    decision = f"{len(ev.pods)} pod(s), {len(ev.events)} event(s), {len(ev.logs)} log(s)"
    if ev.metrics is not None:
        decision += f", metrics {ev.metrics.status.replace('_', ' ')}"
        decision += f" ({len(ev.metrics.series)} series)" if ev.metrics.status == "ok" else f": {ev.metrics.reason}"
    return Gathered(evidence=ev, decision=decision)


@dataclass(frozen=True, kw_only=True)
class Subject(Output):
    evidence: Evidence  # the object the fix changes, as the change stages see it (its own GitOps owners)


def subject(*, cluster: ClusterReader, evidence: Evidence, ref: WorkloadRef, policy: Policy) -> Subject:
    """The object the diagnosis puts the fix in when it is not the workload (a standalone claim the pods wait
    for), read like a workload: its live object and the Argo CD or Flux objects that deploy it, which may differ
    from the workload's. The rest of the evidence stays the workload's."""
    if ref.kind not in policy.kinds:
        return Subject(evidence=evidence, decision=f"the fix goes in {ref}",
                       stop=End(kind="skipped", reason=f"kind {ref.kind} is not allowed by policy"))
    obj = cluster.get(ref.kind, ref.namespace, ref.name)
    if obj is None:
        raise NoFix(f"{ref}, where the fix goes, was not found in the cluster", code="no_target")
    # Validated again, not copied: the live object and its owners are redacted like any evidence.
    about = Evidence.model_validate({**evidence.model_dump(), "workload": ref.model_dump(), "object": obj,
                                     "gitops": _gitops(cluster, obj)})
    owners = ", ".join(f"{g.get('kind')} {kube.name(g)}" for g in about.gitops) or "no GitOps object"
    return Subject(evidence=about, decision=f"the fix goes in {ref} ({owners})")


def gather(cluster: ClusterReader, ref: WorkloadRef, incident: Incident, *, metrics: MetricsReader | None = None,
           policy: Policy | None = None) -> Evidence:
    workload = cluster.get(ref.kind, ref.namespace, ref.name)
    if workload is None:
        raise NoFix(f"{ref} was not found in the cluster", code="no_target")
    scaled = workload
    if ref.kind == "HorizontalPodAutoscaler":
        target = (workload.get("spec") or {}).get("scaleTargetRef") or {}
        scaled = cluster.get(str(target.get("kind", "")), ref.namespace, str(target.get("name", ""))) or {}
    replicasets = _replicasets(cluster, ref, scaled)
    pods = _pods(cluster, ref.namespace, scaled, replicasets, incident)
    extra = _capacity_objects(cluster, ref, scaled, pods)
    events = _events(cluster, ref, workload, replicasets, [*pods, *extra])
    return Evidence(
        incident=incident,
        workload=ref,
        object=workload,
        replicasets=replicasets,
        pods=pods,
        events=events,
        logs=_logs(cluster, ref.namespace, pods, incident),
        nodes=_nodes(cluster, pods),
        related=_related(cluster, ref.namespace, pods, scaled) + extra,
        gitops=_gitops(cluster, workload),
        metrics=_metrics(metrics, ref, scaled, pods, incident, policy) if policy is not None else None,
    )


def _metrics(reader: MetricsReader | None, ref: WorkloadRef, scaled: K8sObject, pods: list[K8sObject],
             incident: Incident, policy: Policy) -> Metrics:
    """The workload's series before the alert (an HPA's: its target's pods); see app/stages/metrics.py."""
    owner = scaled if scaled else {}
    kind = str(owner.get("kind") or ref.kind)
    name = kube.name(owner) or ref.name
    pending = any(_unscheduled(p) for p in pods)
    return metrics_reading.read(reader, metrics_reading.Workload(kind=kind, namespace=ref.namespace, name=name,
                                                                 pending=pending),
                                end=incident.starts_at.timestamp(), policy=policy.metrics)


def _unscheduled(pod: K8sObject) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Pending" and any(
        c.get("type") == "PodScheduled" and c.get("status") == "False" for c in status.get("conditions") or [])


def _replicasets(cluster: ClusterReader, ref: WorkloadRef, workload: K8sObject) -> list[K8sObject]:
    if workload.get("kind", ref.kind) != "Deployment":
        return []
    found = cluster.list("ReplicaSet", ref.namespace, label_selector=kube.selector_string(workload))
    owned = [rs for rs in found if kube.owned_by(rs, workload)]
    return sorted(owned, key=kube.revision, reverse=True)


def _pods(cluster: ClusterReader, namespace: str, workload: K8sObject, replicasets: list[K8sObject],
          incident: Incident) -> list[K8sObject]:
    if not workload:
        return []
    if workload.get("kind") == kube.POD:  # a bare Pod is its own and only pod
        return [workload]
    selector = kube.selector_string(workload)
    if workload.get("kind") == "CronJob" or selector is None:
        candidates = cluster.list("Pod", namespace)
    else:
        candidates = cluster.list("Pod", namespace, label_selector=selector)
    owners = {kube.meta(o).get("uid") for o in [workload, *replicasets]}
    pods = [p for p in candidates if _owned_by_any(p, owners) or workload.get("kind") in ("Job", "CronJob")]
    if workload.get("kind") == "CronJob":
        prefix = kube.name(workload) + "-"
        pods = [p for p in pods if kube.name(p).startswith(prefix)]
    pods = _focus_new_replicaset(pods, workload, replicasets, incident)
    # The pod the alert names first, then the most troubled ones.
    pods.sort(key=lambda p: (kube.name(p) != incident.pod, -_restarts(p)))
    return pods[:MAX_PODS]


def _owned_by_any(pod: K8sObject, uids: set[Any]) -> bool:
    return any(ref.get("uid") in uids for ref in kube.meta(pod).get("ownerReferences") or [])


def _restarts(pod: K8sObject) -> int:
    return sum(int(cs.get("restartCount") or 0) for cs, _ in kube.container_statuses(pod))


def _events(cluster: ClusterReader, ref: WorkloadRef, workload: K8sObject, replicasets: list[K8sObject],
            pods: list[K8sObject]) -> list[K8sObject]:
    names = {kube.name(o) for o in [workload, *replicasets, *pods]}
    events = [e for e in cluster.list("Event", ref.namespace)
              if (e.get("involvedObject") or {}).get("name") in names]
    events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""), reverse=True)
    # The workload's own events are kept first: its ScalingReplicaSet events show when each revision was scaled
    # down (app/detectors/revisions.py), and a crash-looping pod's events must not crowd them out.
    kind, name = str(workload.get("kind") or ref.kind), kube.name(workload)
    own = [e for e in events if _about(e, kind, name)]
    kept = {id(e) for e in [*own, *(e for e in events if not _about(e, kind, name))][:MAX_EVENTS]}
    return [e for e in events if id(e) in kept]  # newest first, as before


def _about(event: K8sObject, kind: str, name: str) -> bool:
    involved = event.get("involvedObject") or {}
    return involved.get("kind") == kind and involved.get("name") == name


def _logs(cluster: ClusterReader, namespace: str, pods: list[K8sObject], incident: Incident) -> dict[str, str]:
    logs: dict[str, str] = {}
    troubled = [p for p in pods if _restarts(p) > 0 or kube.name(p) == incident.pod or _unready(p)][:MAX_LOG_PODS]
    for pod in troubled:
        for cs, _init in kube.container_statuses(pod):
            unready = _running_unready(cs)
            if incident.container and cs.get("name") != incident.container and _restarts(pod) == 0 and not unready:
                continue
            previous = bool(cs.get("lastState", {}).get("terminated"))
            if not previous and not cs.get("restartCount") and not unready:
                continue
            text = cluster.logs(namespace, kube.name(pod), str(cs.get("name")), previous=previous,
                                tail_lines=LOG_LINES)
            if text:
                logs[f"{kube.name(pod)}/{cs.get('name')}"] = text
    return logs


def _running_unready(cs: K8sObject) -> bool:
    """A container that runs but is not ready (its readiness probe fails): its own log may say what it serves."""
    return bool((cs.get("state") or {}).get("running")) and cs.get("ready") is False


def _unready(pod: K8sObject) -> bool:
    return any(_running_unready(cs) for cs, _ in kube.container_statuses(pod))


def _nodes(cluster: ClusterReader, pods: list[K8sObject]) -> list[K8sObject]:
    """Nodes only matter when a pod cannot be scheduled: don't list a large cluster otherwise."""
    pending = any((p.get("status") or {}).get("phase") == "Pending" for p in pods)
    if not pending:
        return []
    return [{"metadata": {"name": kube.name(n), "labels": kube.labels_of(n)},
             "spec": {"unschedulable": (n.get("spec") or {}).get("unschedulable", False),
                      "taints": (n.get("spec") or {}).get("taints", [])},
             "status": {"allocatable": (n.get("status") or {}).get("allocatable", {})}}
            for n in cluster.list("Node", None)]


def _related(cluster: ClusterReader, namespace: str, pods: list[K8sObject], workload: K8sObject) -> list[K8sObject]:
    related: list[K8sObject] = []
    waiting = {((cs.get("state") or {}).get("waiting") or {}).get("reason") for p in pods
               for cs, _ in kube.container_statuses(p)}
    # ConfigMap names and keys: to tell a typo in a reference from a missing object (a configMap volume that
    # does not resolve leaves the container in ContainerCreating with a FailedMount event).
    if waiting & {"CreateContainerConfigError", "ContainerCreating"}:
        related += cluster.list("ConfigMap", namespace)
    if workload.get("kind") in ("Deployment", "StatefulSet"):
        related += [h for h in cluster.list("HorizontalPodAutoscaler", namespace)
                    if ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == kube.name(workload)]
    related += _serving(cluster, namespace, workload)
    return related


def _serving(cluster: ClusterReader, namespace: str, workload: K8sObject) -> list[K8sObject]:
    """Services that send traffic to the workload's pods and PDBs guarding them: the risk's blast radius."""
    template = kube.labels_of(workload if workload.get("kind") == kube.POD else
                              (workload.get("spec") or {}).get("template") or {})
    if not template:
        return []

    def selects(selector: Any) -> bool:
        return bool(selector) and isinstance(selector, dict) and all(
            template.get(k) == v for k, v in selector.items())

    services = [s for s in cluster.list("Service", namespace) if selects((s.get("spec") or {}).get("selector"))]
    pdbs = [p for p in cluster.list("PodDisruptionBudget", namespace)
            if selects(((p.get("spec") or {}).get("selector") or {}).get("matchLabels"))]
    return [*services, *pdbs]


def _gitops(cluster: ClusterReader, workload: K8sObject) -> list[K8sObject]:
    """The Argo CD Application or Flux object that deploys the workload, if we can read it."""
    found: list[K8sObject] = []
    app_name = _argocd_app(workload)
    if app_name:
        ns, _, name = app_name.rpartition("_")
        apps = cluster.list("Application", ns or None)
        found += [a for a in apps if kube.name(a) == name]
    found += _flux(cluster, workload)
    return found


def _flux(cluster: ClusterReader, obj: K8sObject, depth: int = 0) -> list[K8sObject]:
    """Flux owners by label, the Kustomization that applied a HelmRelease, and each one's GitRepository."""
    found: list[K8sObject] = []
    labels = kube.labels_of(obj)
    for kind, (name_key, ns_key) in (("Kustomization", FLUX_KS), ("HelmRelease", FLUX_HR)):
        if not labels.get(name_key):
            continue
        owner = cluster.get(kind, labels.get(ns_key) or "flux-system", labels[name_key])
        if owner is None:
            continue
        found.append(owner)
        if kind == "HelmRelease" and depth == 0:
            found += _flux(cluster, owner, depth + 1)  # where the HelmRelease itself lives in git
        ref = (owner.get("spec") or {}).get("sourceRef") or {}
        if kind == "Kustomization" and ref.get("kind") == "GitRepository" and ref.get("name"):
            source = cluster.get("GitRepository", ref.get("namespace") or kube.meta(owner).get("namespace"),
                                 str(ref["name"]))
            if source is not None:
                found.append(source)
    return found


def _argocd_app(workload: K8sObject) -> str | None:
    """App name from the tracking annotation when it names this very object, else the instance label."""
    tracking = kube.annotations_of(workload).get(ARGOCD_TRACKING)
    if tracking and ":" in tracking:
        app, _, rest = tracking.partition(":")
        # rest: <group>/<kind>:<namespace>/<name>; a copied annotation naming another object doesn't count.
        if rest.endswith(f"/{kube.name(workload)}") and f"/{workload.get('kind', '')}:" in rest:
            return app
    instance = kube.labels_of(workload).get(INSTANCE_LABEL)
    return str(instance) if instance else None


def _focus_new_replicaset(pods: list[K8sObject], workload: K8sObject, replicasets: list[K8sObject],
                          incident: Incident) -> list[K8sObject]:
    """A stuck rollout is about the newest ReplicaSet's pods: the old ones still serve and explain nothing."""
    stuck = incident.alertname == rollout.ALERT or rollout.stuck_condition(workload) is not None
    # A workload-level alert's pod label is the exporter's own pod (FACTS.md): only a pod-level alert names one.
    names_pod = incident.pod is not None and incident.workload_hint() is None
    if names_pod or not stuck or not replicasets:
        return pods
    newest = kube.meta(replicasets[0]).get("uid")
    focused = [p for p in pods if _owned_by_any(p, {newest})]
    return focused or pods


def _capacity_objects(cluster: ClusterReader, ref: WorkloadRef, scaled: K8sObject,
                      pods: list[K8sObject]) -> list[K8sObject]:
    """What capacity detectors compare against: the claims the pods wait for (and the StorageClasses when one
    is Pending), an HPA's scale target and the namespace's ResourceQuotas, a CronJob's Jobs."""
    found: list[K8sObject] = []
    claims = sorted({str(v["persistentVolumeClaim"].get("claimName")) for p in pods
                     for v in (p.get("spec") or {}).get("volumes") or [] if v.get("persistentVolumeClaim")})
    pvcs = [c for name in claims[:MAX_PODS] if (c := cluster.get("PersistentVolumeClaim", ref.namespace, name))]
    found += pvcs
    if any((c.get("status") or {}).get("phase") == "Pending" for c in pvcs):
        found += [{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": kube.meta(sc),
                   "provisioner": sc.get("provisioner")} for sc in cluster.list("StorageClass", None)]
    if ref.kind == "HorizontalPodAutoscaler":
        found += [scaled] if scaled else []
        found += cluster.list("ResourceQuota", ref.namespace)
    if scaled.get("kind") == "CronJob":
        found += [j for j in cluster.list("Job", ref.namespace) if kube.owned_by(j, scaled)]
    return found
