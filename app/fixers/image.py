"""Roll a container's image back to the one the previous working ReplicaSet ran (a scaled-down one only when it
ran as long as the policy asks: rollback.min_available_seconds), or to the one git had before the failing one
when git's history proves it (app/stages/revision.py), held against the same minimum."""

from __future__ import annotations

from typing import Any

from app import fixers
from app.models.causes import Cause, ImageRollbackFacts
from app.models.changes import FieldChange, Plan
from app.policies import Policy


def plan(facts: ImageRollbackFacts, document: dict[str, Any], policy: Policy) -> Plan:
    container, init = facts.container, facts.init
    fixers.require_proven_revision(policy, revision=facts.previous_revision, replicaset=facts.previous_replicaset,
                                   ran=str(facts.previous_image), seconds=facts.previous_ran_seconds,
                                   by_hand="fix the image reference by hand", in_git=facts.in_git)
    good, bad = facts.previous_image, facts.failing_image
    path = fixers.image_to_roll_back(document, container=container, init=init, good=good, bad=bad,
                                     bad_is="the failing")
    return Plan(cause=Cause.IMAGE_PULL_AFTER_ROLLOUT, summary=f"Roll back image of container {container} to {good}",
                changes=[FieldChange(path=path, old=bad, new=good,
                                     reason=f"{_proof(facts)}; {bad} cannot be pulled")])


def _proof(facts: ImageRollbackFacts) -> str:
    return facts.in_git or f"revision {facts.previous_revision} ran it"
