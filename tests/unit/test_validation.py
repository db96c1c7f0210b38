"""Validation of an edited file against its plan and the Kubernetes schema."""

from __future__ import annotations

import pytest

from app import validation, yaml_rt
from app.errors import PermanentError
from app.models.changes import FieldChange, Plan

MEM = "spec.template.spec.containers[name=checkout].resources.limits.memory"
OLD = """---
apiVersion: v1
kind: Service
metadata:
  name: checkout
spec:
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: checkout
spec:
  replicas: 2
  selector:
    matchLabels: {app: checkout}
  template:
    metadata:
      labels: {app: checkout}
    spec:
      containers:
        - name: sidecar
          image: envoy:1
        - name: checkout
          image: shop:1
          resources:
            limits:
              memory: 512Mi
"""
CRD = """apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: rules
spec:
  groups: []
  replicas: 1
"""


def _plan(*changes: tuple[str, object], allowed: list[str] | None = None) -> Plan:
    return Plan(
        cause="oom",
        summary="raise memory",
        changes=[FieldChange(path=p, new=v) for p, v in changes],
        allowed_paths=allowed or [],
    )


def _refused(old: str, new: str, plan: Plan, *, index: int = 1) -> str:
    with pytest.raises(PermanentError) as info:
        validation.check(old, new, document_index=index, plan=plan)
    assert info.value.code == "validation_failed"
    return info.value.message


def test_planned_change_passes() -> None:
    new = yaml_rt.edit(OLD, document_index=1, changes=[(MEM, "768Mi")])
    plan = _plan((MEM, "768Mi"), allowed=["spec.template.spec.containers[*].resources.*"])
    assert validation.check(OLD, new, document_index=1, plan=plan) == [
        "parses: 2 documents, others unchanged",
        f"changed exactly: {MEM}",
        f"new values: {MEM}=768Mi",
        "schema: apps/v1 Deployment valid for Kubernetes 1.33",
    ]


def test_index_path_in_plan_is_accepted() -> None:
    new = yaml_rt.edit(OLD, document_index=1, changes=[(MEM, "768Mi")])
    plan = _plan(("spec.template.spec.containers[1].resources.limits.memory", "768Mi"))
    assert validation.check(OLD, new, document_index=1, plan=plan)[1] == f"changed exactly: {MEM}"


@pytest.mark.parametrize(
    ("edits", "plan", "reason"),
    [
        pytest.param(
            [(MEM, "768Mi"), ("spec.replicas", 3)],
            _plan((MEM, "768Mi")),
            "unexpected change outside the plan: spec.replicas",
            id="change-outside-plan",
        ),
        pytest.param(
            [(MEM, "768Mi")],
            _plan((MEM, "1Gi")),
            "is '768Mi', plan says '1Gi'",
            id="wrong-value",
        ),
        pytest.param(
            [(MEM, "768Mi")],
            _plan((MEM, "768Mi"), allowed=["spec.template.spec.containers[*].image"]),
            "change not allowed for oom",
            id="not-in-allow-list",
        ),
        pytest.param(
            [],
            _plan((MEM, "768Mi")),
            "planned change did not happen",
            id="nothing-changed",
        ),
        pytest.param(
            [("spec.replicas", "three")],
            _plan(("spec.replicas", "three")),
            "spec.replicas: 'three' is not of type 'integer'",
            id="schema-invalid-value",
        ),
        pytest.param(
            [("spec.template.spec.containers[name=checkout].memoryLimit", "1Gi")],
            _plan(("spec.template.spec.containers[name=checkout].memoryLimit", "1Gi")),
            "memoryLimit",
            id="schema-unknown-field",
        ),
    ],
)
def test_refused(edits: list[tuple[str, object]], plan: Plan, reason: str) -> None:
    new = yaml_rt.edit(OLD, document_index=1, changes=edits) if edits else OLD
    assert reason in _refused(OLD, new, plan)


def test_other_document_changed_is_refused() -> None:
    new = OLD.replace("port: 80", "port: 81").replace("memory: 512Mi", "memory: 768Mi")
    assert "document 0 changed" in _refused(OLD, new, _plan((MEM, "768Mi")))


def test_unparsable_is_refused() -> None:
    assert "does not parse" in _refused(OLD, OLD + "  bad: [\n", _plan((MEM, "768Mi")))


def test_unknown_kind_skips_schema() -> None:
    new = CRD.replace("replicas: 1", "replicas: 2")
    lines = validation.check(CRD, new, document_index=0, plan=_plan(("spec.replicas", 2)))
    assert (
        lines[-1]
        == "schema: skipped, no schema for monitoring.coreos.com/v1 PrometheusRule (CRD or unknown kind)"
    )


def test_prefix_skips_schema() -> None:
    old = "checkout:\n  replicaCount: 2\n  kind: x\n  apiVersion: y\n"
    new = yaml_rt.edit(old, document_index=0, changes=[("replicaCount", 3)], prefix=("checkout",))
    lines = validation.check(
        old, new, document_index=0, prefix=("checkout",), plan=_plan(("replicaCount", 3))
    )
    assert lines == [
        "parses: 1 documents, others unchanged",
        "changed exactly: replicaCount",
        "new values: replicaCount=3",
    ]


def test_leaf_diff_matches_named_items_and_expands_added_subtrees() -> None:
    old = {"c": [{"name": "a", "x": 1}, {"name": "b", "x": 1}]}
    new = {"c": [{"name": "b", "x": 2}, {"name": "a", "x": 1, "r": {"l": {"m": "1Gi"}}}]}
    assert sorted(map(str, (validation.fieldpaths.format(p) for p in validation.leaf_diff(old, new)))) == [
        "c[name=a].r.l.m",
        "c[name=b].x",
    ]
