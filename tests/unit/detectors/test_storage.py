"""pvc_storage_class: a claim naming a StorageClass that does not exist is corrected to the unique class with a
near name, in the StatefulSet's claim template or, for a standalone claim, in the claim's own manifest (the
diagnosis' subject); no near class is reported."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app import causes
from app.errors import NoFix
from app.models.causes import StorageClassFacts
from app.models.incident import WorkloadRef
from app.policies import Policy
from tests.unit.detectors.support import DEFAULT, SHIPPED, Items, check_case, evidence, git, item

MANIFEST = "apps/postgres/statefulset.yaml"


def _no_near_class(items: Items) -> None:
    items.remove(item(items, "StorageClass", "fast-ssd"))


def _no_templates(items: Items) -> None:
    del item(items, "StatefulSet")["spec"]["volumeClaimTemplates"]


CASES: list[Any] = [
    # id, mutate, git replace, policy, expected {path: new} | NoFix code | "no_fix:<text>"
    ("pvc-typo-in-volume-claim-template", None, None, DEFAULT,
     {"spec.volumeClaimTemplates[0].spec.storageClassName": "fast-ssd"}),
    ("pvc-no-near-class", _no_near_class, None, DEFAULT, "no_fix:no StorageClass has a name"),
]


@pytest.mark.parametrize(("mutate", "replace", "policy", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_detect_and_plan(mutate: Callable[[Items], None] | None, replace: tuple[str, str] | None, policy: Policy,
                         expected: Any) -> None:
    check_case("pvc-storageclass-typo", MANIFEST, mutate, replace, policy, expected)


BARE = "real-bare-argocd-pvc-typo"  # a bare Pod waiting for a standalone claim (local-paht, local-path exists)
CLAIM = "examples/pvc/pvc.yaml"


@pytest.mark.parametrize(("scenario", "mutate", "claim"), [
    pytest.param(BARE, None, "local-path-pvc", id="bare-pod-standalone-claim"),
    pytest.param("pvc-storageclass-typo", _no_templates, "data-postgres-0", id="statefulset-without-template"),
])
def test_a_standalone_claim_is_fixed_in_its_own_manifest(scenario: str, mutate: Callable[[Items], None] | None,
                                                         claim: str) -> None:
    ev = evidence(scenario, mutate=mutate)
    [diagnosis, *_] = causes.diagnose(ev)
    facts = diagnosis.finding.facts
    assert diagnosis.fixable and isinstance(facts, StorageClassFacts) and facts.template is None
    assert diagnosis.subject == WorkloadRef(kind="PersistentVolumeClaim", namespace=ev.workload.namespace, name=claim)


def test_the_claim_manifest_gets_the_near_class() -> None:
    [diagnosis, *_] = causes.diagnose(evidence(BARE))
    plan = causes.plan(diagnosis, git(BARE, CLAIM), DEFAULT)
    assert [(c.path, c.old, c.new) for c in plan.changes] == [("spec.storageClassName", "local-paht", "local-path")]
    assert plan.changes[0].reason.startswith("local-paht does not exist, local-path does. Claims are immutable")
    assert "delete the Pending claim local-path-pvc" in plan.changes[0].reason
    assert len(plan.changes[0].reason) < 160, "the PR's table shows 160 characters of it"
    assert "spec.storageClassName" in SHIPPED["causes"]["pvc_storage_class"]["paths"]


@pytest.mark.parametrize(("replace", "code"), [
    pytest.param(("local-paht", "local-path"), "already_in_git", id="corrected-in-git-not-synced"),
    pytest.param(("local-paht", "longhorn"), "git_moved", id="git-moved-to-another-class"),
    pytest.param(("  storageClassName: local-paht\n", ""), "no_class_in_git", id="no-class-in-git"),
    pytest.param(("name: local-path-pvc", "name: other-pvc"), "no_manifest", id="another-claim"),
])
def test_the_claim_manifest_is_not_overridden(replace: tuple[str, str], code: str) -> None:
    [diagnosis, *_] = causes.diagnose(evidence(BARE))
    with pytest.raises(NoFix) as err:
        causes.plan(diagnosis, git(BARE, CLAIM, replace=replace), DEFAULT)
    assert err.value.code == code
