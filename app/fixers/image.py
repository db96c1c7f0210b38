"""Roll a container's image back to the one the previous working ReplicaSet ran (a scaled-down one only when it
ran as long as the policy asks: rollback.min_available_seconds), or to the one git had before the failing one
when git's history proves it (app/stages/revision.py), held against the same minimum."""

from __future__ import annotations

from typing import Any

from app import fixers
from app.errors import NoFix
from app.models.causes import Cause, ImageRollbackFacts
from app.models.changes import FieldChange, Plan
from app.policies import Policy


def plan(facts: ImageRollbackFacts, document: dict[str, Any], policy: Policy) -> Plan:
    container, init = facts.container, facts.init
    fixers.require_proven_revision(policy, revision=facts.previous_revision, replicaset=facts.previous_replicaset,
                                   ran=str(facts.previous_image), seconds=facts.previous_ran_seconds,
                                   by_hand="fix the image reference by hand", in_git=facts.in_git)
    path = fixers.container_path(str(document.get("kind")), container, init=init, field="image")
    in_git = fixers.required_in_git(document, path, code="no_image_in_git",
                                    missing=f"the manifest in git has no image for container {container}")
    good, bad = facts.previous_image, facts.failing_image
    if in_git == good:
        raise NoFix(f"git already has image {good}: the rollback is waiting to be synced", code="already_in_git")
    if in_git != bad:
        raise NoFix(f"git has image {in_git}, neither the failing {bad} nor the working {good}: someone changed "
                    "it since; not overriding", code="git_moved")
    return Plan(cause=Cause.IMAGE_PULL_AFTER_ROLLOUT, summary=f"Roll back image of container {container} to {good}",
                changes=[FieldChange(path=path, old=in_git, new=good,
                                     reason=f"{_proof(facts)}; {bad} cannot be pulled")])


def _proof(facts: ImageRollbackFacts) -> str:
    return facts.in_git or f"revision {facts.previous_revision} ran it"
