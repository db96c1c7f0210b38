"""Gates every change passes before a PR, whatever proposed it (a rule's fixer or the LLM). Pure.

Validation proved the edit does what the plan says; the gates decide whether the plan may be done at all:
- the kind: never RBAC, never a cluster-scoped object, never a Secret;
- the paths: every planned and every actually changed field lies within the policy's paths for the cause
  (the plan's own ``allowed_paths`` are not trusted: a model could have written them);
- always refused, whatever the policy says: privileged, allowPrivilegeEscalation, host namespaces, added
  capabilities, hostPath volumes, running as root, introduced anywhere in the object;
- bounds: each new quantity within the policy's absolute cap and its cap relative to the value in git before
  the first fix (the ledger's baseline), no bound removed, and requests never above limits.

A refused gate raises NoFix(code="gate_refused"): no PR, outcome no_fix, the reason recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from app import fieldpaths, quantities, validation
from app.errors import NoFix
from app.models.changes import Plan
from app.policies import Policy

log = logging.getLogger(__name__)

RBAC_KINDS = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})
CLUSTER_SCOPED_KINDS = frozenset({
    "Namespace", "Node", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding",
    "CustomResourceDefinition", "PriorityClass", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "APIService", "IngressClass", "RuntimeClass",
    "CSIDriver", "CSINode", "VolumeAttachment", "ClusterIssuer", "PodSecurityPolicy", "ClusterPolicy",
})
SECRET_KINDS = frozenset({"Secret", "SealedSecret", "ExternalSecret"})
# Field name -> the Policy attribute holding its bounds (step/max/max_ratio_to_git).
BOUNDED_FIELDS = {"memory": "memory", "cpu": "cpu"}


def refuse(reason: str) -> NoFix:
    log.warning("gate refused a change", extra={"reason": reason})
    return NoFix(f"gate refused: {reason}", code="gate_refused")


def check(*, old: Any, new: Any, plan: Plan, policy: Policy, kind: str, proposed_by: str = "rule",
          baseline: Mapping[str, Any] | None = None) -> list[str]:
    """One line per gate passed; NoFix(code="gate_refused") on the first that fails.

    ``proposed_by`` is "rule" for a fixer's plan (paths: the policy's ``causes.<cause>.paths``), anything
    else for a model's (paths: the policy's ``llm`` paths for the kind).
    """
    allowed = policy.paths_for(plan.cause) if proposed_by == "rule" else _llm_paths(policy, kind)
    passed = [_kind(kind, new), _paths(old, new, plan, allowed), _always_refused(old, new),
              _bounds(plan, policy, baseline or {}), _replicas(plan, policy), _requests_within_limits(new)]
    log.info("gates passed", extra={"cause": plan.cause, "gates": len(passed)})
    return passed


# ---- kind ---------------------------------------------------------------------------------------------


def _kind(kind: str, new: Any) -> str:
    kinds = {kind}
    if isinstance(new, Mapping) and new.get("kind"):
        kinds.add(str(new["kind"]))
    api = str(new.get("apiVersion", "")) if isinstance(new, Mapping) else ""
    for k in sorted(kinds):
        if k in RBAC_KINDS or api.startswith("rbac.authorization.k8s.io/"):
            raise refuse(f"{k} is an RBAC kind: the bot never changes permissions")
        if k in SECRET_KINDS:
            raise refuse(f"{k}: the bot never writes secrets")
        if k in CLUSTER_SCOPED_KINDS:
            raise refuse(f"{k} is cluster-scoped: the bot changes namespaced workloads only")
    return f"kind: {kind} is a namespaced workload kind"


# ---- paths --------------------------------------------------------------------------------------------


def _llm_paths(policy: Policy, kind: str) -> list[str]:
    paths_for_kind = getattr(policy, "llm_paths_for", None)
    return list(paths_for_kind(kind)) if paths_for_kind is not None else []


def _paths(old: Any, new: Any, plan: Plan, allowed: list[str]) -> str:
    if not allowed:
        raise refuse(f"the policy allows no field paths for cause {plan.cause}")
    changed = [fieldpaths.format(p) for p in validation.leaf_diff(old, new)]
    for path in [c.path for c in plan.changes] + changed:
        if not any(fieldpaths.matches(path, glob) for glob in allowed):
            raise refuse(f"{path} is outside the paths the policy allows for {plan.cause}")
    return f"paths: {len(changed)} changed field(s) within the policy's paths for {plan.cause}"


# ---- always refused -----------------------------------------------------------------------------------


def _always_refused(old: Any, new: Any) -> str:
    before = set(dangers(old))
    introduced = [d for d in dangers(new) if d not in before]
    if introduced:
        path, what = introduced[0]
        raise refuse(f"{what} at {path or '(root)'} is never allowed, whatever the policy")
    return "security: no privilege, host access, added capability or root user introduced"


def dangers(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, what) of every setting the bot must never introduce, anywhere in an object or values file."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            yield from _danger(str(key), value, here)
            yield from dangers(value, here)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from dangers(item, f"{path}[{i}]")


def _danger(key: str, value: Any, path: str) -> Iterator[tuple[str, str]]:
    if key in ("privileged", "allowPrivilegeEscalation", "hostNetwork", "hostPID", "hostIPC") and _true(value):
        yield path, f"{key}: true"
    elif key == "capabilities" and isinstance(value, Mapping) and value.get("add"):
        yield path, f"added capabilities {list(value['add'])}"
    elif key == "hostPath" and value is not None:
        yield path, "a hostPath volume"
    elif key == "runAsUser" and not isinstance(value, bool) and str(value).strip() == "0":
        yield path, "runAsUser: 0 (root)"
    elif key == "runAsNonRoot" and _false(value):
        yield path, "runAsNonRoot: false"


def _true(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def _false(value: Any) -> bool:
    return value is False or str(value).strip().lower() == "false"


# ---- bounds -------------------------------------------------------------------------------------------


def _bounds(plan: Plan, policy: Policy, baseline: Mapping[str, Any]) -> str:
    checked = 0
    for change in plan.changes:
        field = change.path.rsplit(".", 1)[-1]
        bounds = getattr(policy, BOUNDED_FIELDS.get(field, ""), None) if field in BOUNDED_FIELDS else None
        if bounds is None:
            continue
        if change.new is None or str(change.new).strip() == "":
            raise refuse(f"{change.path}: removing a {field} bound is never a fix")
        new = _quantity(change.path, change.new)
        cap = _quantity(f"policy {field}.max", bounds.max)
        if new > cap:
            raise refuse(f"{change.path}: {change.new} is above the policy's cap {bounds.max}")
        reference = baseline.get(change.path, change.old)
        if reference is not None:
            ratio = Decimal(str(bounds.max_ratio_to_git))
            ref = _quantity(change.path, reference)
            if ref > 0 and new > ref * ratio:
                origin = "before the first merged fix" if change.path in baseline else "in git"
                raise refuse(f"{change.path}: {change.new} is above x{bounds.max_ratio_to_git:g} of the value "
                             f"{origin} ({reference})")
        checked += 1
    return f"bounds: {checked} value(s) within the policy's caps"


def _replicas(plan: Plan, policy: Policy) -> str:
    hpa = getattr(policy, "hpa", None)
    cap = getattr(hpa, "max", None)
    for change in plan.changes:
        if change.path.rsplit(".", 1)[-1] not in ("maxReplicas", "replicas") or cap is None:
            continue
        try:
            wanted = int(str(change.new))
        except ValueError as err:
            raise refuse(f"{change.path}: {change.new!r} is not a number of replicas") from err
        if wanted > int(cap):
            raise refuse(f"{change.path}: {wanted} is above the policy's cap hpa.max={cap}")
    return f"replicas: within the policy's cap ({cap})"


def _quantity(where: str, value: Any) -> Decimal:
    try:
        return quantities.parse(str(value))
    except ValueError as err:
        raise refuse(f"{where}: {value!r} is not a Kubernetes quantity") from err


def _requests_within_limits(new: Any) -> str:
    for path, resources in _resources(new):
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        if not isinstance(limits, Mapping) or not isinstance(requests, Mapping):
            continue
        for name in set(limits) & set(requests):
            try:
                over = quantities.parse(str(requests[name])) > quantities.parse(str(limits[name]))
            except ValueError:
                continue  # not a quantity we understand: schema validation judges it
            if over:
                raise refuse(f"{path}.requests.{name} {requests[name]} is above its limit {limits[name]}")
    return "requests: none above its limit"


def _resources(node: Any, path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if key == "resources" and isinstance(value, Mapping):
                yield here, value
            yield from _resources(value, here)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _resources(item, f"{path}[{i}]")


def objects(old_text: str, new_text: str, *, index: int, prefix: tuple[str | int, ...] = ()) -> tuple[Any, Any]:
    """The edited object before and after, below the location's prefix (a Helm values key, say)."""
    from app import yaml_rt

    old, new = yaml_rt.documents(old_text)[index], yaml_rt.documents(new_text)[index]
    if prefix:
        old, new = fieldpaths.get(old, prefix), fieldpaths.get(new, prefix)
    return old, new


def check_file(old_text: str, new_text: str) -> list[str]:
    """A further file a change touches (not the workload's manifest): its kinds and the always-refused settings."""
    from app import yaml_rt

    olds, news = yaml_rt.documents(old_text), yaml_rt.documents(new_text)
    for i, new in enumerate(news):
        old = olds[i] if i < len(olds) else None
        if isinstance(new, Mapping) and new.get("kind"):
            _kind(str(new["kind"]), new)
        _always_refused(old, new)
    return [f"other file: {len(news)} document(s) without forbidden kinds or settings"]
