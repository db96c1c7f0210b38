"""Writes cluster.json: what Argo CD deployed from this repository (the chart rendered with its defaults and
envs/prod/grafana/values.yaml, as helm-python-sdk renders it, defaulted as the API server does), the first install of
Grafana in production, crash-looping on its probes. Run it from the repository root:

    .venv/bin/python tests/scenarios/real-probe404-declared-path/make_cluster.py
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from app.adapters.renderers import SandboxedRenderer
from app.sources.layouts.helm import merged

HERE = Path(__file__).resolve().parent
REPO = HERE / "repo"
NS = "monitoring"
DEP_UID, RS_UID, POD_UID = ("0d6f3a2e-91c4-5b7d-8e2a-4c9b1f7d3e60", "6a1e9c4b-2d7f-5a38-b0c6-9e4d2f8a1b73",
                            "c3b8e1f4-7a2d-5e96-a1c0-5d8f2b6e9a47")
RS, POD = "grafana-7f6c9d8b54", "grafana-7f6c9d8b54-n8q2w"
SYNCED, STARTED, LAST_START = "2026-11-23T09:40:58Z", "2026-11-23T09:41:11Z", "2026-11-23T09:59:42Z"
PROBE_DEFAULTS = {"periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3, "timeoutSeconds": 1}


def render() -> list[dict[str, Any]]:
    chart = REPO / "charts" / "grafana"
    files = {str(p.relative_to(REPO)): p.read_text() for p in chart.rglob("*") if p.is_file()}
    values = merged([yaml.safe_load((chart / "values.yaml").read_text()),
                     yaml.safe_load((REPO / "envs/prod/grafana/values.yaml").read_text())])
    return SandboxedRenderer().helm(files, "charts/grafana", values=values, release="grafana", namespace=NS)


def defaulted(spec: dict[str, Any]) -> dict[str, Any]:
    """The pod spec as the API server stores it."""
    spec = copy.deepcopy(spec)
    spec.update({"dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                 "terminationGracePeriodSeconds": 30})
    for c in spec["containers"]:
        c.update({"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"})
        for probe in ("livenessProbe", "readinessProbe"):
            c[probe] = {**PROBE_DEFAULTS, **c[probe]}
            c[probe]["httpGet"] = {**c[probe]["httpGet"], "scheme": "HTTP"}
    for volume in spec["volumes"]:
        if "configMap" in volume:
            volume["configMap"]["defaultMode"] = 420
    return spec


def event(name: str, *, kind: str, obj: str, uid: str, reason: str, message: str, first: str, last: str,
          count: int = 1, component: str = "kubelet", type_: str = "Normal", field: str | None = None) -> dict[str, Any]:
    involved: dict[str, Any] = {"apiVersion": "v1" if kind == "Pod" else "apps/v1", "kind": kind, "name": obj,
                                "namespace": NS, "uid": uid}
    if field:
        involved["fieldPath"] = field
    host = "k8s-worker-01" if component == "kubelet" else ""
    return {"apiVersion": "v1", "count": count, "eventTime": None, "firstTimestamp": first, "lastTimestamp": last,
            "involvedObject": involved, "kind": "Event", "message": message, "reason": reason, "type": type_,
            "metadata": {"creationTimestamp": first, "name": name, "namespace": NS},
            "reportingComponent": component, "reportingInstance": host,
            "source": {"component": component, **({"host": host} if host else {})}}


def build() -> dict[str, Any]:
    rendered = {(o["kind"], o["metadata"]["name"]): o for o in render()}
    dep = copy.deepcopy(rendered[("Deployment", "grafana")])
    template = dep["spec"]["template"]
    template["spec"] = defaulted(template["spec"])
    dep["metadata"].update({"uid": DEP_UID, "creationTimestamp": "2026-11-23T09:40:59Z", "generation": 1,
                            "resourceVersion": "51820337",
                            "annotations": {"argocd.argoproj.io/tracking-id": f"grafana:apps/Deployment:{NS}/grafana",
                                            "deployment.kubernetes.io/revision": "1"}})
    dep["spec"].update({"progressDeadlineSeconds": 600,
                        "strategy": {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}})
    dep["status"] = {
        "conditions": [
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
             "message": "Deployment does not have minimum availability.",
             "lastTransitionTime": "2026-11-23T09:40:59Z", "lastUpdateTime": "2026-11-23T09:40:59Z"},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": f"ReplicaSet \"{RS}\" has timed out progressing.",
             "lastTransitionTime": "2026-11-23T09:51:00Z", "lastUpdateTime": "2026-11-23T09:51:00Z"}],
        "observedGeneration": 1, "replicas": 1, "unavailableReplicas": 1, "updatedReplicas": 1}

    labels = {**template["metadata"]["labels"], "pod-template-hash": RS.rsplit("-", 1)[1]}
    owner = {"apiVersion": "apps/v1", "blockOwnerDeletion": True, "controller": True}
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": RS, "namespace": NS, "uid": RS_UID, "creationTimestamp": "2026-11-23T09:40:59Z",
                       "generation": 1, "labels": labels,
                       "annotations": {"deployment.kubernetes.io/desired-replicas": "1",
                                       "deployment.kubernetes.io/max-replicas": "2",
                                       "deployment.kubernetes.io/revision": "1"},
                       "ownerReferences": [{**owner, "kind": "Deployment", "name": "grafana", "uid": DEP_UID}]},
          "spec": {"replicas": 1, "selector": {"matchLabels": {**dep["spec"]["selector"]["matchLabels"],
                                                               "pod-template-hash": labels["pod-template-hash"]}},
                   "template": {**template, "metadata": {**template["metadata"], "labels": labels}}},
          "status": {"fullyLabeledReplicas": 1, "observedGeneration": 1, "replicas": 1}}

    pod_spec = copy.deepcopy(template["spec"])
    pod_spec.update({"nodeName": "k8s-worker-01", "serviceAccount": "grafana", "priority": 0,
                     "preemptionPolicy": "PreemptLowerPriority"})
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": POD, "generateName": f"{RS}-", "namespace": NS, "uid": POD_UID,
                        "creationTimestamp": "2026-11-23T09:40:59Z", "labels": labels,
                        "annotations": template["metadata"]["annotations"],
                        "ownerReferences": [{**owner, "kind": "ReplicaSet", "name": RS, "uid": RS_UID}]},
           "spec": pod_spec,
           "status": {"phase": "Running", "qosClass": "Burstable", "startTime": "2026-11-23T09:40:59Z",
                      "hostIP": "192.168.10.21", "hostIPs": [{"ip": "192.168.10.21"}],
                      "podIP": "10.244.0.118", "podIPs": [{"ip": "10.244.0.118"}],
                      "conditions": [
                          {"type": t, "status": s, "lastProbeTime": None,
                           "lastTransitionTime": "2026-11-23T09:41:00Z" if t == "PodReadyToStartContainers"
                           else "2026-11-23T09:40:59Z",
                           **({"reason": "ContainersNotReady", "message": "containers with unready status: [grafana]"}
                              if s == "False" else {})}
                          for t, s in (("PodReadyToStartContainers", "True"), ("Initialized", "True"),
                                       ("Ready", "False"), ("ContainersReady", "False"), ("PodScheduled", "True"))],
                      "containerStatuses": [{
                          "name": "grafana", "image": "docker.io/grafana/grafana:12.3.1",
                          "imageID": "docker.io/grafana/grafana@sha256:"
                                     "2b9e6d4f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b",
                          "containerID": "containerd://5f1c9e3a7b2d4f6e8a0c1b3d5e7f9a2c4e6b8d0f1a3c5e7b9d2f4a6c8e0b1d3f",
                          "ready": False, "started": False, "restartCount": 5,
                          "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                "message": f"back-off 2m40s restarting failed container=grafana "
                                                           f"pod={POD}_{NS}({POD_UID})"}},
                          "lastState": {"terminated": {
                              "exitCode": 0, "reason": "Completed", "startedAt": LAST_START,
                              "finishedAt": "2026-11-23T10:02:52Z",
                              "containerID": "containerd://9a7e5c3b1d2f4e6a8c0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d1f3a5c7e9b2d4f6a"}},
                      }]}}

    service = copy.deepcopy(rendered[("Service", "grafana")])
    service["metadata"].update({"uid": "e4a7c1d9-3b5f-5e82-9c6a-1f3d7b9e2a58", "creationTimestamp": "2026-11-23T09:40:59Z",
                                "annotations": {"argocd.argoproj.io/tracking-id": f"grafana:/Service:{NS}/grafana"}})
    service["spec"].update({"clusterIP": "10.96.148.203", "clusterIPs": ["10.96.148.203"], "sessionAffinity": "None",
                            "internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"],
                            "ipFamilyPolicy": "SingleStack"})
    service["status"] = {"loadBalancer": {}}

    app = yaml.safe_load((REPO / "argocd" / "grafana.yaml").read_text())
    app["metadata"].update({"uid": "8b2d4f6a-1c3e-5a7b-9d0f-2e4a6c8b1d3f", "creationTimestamp": "2026-11-23T09:40:41Z",
                            "generation": 212, "resourceVersion": "51822918"})
    source = app["spec"]["source"]
    app["status"] = {
        "history": [{"id": 0, "revision": "5d1e3f7a9b2c4d6e8f0a1b3c5d7e9f1a3b5c7d9e", "source": source,
                     "deployStartedAt": "2026-11-23T09:40:56Z", "deployedAt": SYNCED,
                     "initiatedBy": {"automated": True}}],
        "health": {"status": "Progressing", "lastTransitionTime": "2026-11-23T09:40:59Z"},
        "sync": {"status": "Synced", "revision": "5d1e3f7a9b2c4d6e8f0a1b3c5d7e9f1a3b5c7d9e",
                 "comparedTo": {"source": source, "destination": app["spec"]["destination"]}},
        "sourceType": "Helm", "summary": {"images": ["docker.io/grafana/grafana:12.3.1"]},
        "reconciledAt": "2026-11-23T10:03:40Z"}

    kubelet = {"kind": "Pod", "obj": POD, "uid": POD_UID, "field": "spec.containers{grafana}"}
    events = [
        event("grafana.187a9d1e4b2c6f01", kind="Deployment", obj="grafana", uid=DEP_UID, reason="ScalingReplicaSet",
              message=f"Scaled up replica set {RS} from 0 to 1", first="2026-11-23T09:40:59Z",
              last="2026-11-23T09:40:59Z", component="deployment-controller"),
        event(f"{RS}.187a9d1e4c7d2a13", kind="ReplicaSet", obj=RS, uid=RS_UID, reason="SuccessfulCreate",
              message=f"Created pod: {POD}", first="2026-11-23T09:40:59Z", last="2026-11-23T09:40:59Z",
              component="replicaset-controller"),
        event(f"{POD}.187a9d1e4d3f8b24", kind="Pod", obj=POD, uid=POD_UID, reason="Scheduled",
              message=f"Successfully assigned {NS}/{POD} to k8s-worker-01", first="2026-11-23T09:40:59Z",
              last="2026-11-23T09:40:59Z", component="default-scheduler"),
        event(f"{POD}.187a9d1e6a1b3c35", reason="Pulling", message="Pulling image \"docker.io/grafana/grafana:12.3.1\"",
              first="2026-11-23T09:41:00Z", last="2026-11-23T09:41:00Z", **kubelet),
        event(f"{POD}.187a9d20f2c4e546", reason="Pulled",
              message="Successfully pulled image \"docker.io/grafana/grafana:12.3.1\" in 9.812s (9.812s including "
                      "waiting). Image size: 206459012 bytes.",
              first="2026-11-23T09:41:10Z", last="2026-11-23T09:41:10Z", **kubelet),
        event(f"{POD}.187a9d20f8d6a657", reason="Pulled",
              message="Container image \"docker.io/grafana/grafana:12.3.1\" already present on machine and can be "
                      "accessed by the pod", count=5, first="2026-11-23T09:44:31Z", last=LAST_START, **kubelet),
        event(f"{POD}.187a9d20fb1e7768", reason="Created", message="Container created", count=6,
              first="2026-11-23T09:41:10Z", last=LAST_START, **kubelet),
        event(f"{POD}.187a9d2103a2c879", reason="Started", message="Container started", count=6,
              first="2026-11-23T09:41:11Z", last=LAST_START, **kubelet),
        event(f"{POD}.187a9d21d5e4f98a", reason="Unhealthy", type_="Warning",
              message="Readiness probe failed: HTTP probe failed with statuscode: 404", count=214,
              first="2026-11-23T09:41:16Z", last="2026-11-23T10:02:51Z", **kubelet),
        event(f"{POD}.187a9d276b8a0a9b", reason="Unhealthy", type_="Warning",
              message="Liveness probe failed: HTTP probe failed with statuscode: 404", count=50,
              first="2026-11-23T09:42:41Z", last="2026-11-23T10:02:51Z", **kubelet),
        event(f"{POD}.187a9d28c93d1bac", reason="Killing",
              message="Container grafana failed liveness probe, will be restarted", count=5,
              first="2026-11-23T09:44:21Z", last="2026-11-23T10:02:51Z", **kubelet),
        event(f"{POD}.187a9d29a1f7ccbd", reason="BackOff", type_="Warning",
              message=f"Back-off restarting failed container grafana in pod {POD}_{NS}({POD_UID})", count=11,
              first="2026-11-23T09:47:48Z", last="2026-11-23T10:03:38Z", **kubelet),
    ]
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": NS, "uid": "71c3e5a9-8d2b-5f4e-a6c1-3b9d7f2e5a84",
                              "creationTimestamp": "2026-03-14T09:20:05Z",
                              "labels": {"kubernetes.io/metadata.name": NS}},
                 "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
            "items": [namespace, dep, rs, pod, service, app, *events],
            "logs": {f"{NS}/{POD}/grafana": {"current": "", "previous": LOG}}}


# Grafana's own log (logfmt) of the run the liveness probe ended: it starts, listens on 3000 and is told to stop.
# Its HTTP router logging is off by default, so the probes' 404s leave no line.
LOG = "".join(line + "\n" for line in (
    'logger=settings t=2026-11-23T09:59:42.318907452Z level=info msg="Starting Grafana" version=12.3.1 '
    'commit=0ba0b99665a branch=HEAD compiled=2026-11-23T09:59:42Z',
    'logger=settings t=2026-11-23T09:59:42.319472013Z level=info msg="Config loaded from" '
    'file=/usr/share/grafana/conf/defaults.ini',
    'logger=settings t=2026-11-23T09:59:42.319488245Z level=info msg="Config loaded from" file=/etc/grafana/grafana.ini',
    'logger=settings t=2026-11-23T09:59:42.319530871Z level=info msg="Path Home" path=/usr/share/grafana',
    'logger=settings t=2026-11-23T09:59:42.319542106Z level=info msg="Path Data" path=/var/lib/grafana/',
    'logger=settings t=2026-11-23T09:59:42.319553301Z level=info msg="Path Logs" path=/var/log/grafana',
    'logger=settings t=2026-11-23T09:59:42.319564538Z level=info msg="Path Plugins" path=/var/lib/grafana/plugins',
    'logger=settings t=2026-11-23T09:59:42.319575634Z level=info msg="Path Provisioning" '
    'path=/etc/grafana/provisioning',
    'logger=settings t=2026-11-23T09:59:42.319586815Z level=info msg="App mode production"',
    'logger=sqlstore t=2026-11-23T09:59:42.320114257Z level=info msg="Connecting to DB" dbtype=sqlite3',
    'logger=migrator t=2026-11-23T09:59:42.336120781Z level=info msg="Starting DB migrations"',
    'logger=migrator t=2026-11-23T09:59:49.820377604Z level=info msg="migrations completed" duration=7.484256823s',
    'logger=http.server t=2026-11-23T09:59:51.406125330Z level=info msg="HTTP Server Listen" address=[::]:3000 '
    'protocol=http subUrl= socket=',
    'logger=server t=2026-11-23T10:02:51.774008163Z level=info msg="Shutdown started" '
    'reason="System signal: terminated"',
))


if __name__ == "__main__":
    (HERE / "cluster.json").write_text(json.dumps(build(), indent=1) + "\n")
