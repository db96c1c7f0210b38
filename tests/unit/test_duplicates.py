"""Is an open PR's branch already this change? Files, objects, fields and new values decide, not lines."""

from __future__ import annotations

import pytest

from app import duplicates

LONG = "payments-settlement-reconciliation-worker-for-eu-central-1-prod"


def deployment(name: str, memory: str, *, replicas: int = 3, comment: str = "") -> str:
    return (f"{comment}apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: shop\n"
            f"spec:\n  replicas: {replicas}\n  template:\n    spec:\n      containers:\n        - name: app\n"
            f"          resources:\n            limits:\n              memory: \"{memory}\"\n")


A, B = f"{LONG}-a", f"{LONG}-b"
FILE_A, FILE_B = f"apps/{A}/deployment.yaml", f"apps/{B}/deployment.yaml"
OURS = {FILE_A: (deployment(A, "512Mi"), deployment(A, "768Mi"))}

CASES = {
    "same-change": (OURS, True),
    "base-moved-lines-shifted": ({FILE_A: (deployment(A, "512Mi", comment="# owner: payments\n# see runbook\n"),
                                           deployment(A, "768Mi", comment="# owner: payments\n# see runbook\n"))},
                                 True),
    "twin-workload-same-lines-other-file": ({FILE_B: (deployment(B, "512Mi"), deployment(B, "768Mi"))}, False),
    "same-file-other-object": ({FILE_A: (deployment(A, "512Mi") + "---\n" + deployment(B, "512Mi"),
                                         deployment(A, "512Mi") + "---\n" + deployment(B, "768Mi"))}, False),
    "other-value": ({FILE_A: (deployment(A, "512Mi"), deployment(A, "1Gi"))}, False),
    "value-of-another-type": ({FILE_A: (deployment(A, "512Mi"), deployment(A, "768Mi").replace('"768Mi"', "768"))},
                              False),
    "an-extra-field": ({FILE_A: (deployment(A, "512Mi"), deployment(A, "768Mi", replicas=4))}, False),
    "an-extra-file": ({**OURS, "README.md": ("# x\n", "# y\n")}, False),
    "file-deleted": ({FILE_A: (deployment(A, "512Mi"), None)}, False),
    "no-longer-yaml": ({FILE_A: (deployment(A, "512Mi"), "a: [\n")}, False),
    "renamed-object-same-field": ({FILE_A: (deployment(A, "512Mi").replace(A, "x"),
                                            deployment(A, "768Mi").replace(A, "x"))}, False),
}


@pytest.mark.parametrize(("theirs", "same"), list(CASES.values()), ids=list(CASES))
def test_same_change_compares_files_objects_fields_and_values(
        theirs: dict[str, tuple[str | None, str | None]], same: bool) -> None:
    assert duplicates.same_change(theirs, OURS) is same


def test_facts_name_file_object_field_and_value() -> None:
    assert duplicates.facts(OURS) == {(FILE_A, f"Deployment/shop/{A}",
                                      "spec.template.spec.containers[name=app].resources.limits.memory",
                                      '["str", "768Mi"]')}


def test_documents_without_a_name_are_told_apart_by_position() -> None:
    values = {"charts/api/values-prod.yaml": ("resources:\n  limits:\n    memory: 512Mi\n",
                                              "resources:\n  limits:\n    memory: 768Mi\n")}
    assert duplicates.facts(values) == {("charts/api/values-prod.yaml", "document 0", "resources.limits.memory",
                                         '["str", "768Mi"]')}
    assert duplicates.same_change(values, values)
    assert not duplicates.same_change(values, {"charts/api/values-dev.yaml": values["charts/api/values-prod.yaml"]})


def test_other_files_compare_by_content() -> None:
    assert duplicates.same_change({"kustomization.txt": ("a", "b")}, {"kustomization.txt": ("x", "b")})
    assert not duplicates.same_change({"kustomization.txt": ("a", "b")}, {"kustomization.txt": ("a", "c")})
