"""Fixers: (the cause's facts, the workload object as it is in git, policy) -> Plan, one module per kind of change.

A fixer computes exact values (reproducible: same inputs, same plan) or raises NoFix saying why not. Which
fixer follows which cause is the one registry in app/causes.py; this package knows nothing of detectors.
"""

from __future__ import annotations

from typing import Any

from app import fieldpaths
from app.errors import NoFix
from app.policies import Policy
from app.quantities import format_duration


def container_path(kind: str, container: str, *, init: bool, field: str) -> str:
    """Field path of a container's field in a workload object (or a bare Pod), the container selected by name."""
    from app.kube import pod_spec_path

    spec = pod_spec_path(kind)
    if spec is None:
        raise NoFix(f"{kind} has no pod template to change", code="unsupported_kind")
    key = "initContainers" if init else "containers"
    return f"{spec}.{key}[name={container}].{field}"


def recreate_note(document: dict[str, Any]) -> str:
    """What a change to a bare Pod needs once merged (empty for any other kind): a Pod's spec, resources included,
    cannot change in place, so the sync is refused until the Pod is deleted and created again from git."""
    if document.get("kind") != "Pod":
        return ""
    name = (document.get("metadata") or {}).get("name")
    return f"; Pods are immutable: once merged, delete Pod {name} so the sync recreates it"


def value_in_git(document: dict[str, Any], path: str, *, default: Any = None) -> Any:
    """The value at ``path`` in the workload as git has it, or ``default`` when the field is absent."""
    try:
        return fieldpaths.get(document, path)
    except (KeyError, IndexError, TypeError):
        return default


def required_in_git(document: dict[str, Any], path: str, *, missing: str, code: str) -> Any:
    """The value at ``path`` in git; absent, there is nothing to correct: NoFix with ``missing`` as the reason."""
    try:
        return fieldpaths.get(document, path)
    except (KeyError, IndexError, TypeError) as err:
        raise NoFix(missing, code=code) from err


def require_proven_revision(policy: Policy, *, revision: object, replicaset: object, ran: str,
                            seconds: int | None, by_hand: str, in_git: str | None = None) -> None:
    """A rollback's target must have run long enough to count as having worked (policy
    rollback.min_available_seconds); else NoFix saying how long it ran and what to do by hand. ``in_git``: the
    target is proven by git's history instead of a ReplicaSet (how long git had it, or it was deployed)."""
    if not policy.rollback.too_short(seconds):
        return
    minimum = (f"less than the {format_duration(policy.rollback.min_available_seconds)} a revision must have run to "
               f"count as having worked (policy rollback.min_available_seconds): no evidence it ever worked; {by_hand}")
    if in_git is not None:
        raise NoFix(f"{in_git}: {minimum}", code="unproven_revision")
    raise NoFix(f"revision {revision} (replicaset {replicaset}) ran {ran} for only "
                f"{format_duration(seconds or 0)} before it was scaled down, {minimum}", code="unproven_revision")


def image_to_roll_back(document: dict[str, Any], *, container: str, init: bool, good: str, bad: str,
                       bad_is: str) -> str:
    """The container's image path in git, when git still has the ``bad`` image (``bad_is`` names it: "the failing",
    "the release"); NoFix when git has no image there, already has ``good`` (the rollback waits for a sync), or
    holds a third value (someone changed it since: never overridden)."""
    path = container_path(str(document.get("kind")), container, init=init, field="image")
    in_git = required_in_git(document, path, code="no_image_in_git",
                             missing=f"the manifest in git has no image for container {container}")
    if in_git == good:
        raise NoFix(f"git already has image {good}: the rollback is waiting to be synced", code="already_in_git")
    if in_git != bad:
        raise NoFix(f"git has image {in_git}, neither {bad_is} {bad} nor the working {good}: someone changed "
                    "it since; not overriding", code="git_moved")
    return path
