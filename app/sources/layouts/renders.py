"""Comparing what a renderer produces before and after an edit (pure); the renderer runs behind a port."""

from __future__ import annotations

import json
from typing import Any

import yaml

from app import validation
from app.errors import NoFix, PermanentError
from app.models.changes import Plan
from app.models.incident import WorkloadRef


def _key(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return group, str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", ""))


def pick(objects: list[dict[str, Any]], ref: WorkloadRef, *, what: str) -> dict[str, Any]:
    """The one rendered object that is the workload (rendered output may leave the namespace to Argo/Flux)."""
    found = [o for o in objects if _key(o)[1] == ref.kind and _key(o)[3] == ref.name and _key(o)[2] in ("", ref.namespace)]
    if len(found) != 1:
        raise NoFix(f"{what} renders {len(found)} objects named {ref}: cannot plan on it", code="no_manifest")
    return found[0]


def _test_hook(obj: dict[str, Any]) -> bool:
    """A chart's test (``helm.sh/hook: test``) runs only under `helm test`, and its name is often random
    (podinfo's ``{{ randAlphaNum 5 }}``): two renders of the same values differ there, so it is not compared."""
    hook = str(((obj.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", ""))
    return any(part.strip().startswith("test") for part in hook.split(","))


def compare(before: list[dict[str, Any]], after: list[dict[str, Any]], ref: WorkloadRef, plan: Plan) -> list[str]:
    """Exactly the planned change on the workload, and no other rendered object changed."""
    old = {_key(o): o for o in before if not _test_hook(o)}
    new = {_key(o): o for o in after if not _test_hook(o)}
    if set(old) != set(new):
        changed = sorted(set(old) ^ set(new))
        raise PermanentError(f"render: the set of rendered objects changed ({changed[:3]})", code="validation_failed")
    target = _key(pick(before, ref, what="the render"))
    for key, obj in old.items():
        if key != target and json.dumps(obj, sort_keys=True) != json.dumps(new[key], sort_keys=True):
            raise PermanentError(f"render: {key[1]}/{key[3]} changed too, only {ref} may", code="validation_failed")
    dump = yaml.safe_dump
    checks = validation.check(dump(old[target], sort_keys=False), dump(new[target], sort_keys=False),
                              document_index=0, plan=plan)
    return [f"render: {len(old)} objects, only {ref} changed", *(f"render {c}" for c in checks[1:])]
