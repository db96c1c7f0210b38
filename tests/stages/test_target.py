"""Target: from the alert's labels to the workload (read-only), and whether policy lets the bot touch it."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import NoFix, PermanentError
from app.models.incident import WorkloadRef
from app.ports import K8sObject
from app.stages import target
from tests.stages.world import World, namespace, snapshot

CHECKOUT = WorkloadRef(kind="Deployment", namespace="shop", name="checkout")


class ForbiddenNamespaces:
    """The cluster port of an install whose RBAC does not grant reading Namespaces (a 403 from the API)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def get(self, kind: str, namespace: str | None, name: str) -> K8sObject | None:
        if kind == "Namespace":
            raise PermanentError(f'namespaces "{name}" is forbidden (403)')
        result: K8sObject | None = self._inner.get(kind, namespace, name)
        return result

    def list(self, kind: str, namespace: str | None, *, label_selector: str | None = None) -> list[K8sObject]:
        result: list[K8sObject] = self._inner.list(kind, namespace, label_selector=label_selector)
        return result

    def logs(self, namespace: str, pod: str, container: str, *, previous: bool, tail_lines: int) -> str:
        result: str = self._inner.logs(namespace, pod, container, previous=previous, tail_lines=tail_lines)
        return result


def test_the_pod_leads_to_its_deployment_and_the_namespace_labels_come_along(world: World) -> None:
    cluster = snapshot(extra=[namespace("shop", **{"env": "staging"})])
    out = target.resolve(cluster=cluster, incident=world.incident(), policy=world.policy, own_namespace=None)
    assert (out.workload, out.decision, out.stop) == (CHECKOUT, "workload Deployment/shop/checkout", None)
    assert out.namespace_labels == {"env": "staging"}


@pytest.mark.parametrize(("labels", "kinds", "kind", "reason"), [
    pytest.param({"autofix.io/protected": "true"}, None, "skipped",
                 "namespace shop is labelled autofix.io/protected=true", id="protected-namespace"),
    pytest.param({}, ["StatefulSet"], "skipped", "kind Deployment is not allowed by policy", id="kind-not-allowed"),
])
def test_policy_stops_at_the_workload(world: World, labels: dict[str, str], kinds: list[str] | None, kind: str,
                                      reason: str) -> None:
    policy = world.policy.model_copy(update={"kinds": kinds}) if kinds else world.policy
    out = target.resolve(cluster=snapshot(extra=[namespace("shop", **labels)]), incident=world.incident(),
                         policy=policy, own_namespace=None)
    assert out.workload == CHECKOUT and out.decision == "workload Deployment/shop/checkout"
    assert out.stop is not None and (out.stop.kind, out.stop.reason) == (kind, reason)


def test_an_unreadable_namespace_is_no_fix_not_a_guess(world: World) -> None:
    out = target.resolve(cluster=ForbiddenNamespaces(world.cluster), incident=world.incident(), policy=world.policy,
                         own_namespace=None)
    assert out.stop is not None and (out.stop.kind, out.stop.code) == ("no_fix", "namespace_unreadable")
    assert out.stop.reason.startswith("cannot read Namespace shop to check whether it is protected")
    assert out.workload == CHECKOUT, "the workload is known (recorded) even though the bot stops"


def test_an_alert_that_names_no_workload_and_no_pod_is_no_fix(world: World) -> None:
    incident = world.incident()
    bare = incident.model_copy(update={"labels": {"alertname": incident.alertname, "namespace": "shop"}})
    with pytest.raises(NoFix, match="names no workload and no pod"):
        target.resolve(cluster=world.cluster, incident=bare, policy=world.policy, own_namespace=None)
