"""Lower requests that no node can satisfy, so the pod schedules on the largest node.

Target: ``node_fraction`` (default 90%) of the largest eligible node's allocatable, minus what the pod's
other containers request. Allocatable already excludes what the kubelet reserves for the system; the
remaining 10% is room for the DaemonSet pods every node runs (kube-proxy, CNI, node-exporter, log shipper),
which we do not list. Memory is rounded down to a whole Mi, CPU to 10m. Never below ``min_ratio_to_git``
(default half) of the request in git: a cut that deep means the workload needs bigger nodes, not a smaller
request. Limits stay as they are: lowering a request never puts it above its limit, and a lower limit would
kill the process where the smaller request only changes where it may run. The risk is forced high.
"""

from __future__ import annotations

import math
from typing import Any

from app import fixers, quantities
from app.errors import NoFix
from app.models.causes import Cause, ResourceNeed, SchedulingFacts
from app.models.changes import FieldChange, Plan
from app.policies import Policy


def plan(facts: SchedulingFacts, document: dict[str, Any], policy: Policy) -> Plan:
    resources = facts.resources
    if not resources:
        raise NoFix("no request exceeds the largest node", code="nothing_to_lower")
    changes = [_change(resource, need, document, policy) for resource, need in sorted(resources.items())]
    what = ", ".join(f"{c.path.rsplit('.', 1)[-1]} to {c.new}" for c in changes)
    return Plan(cause=Cause.UNSCHEDULABLE, changes=changes, summary=f"Lower requests ({what}) to fit the largest node")


def _change(resource: str, need: ResourceNeed, document: dict[str, Any], policy: Policy) -> FieldChange:
    container = need.container
    path = fixers.container_path(str(document.get("kind")), container, init=False,
                                 field=f"resources.requests.{resource}")
    in_git = fixers.required_in_git(document, path, code="no_request_in_git",
                                    missing=(f"the manifest in git sets no {resource} request for container "
                                             f"{container} (the request comes from its limit): set a request by hand"))
    git_amount = _amount(resource, in_git)
    if git_amount < need.container_request:
        raise NoFix(f"git already requests {in_git} {resource} for {container}: a lower request is waiting to "
                    "be synced", code="already_in_git")
    budget = math.floor(need.allocatable * policy.requests.node_fraction) - need.others
    new_amount = _round_down(resource, budget)
    floor = math.ceil(git_amount * policy.requests.min_ratio_to_git)
    if new_amount < floor:
        raise NoFix(f"fitting node {need.node} ({need.allocatable_raw} {resource} allocatable) would cut the "
                    f"{resource} request of {container} from {in_git} to {_format(resource, max(new_amount, 0))}, "
                    f"below {policy.requests.min_ratio_to_git:g}x of git: the workload needs bigger nodes, not a "
                    "smaller request", code="cut_too_deep")
    new_value = _format(resource, new_amount)
    reason = (f"{policy.requests.node_fraction:.0%} of node {need.node}'s allocatable {resource} "
              f"({need.allocatable_raw}) leaves room for DaemonSet pods; limit unchanged: the pod may still use "
              "more when the node has it free. If it truly needs "
              f"{in_git}, it needs a bigger node pool instead")
    return FieldChange(path=path, old=in_git, new=new_value, reason=reason)


def _amount(resource: str, value: Any) -> int:
    return quantities.parse_bytes(value) if resource == "memory" else quantities.parse_cpu_millis(value)


def _round_down(resource: str, amount: int) -> int:
    step = 2**20 if resource == "memory" else 10
    return (amount // step) * step


def _format(resource: str, amount: int) -> str:
    if resource == "memory":
        mib = amount // 2**20
        return f"{mib // 1024}Gi" if mib and mib % 1024 == 0 else f"{mib}Mi"
    return quantities.format_cpu_millis(amount)
