"""rollout_stuck: not a cause of its own but the context of one. The evidence keeps the new ReplicaSet's
pods, the other detectors find why, and the stuck rollout is put in front of their finding; nothing
recognised, the stuck rollout itself is reported without a fix."""

from __future__ import annotations

from app import causes
from app.models.causes import Cause
from tests.unit.detectors.support import DEFAULT, Items, check_case, evidence, item


def test_new_replicaset_image_is_rolled_back() -> None:  # was test_detect_and_plan[rollout-stuck-new-replicaset-image]
    check_case("rollout-stuck-bad-image", "apps/checkout/deployment.yaml", None, None, DEFAULT,
               {"spec.template.spec.containers[name=checkout].image": "ghcr.io/acme/checkout:1.4.2"})


def test_stuck_rollout_focuses_on_the_new_replicaset_and_says_so() -> None:
    ev = evidence("rollout-stuck-bad-image")
    newest = ev.replicasets[0]["metadata"]["uid"]
    assert ev.pods and all(p["metadata"]["ownerReferences"][0]["uid"] == newest for p in ev.pods)
    diagnosis = causes.diagnose(ev)[0]
    assert diagnosis.cause == Cause.IMAGE_PULL_AFTER_ROLLOUT
    assert diagnosis.finding.root_cause.startswith("The rollout of shop/checkout is stuck: the pods of its new "
                                                   "ReplicaSet checkout-6f5d4c8b9 (revision 4) never became ready.")
    assert "ProgressDeadlineExceeded" in diagnosis.finding.evidence[0]
    assert diagnosis.finding.facts.rollout_stuck is True


def test_stuck_rollout_without_a_recognised_cause_is_reported_without_fix() -> None:
    def healthy_pull(items: Items) -> None:  # the new pod is just not ready yet: nothing a rule knows
        pod = item(items, "Pod", "checkout-6f5d4c8b9-t6rzb")
        pod["status"]["containerStatuses"][0]["state"] = {"running": {"startedAt": "2026-11-23T14:03:00Z"}}
        for event in [i for i in items if i["kind"] == "Event"]:
            items.remove(event)

    found = causes.diagnose(evidence("rollout-stuck-bad-image", mutate=healthy_pull))
    assert [d.cause for d in found] == [Cause.ROLLOUT_STUCK]
    assert not found[0].fixable and "new ReplicaSet" in str(found[0].no_fix_reason)
