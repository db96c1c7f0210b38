"""Turn a model's proposal into a Plan, keeping only what the policy lets a model touch.

The proposal is untrusted (the model read untrusted logs): every change must name a well-formed field path
that matches the policy's ``llm.paths`` for the workload's kind, exist in the manifest in git (a container
selector must name a real container), hold a scalar, differ from git, and stay within ``llm.max_ratio`` of
a numeric value in git. Anything else is dropped with its reason; when nothing is left the proposal is
refused (NoFix) and the reason lists what was refused.
"""

from __future__ import annotations

import re
from typing import Any

from app import fieldpaths, fixers, quantities
from app.errors import NoFix
from app.models.causes import Cause, ProposalFacts, ProposedChange
from app.models.changes import FieldChange, Plan
from app.policies import Policy

_MISSING = object()
# Strings a model may write: image references, quantities, probe paths, port names. No spaces, "#", "@"
# mentions, braces or quotes, so a value cannot smuggle text into a title, a commit message or YAML.
_SAFE_STRING = re.compile(r"[A-Za-z0-9._:/+=-]{1,200}|[A-Za-z0-9._/-]+@sha256:[a-f0-9]{64}")


def plan(facts: ProposalFacts, document: dict[str, Any], policy: Policy) -> Plan:
    """The proposal's changes the policy's ``llm`` section allows; the plan carries those paths as its own."""
    kind = str(document.get("kind"))
    allowed = policy.llm_paths_for(kind)
    model = facts.model
    kept: list[FieldChange] = []
    refused: list[str] = []
    for proposed in facts.changes:
        change, why = _gate(proposed, document, allowed, policy)
        if change is None:
            refused.append(why)
        elif all(c.path != change.path for c in kept):
            kept.append(change)
    kept = kept[: policy.llm.max_changes]
    if not kept:
        raise NoFix(f"the proposal of model {model} was refused: " + "; ".join(refused or ["no change proposed"]),
                    code="model_refused")
    summary = f"Set {_label(kept[0].path)} to {kept[0].new}" + (f" (+{len(kept) - 1} more)" if len(kept) > 1 else "")
    if refused:
        summary += f"; refused: {len(refused)} change(s) outside policy"
    return Plan(cause=Cause.MODEL_PROPOSED, summary=summary, changes=kept, allowed_paths=allowed)


def refusals(facts: ProposalFacts, document: dict[str, Any], policy: Policy) -> list[str]:
    """Why each refused change of a proposal was refused (for the record)."""
    allowed = policy.llm_paths_for(str(document.get("kind")))
    return [why for proposed in facts.changes
            for change, why in [_gate(proposed, document, allowed, policy)] if change is None]


def _gate(proposed: ProposedChange, document: dict[str, Any], allowed: list[str],
          policy: Policy) -> tuple[FieldChange | None, str]:
    path, value = proposed.path, proposed.value
    try:
        path = fieldpaths.format(fieldpaths.parse(path))
    except ValueError:
        return None, f"{path[:100]!r} is not a field path"
    if not any(fieldpaths.matches(path, glob) for glob in allowed):
        return None, f"{path} is outside the policy for this kind"
    if isinstance(value, (dict, list)) or value is None:
        return None, f"{path}: only scalar values may be set"
    if isinstance(value, str) and not _SAFE_STRING.fullmatch(value):
        return None, f"{path}: the value has characters a manifest field of this kind never needs"
    try:
        fieldpaths.resolve(document, path)
    except (KeyError, ValueError):
        return None, f"{path} does not exist in the manifest in git"
    old = fixers.value_in_git(document, path, default=_MISSING)
    if old is not _MISSING and str(old) == str(value) and type(old) is type(value):
        return None, f"{path} already is {value!r} in git"
    if old is not _MISSING and not _within_ratio(old, value, policy.llm.max_ratio):
        return None, f"{path}: {old} -> {value} is beyond x{policy.llm.max_ratio:g} of the value in git"
    reason = "model: " + proposed.reason[:200]
    return FieldChange(path=path, old=None if old is _MISSING else old, new=value, reason=reason), "ok"



def _within_ratio(old: Any, new: Any, max_ratio: float) -> bool:
    """Numbers and quantities may move by at most ``max_ratio`` either way; other values are not scaled."""
    if isinstance(old, bool) or isinstance(new, bool):
        return True
    try:
        before, after = float(quantities.parse(str(old))), float(quantities.parse(str(new)))
    except (ValueError, ArithmeticError):
        return True
    if before <= 0:  # nothing to scale from (e.g. initialDelaySeconds 0)
        return after >= 0
    if after <= 0:  # a model never zeroes a positive value (replicas, limits)
        return False
    return 1 / max_ratio <= after / before <= max_ratio


def _label(path: str) -> str:
    """``spec.template.spec.containers[name=app].readinessProbe.timeoutSeconds`` -> the part after the container."""
    head, sep, tail = path.rpartition("].")
    if sep and "[name=" in head:
        container = head.rsplit("[name=", 1)[1]
        return f"{tail} of container {container}"
    return path
