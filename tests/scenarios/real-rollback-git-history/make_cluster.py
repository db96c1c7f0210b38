"""Writes cluster.json from real-rollback-recreate-redis's snapshot (same chart, values and Argo CD Application):
the Deployment deleted at 12:07:02 and recreated by Argo CD's self-heal at 12:07:10, so its ReplicaSets went with
it. Run it from the repository root: python tests/scenarios/real-rollback-git-history/make_cluster.py

The Argo CD history's revisions are the commits tests/e2e/test_rollback_git_history.py writes ("{{commit:N}}", the
Nth commit of the repository it builds), replaced when the test runs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "real-rollback-recreate-redis" / "cluster.json"
OLD_UID = "34e7ab82-ea99-52b0-ad05-9d1e58761b7c"  # the Deployment before it was deleted
NEW_UID = "9c2f5e71-4b0d-5a8e-b3c6-d17e0f2a8b94"
RS = "podinfo-redis-6b4f9d7c85"  # the failing template: the same pod-template-hash before and after
RS_UID = "5e8a0c3d-7f19-5b26-a4e2-c9b1d6f30e57"
POD = f"{RS}-w4k8n"
POD_UID = "0b7d3e9f-2a64-5c18-8e0b-4f6a9c2d1e73"
CREATED = "2026-11-23T12:07:10Z"  # Argo CD's self-heal sync created it again


def _event(name: str, *, kind: str, obj: str, uid: str, reason: str, message: str, first: str, last: str,
           count: int = 1, kind_api: str = "apps/v1", component: str = "deployment-controller",
           type_: str = "Normal", host: str | None = None, field: str | None = None) -> dict[str, Any]:
    involved: dict[str, Any] = {"apiVersion": kind_api, "kind": kind, "name": obj, "namespace": "podinfo",
                                "uid": uid}
    if field:
        involved["fieldPath"] = field
    source: dict[str, Any] = {"component": component}
    if host:
        source["host"] = host
    return {"apiVersion": "v1", "count": count, "eventTime": None, "firstTimestamp": first,
            "involvedObject": involved, "kind": "Event", "lastTimestamp": last, "message": message,
            "metadata": {"creationTimestamp": first, "name": name, "namespace": "podinfo"},
            "reason": reason, "reportingComponent": component, "reportingInstance": host or "", "source": source,
            "type": type_}


def _history(entries: list[tuple[int, str, str]]) -> list[dict[str, Any]]:
    source = {"helm": {"releaseName": "podinfo", "valueFiles": ["values-prod.yaml"]}, "path": "charts/podinfo",
              "repoURL": "https://github.com/acme/gitops.git", "targetRevision": "main"}
    return [{"deployStartedAt": started, "deployedAt": deployed, "id": i, "initiatedBy": {"automated": True},
             "revision": f"{{{{commit:{commit}}}}}", "source": source}
            for i, (commit, started, deployed) in enumerate(entries)]


def build() -> dict[str, Any]:
    data = json.loads(SOURCE.read_text())
    keep = [i for i in data["items"] if i["kind"] not in ("Deployment", "ReplicaSet", "Pod", "Event", "Application")]
    old = {(i["kind"], i["metadata"]["name"]): i for i in data["items"]}

    dep = copy.deepcopy(old[("Deployment", "podinfo-redis")])
    dep["metadata"].update({"creationTimestamp": CREATED, "generation": 1, "resourceVersion": "48391207",
                            "uid": NEW_UID})
    dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "1"
    dep["status"] = {
        "conditions": [
            {"lastTransitionTime": CREATED, "lastUpdateTime": CREATED, "type": "Available", "status": "False",
             "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability."},
            {"lastTransitionTime": "2026-11-23T12:17:11Z", "lastUpdateTime": "2026-11-23T12:17:11Z",
             "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": f"ReplicaSet \"{RS}\" has timed out progressing."}],
        "observedGeneration": 1, "replicas": 1, "terminatingReplicas": 0, "unavailableReplicas": 1,
        "updatedReplicas": 1}

    rs = copy.deepcopy(old[("ReplicaSet", RS)])
    rs["metadata"].update({"creationTimestamp": CREATED, "resourceVersion": "48391215", "uid": RS_UID})
    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "1"
    rs["metadata"]["ownerReferences"][0]["uid"] = NEW_UID

    pod = copy.deepcopy(old[("Pod", f"{RS}-q7x2m")])
    pod["metadata"].update({"creationTimestamp": CREATED, "name": POD, "resourceVersion": "48391248",
                            "uid": POD_UID})
    pod["metadata"]["ownerReferences"][0]["uid"] = RS_UID
    pod["spec"]["containers"][0]["volumeMounts"][-1]["name"] = "kube-api-access-w4k8n"
    pod["spec"]["volumes"] = [v if not v["name"].startswith("kube-api-access") else {**v, "name": "kube-api-access-w4k8n"}
                              for v in pod["spec"].get("volumes", [])]
    pod["spec"]["nodeName"] = "k8s-worker-03"
    status = pod["status"]
    for condition in status["conditions"]:
        condition["lastTransitionTime"] = "2026-11-23T12:07:12Z" if condition["type"] == "PodReadyToStartContainers" \
            else CREATED
    status["containerStatuses"][0]["volumeMounts"][-1]["name"] = "kube-api-access-w4k8n"
    status.update({"hostIP": "192.168.10.23", "hostIPs": [{"ip": "192.168.10.23"}], "podIP": "10.244.2.31",
                   "podIPs": [{"ip": "10.244.2.31"}], "startTime": CREATED})

    app = copy.deepcopy(old[("Application", "podinfo")])
    app["metadata"].update({"creationTimestamp": "2026-10-20T08:40:51Z", "generation": 3418})
    app["status"]["history"] = _history([
        (0, "2026-10-20T08:41:33Z", "2026-10-20T08:41:35Z"),  # the import, redis 8.8.0
        (1, "2026-11-23T12:00:48Z", "2026-11-23T12:00:50Z"),  # the typo
        (1, "2026-11-23T12:07:08Z", "2026-11-23T12:07:10Z"),  # self-heal: the Deployment was deleted
    ])
    operation = app["status"]["operationState"]
    operation.update({"startedAt": "2026-11-23T12:07:08Z", "finishedAt": "2026-11-23T12:07:10Z"})
    operation["operation"]["sync"]["revision"] = operation["syncResult"]["revision"] = "{{commit:1}}"
    for resource in operation["syncResult"]["resources"]:
        if resource["kind"] == "Deployment":
            resource["message"] = "deployment.apps/podinfo-redis created"
    app["status"]["sync"]["revision"] = "{{commit:1}}"
    app["status"]["health"]["lastTransitionTime"] = "2026-11-23T12:17:11Z"
    app["status"]["reconciledAt"] = "2026-11-23T12:32:40Z"

    events = [
        # The deleted Deployment's own rollout, 6 min before it was deleted: same name, another uid; its
        # ReplicaSets and pods went with it (kubectl delete cascades).
        _event("podinfo-redis.18a0e1c4d2f", kind="Deployment", obj="podinfo-redis", uid=OLD_UID,
               reason="ScalingReplicaSet", message="Scaled down replica set podinfo-redis-5d8b7c9f64 to 0 from 1",
               first="2026-11-23T12:00:51Z", last="2026-11-23T12:00:51Z"),
        _event("podinfo-redis.18a0e1c5b7a", kind="Deployment", obj="podinfo-redis", uid=OLD_UID,
               reason="ScalingReplicaSet", message=f"Scaled up replica set {RS} from 0 to 1",
               first="2026-11-23T12:00:53Z", last="2026-11-23T12:00:53Z"),
        # The Deployment Argo CD created again.
        _event("podinfo-redis.18a0e23f9c1", kind="Deployment", obj="podinfo-redis", uid=NEW_UID,
               reason="ScalingReplicaSet", message=f"Scaled up replica set {RS} from 0 to 1",
               first=CREATED, last=CREATED),
        _event(f"{RS}.18a0e23fa04", kind="ReplicaSet", obj=RS, uid=RS_UID, reason="SuccessfulCreate",
               message=f"Created pod: {POD}", first=CREATED, last=CREATED, component="replicaset-controller"),
        _event(f"{POD}.18a0e23fb1e", kind="Pod", obj=POD, uid=POD_UID, reason="Scheduled", kind_api="v1",
               message=f"Successfully assigned podinfo/{POD} to k8s-worker-03", first=CREATED, last=CREATED,
               component="default-scheduler"),
    ]
    kubelet = dict(kind="Pod", obj=POD, uid=POD_UID, kind_api="v1", component="kubelet", host="k8s-worker-03",
                   field="spec.containers{redis}")
    not_found = ("rpc error: code = NotFound desc = failed to pull and unpack image "
                 "\"docker.io/library/redis:8.8.0-alpne\": failed to resolve reference "
                 "\"docker.io/library/redis:8.8.0-alpne\": docker.io/library/redis:8.8.0-alpne: not found")
    events += [
        _event(f"{POD}.w4k8na1", reason="Pulling", message="Pulling image \"redis:8.8.0-alpne\"", count=8,
               first="2026-11-23T12:07:12Z", last="2026-11-23T12:29:20Z", **kubelet),
        _event(f"{POD}.w4k8na2", reason="Failed", message=f"Failed to pull image \"redis:8.8.0-alpne\": {not_found}",
               count=8, type_="Warning", first="2026-11-23T12:07:13Z", last="2026-11-23T12:29:21Z", **kubelet),
        _event(f"{POD}.w4k8na3", reason="Failed", message="Error: ErrImagePull", count=8, type_="Warning",
               first="2026-11-23T12:07:13Z", last="2026-11-23T12:29:21Z", **kubelet),
        _event(f"{POD}.w4k8na4", reason="BackOff", message="Back-off pulling image \"redis:8.8.0-alpne\"", count=97,
               first="2026-11-23T12:07:14Z", last="2026-11-23T12:32:31Z", **kubelet),
        _event(f"{POD}.w4k8na5", reason="Failed", message="Error: ImagePullBackOff", count=97, type_="Warning",
               first="2026-11-23T12:07:14Z", last="2026-11-23T12:32:31Z", **kubelet),
    ]
    return {**data, "items": [*keep, dep, rs, pod, app, *events]}


if __name__ == "__main__":
    (HERE / "cluster.json").write_text(json.dumps(build(), indent=1) + "\n")
