"""Restore a container's command/args to the ones the previous working ReplicaSet ran.

Only item-by-item corrections of lists of the same length are written (the typo case): a command that
gained or lost items, or appeared where the image's entrypoint ran before, is left to a human.
"""

from __future__ import annotations

from typing import Any

from app import fixers
from app.errors import NoFix
from app.models.causes import Cause, CommandRollbackFacts
from app.models.changes import FieldChange, Plan
from app.policies import Policy


def plan(facts: CommandRollbackFacts, document: dict[str, Any], policy: Policy) -> Plan:
    container, init = facts.container, facts.init
    fixers.require_proven_revision(policy, revision=facts.previous_revision, replicaset=facts.previous_replicaset,
                                   ran=f"command {facts.previous_command}", seconds=facts.previous_ran_seconds,
                                   by_hand="correct the command by hand")
    kind = str(document.get("kind"))
    changes: list[FieldChange] = []
    pairs = {"command": (facts.failing_command, facts.previous_command),
             "args": (facts.failing_args, facts.previous_args)}
    for field, (bad, good) in pairs.items():
        if bad == good:
            continue
        path = fixers.container_path(kind, container, init=init, field=field)
        changes += _items(path, fixers.value_in_git(document, path), bad, good, facts)
    if not changes:
        raise NoFix(f"git already has the working command of container {container}: waiting to be synced",
                    code="already_in_git")
    return Plan(cause=Cause.BAD_COMMAND, changes=changes,
                summary=f"Restore the command of container {container} from revision {facts.previous_revision}")


def _items(path: str, in_git: Any, bad: Any, good: Any, facts: CommandRollbackFacts) -> list[FieldChange]:
    if in_git == good:
        return []
    if in_git != bad:
        raise NoFix(f"git has {path.rsplit('.', 1)[-1]} {in_git}, not the failing {bad}: someone changed it since; "
                    "not overriding", code="git_moved")
    if not isinstance(bad, list) or not isinstance(good, list) or len(bad) != len(good):
        raise NoFix(f"revision {facts.previous_revision} ran {path.rsplit('.', 1)[-1]} {good}; git has {bad}: "
                    "more than a corrected word, restore it by hand", code="edit_unsupported")
    why = f"revision {facts.previous_revision} ran it; {facts.executable!r} is not in the image"
    return [FieldChange(path=f"{path}[{i}]", old=old, new=new, reason=why)
            for i, (old, new) in enumerate(zip(bad, good, strict=True)) if old != new]

