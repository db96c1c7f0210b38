"""Restore a container's command/args to the ones the previous working ReplicaSet ran.

Only item-by-item corrections of lists of the same length are written (the typo case): a command that
gained or lost items, or appeared where the image's entrypoint ran before, is left to a human.
"""

from __future__ import annotations

from typing import Any

from app import fixers
from app.detectors import commands
from app.errors import NoFix
from app.models.changes import FieldChange, Plan
from app.models.diagnosis import Diagnosis
from app.policies import Policy

CAUSE = commands.CAUSE


def plan(diagnosis: Diagnosis, document: dict[str, Any], policy: Policy) -> Plan:
    facts = diagnosis.finding.facts
    container, init = str(facts["container"]), bool(facts.get("init"))
    kind = str(document.get("kind"))
    changes: list[FieldChange] = []
    for field in ("command", "args"):
        bad, good = facts.get(f"failing_{field}"), facts.get(f"previous_{field}")
        if bad == good:
            continue
        path = fixers.container_path(kind, container, init=init, field=field)
        changes += _items(path, fixers.value_in_git(document, path), bad, good, facts)
    if not changes:
        raise NoFix(f"git already has the working command of container {container}: waiting to be synced",
                    code="already_in_git")
    return Plan(cause=CAUSE, changes=changes,
                summary=f"Restore the command of container {container} from revision {facts.get('previous_revision')}")


def _items(path: str, in_git: Any, bad: Any, good: Any, facts: dict[str, Any]) -> list[FieldChange]:
    if in_git == good:
        return []
    if in_git != bad:
        raise NoFix(f"git has {path.rsplit('.', 1)[-1]} {in_git}, not the failing {bad}: someone changed it since; "
                    "not overriding", code="git_moved")
    if not isinstance(bad, list) or not isinstance(good, list) or len(bad) != len(good):
        raise NoFix(f"revision {facts.get('previous_revision')} ran {path.rsplit('.', 1)[-1]} {good}; git has {bad}: "
                    "more than a corrected word, restore it by hand", code="edit_unsupported")
    why = f"revision {facts.get('previous_revision')} ran it; {facts.get('executable')!r} is not in the image"
    return [FieldChange(path=f"{path}[{i}]", old=old, new=new, reason=why)
            for i, (old, new) in enumerate(zip(bad, good, strict=True)) if old != new]

