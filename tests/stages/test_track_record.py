"""Warm and cold decisions: the risk stage reads the ledger's record of earlier fixes of the cause, the PR says it."""

from __future__ import annotations

from dataclasses import replace

from app.ports import Remediation
from tests.stages.world import World

HOUR = 3600.0


def test_a_first_fix_is_a_cold_decision(world: World) -> None:
    out = world.pipeline().handle(world.incident())
    assert out.outcome == "pr_opened"
    body = world.pr_body(1)
    assert "Cold decision: no earlier `oom_killed` fix decided yet." in body
    assert "| history | 0.50 | 0 | cold decision: no earlier oom\\_killed fix decided; no weight |" in body
    risk = next(s for s in out.stages if s.stage == "risk")
    assert risk.decision.endswith(" cold")


def test_a_second_fix_after_a_merged_first_one_states_the_track_record(world: World) -> None:
    assert world.pipeline().handle(world.incident()).outcome == "pr_opened"
    world.forge.set_state(1, "merged")
    # past the merged fix's window: a new decision; the ledger learns of the merge from the forge (ledger stage)
    world.offset = 30 * HOUR
    out = world.pipeline().handle(world.incident())
    assert (out.outcome, out.pr_url and out.pr_url.rsplit("/", 1)[-1]) == (
        "pr_opened", "2-autofix__shop__checkout__oom-killed")
    body = world.pr_body(2)
    assert ("Track record: 1 earlier `oom_killed` fix(es): 1 merged, 0 closed unmerged, 0 effective, 0 reverted "
            "(this workload: 1 earlier, 1 merged, 0 effective, 0 reverted).") in body
    assert "| history | 0.25 | 1 | 0 of 1 decided oom\\_killed fix(es) closed, reverted or ineffective; this " \
           "workload 0 of 1, counted twice |" in body
    assert "Cold decision" not in body


def test_the_followed_outcome_of_an_earlier_fix_counts(world: World) -> None:
    """Once the outcome of the merged fix is followed (``final``), the record says it was effective; a fix of the
    same cause for another workload counts for the cause, not for this workload."""
    assert world.pipeline().handle(world.incident()).outcome == "pr_opened"
    world.forge.set_state(1, "merged")
    world.offset = 30 * HOUR
    [first] = world.ledger.entries()
    world.ledger.record(replace(first, state="merged", merged_at=world.now() - 29 * HOUR, final="effective",
                                final_at=world.now() - 5 * HOUR))
    world.ledger.record(Remediation(workload="Deployment/shop/cart", cause="oom_killed",
                                    branch="autofix/shop/cart/oom-killed", pr_number=90, pr_url="https://github.com/acme/gitops/pull/90", state="merged",
                                    opened_at=world.now() - 50 * HOUR, merged_at=world.now() - 48 * HOUR,
                                    final="reverted", final_at=world.now() - 40 * HOUR))
    assert world.pipeline().handle(world.incident()).outcome == "pr_opened"
    body = world.pr_body(2)
    assert ("Track record: 2 earlier `oom_killed` fix(es): 2 merged, 0 closed unmerged, 1 effective, 1 reverted "
            "(this workload: 1 earlier, 1 merged, 1 effective, 0 reverted).") in body
    assert "| history | 0.40 | 1 | 1 of 2 decided oom\\_killed fix(es) closed, reverted or ineffective" in body


def test_a_no_fix_result_carries_its_reason_code(world: World) -> None:
    """The code reports count no_fix decisions by (app/reports.py) is in the job's result."""
    assert world.pipeline().handle(world.incident()).outcome == "pr_opened"
    world.forge.set_state(1, "closed")
    out = world.pipeline().handle(world.incident())
    assert (out.outcome, out.code, out.model_dump(mode="json")["code"]) == ("no_fix", "cooldown", "cooldown")
