"""Lower requests that no node can satisfy, so the pod schedules on the largest node.

Target: ``node_fraction`` (default 90%) of the largest eligible node's allocatable, minus what the pod's
other containers request. Allocatable already excludes what the kubelet reserves for the system; the
remaining 10% is room for the DaemonSet pods every node runs (kube-proxy, CNI, node-exporter, log shipper),
which we do not list. Memory is rounded down to a whole Mi, CPU to 10m. Never below ``min_ratio_to_git``
(default half) of the request in git: a cut that deep means the workload needs bigger nodes, not a smaller
request. Limits stay as they are: lowering a request never puts it above its limit, and a lower limit would
kill the process where the smaller request only changes where it may run. The risk is forced high.

With Prometheus' usage (``metrics``, app/curves.py): the pending pod never ran, but the workload's earlier pods
(earlier ReplicaSets, restarted pods) did. The request is lowered toward their peak usage x ``requests.headroom``,
never below that peak (the usage, not ``min_ratio_to_git``, is then the floor), and never above what fits the node;
a peak that does not fit the largest node means bigger nodes, not a smaller request.
"""

from __future__ import annotations

import math
from typing import Any

from app import curves, fixers, quantities
from app.errors import NoFix
from app.models import metrics as m
from app.models.causes import Cause, ResourceNeed, SchedulingFacts
from app.models.changes import FieldChange, Plan
from app.models.metrics import Curve, Metrics
from app.policies import Policy

USAGE = {"memory": m.MEMORY, "cpu": m.CPU_USAGE}


def plan(facts: SchedulingFacts, document: dict[str, Any], policy: Policy, metrics: Metrics | None = None) -> Plan:
    resources = facts.resources
    if not resources:
        raise NoFix("no request exceeds the largest node", code="nothing_to_lower")
    sized = [_change(resource, need, document, policy, metrics) for resource, need in sorted(resources.items())]
    changes = [change for change, _ in sized]
    shown = next((c for _, c in sized if c is not None), None)
    what = ", ".join(f"{c.path.rsplit('.', 1)[-1]} to {c.new}" for c in changes)
    notes = [curves.note(metrics, USAGE[r], container=n.container) for r, n in sorted(resources.items())]
    return Plan(cause=Cause.UNSCHEDULABLE, changes=changes, curve=shown, sizing_note=next((n for n in notes if n), ""),
                summary=f"Lower requests ({what}) to fit the largest node")


def _change(resource: str, need: ResourceNeed, document: dict[str, Any], policy: Policy,
            metrics: Metrics | None) -> tuple[FieldChange, Curve | None]:
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
    usage = _usage(resource, need, metrics, request=git_amount)
    if usage is not None:
        return _from_usage(resource, need, usage, policy, in_git=in_git, path=path, budget=budget)
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
    return FieldChange(path=path, old=in_git, new=new_value, reason=reason), None


def _usage(resource: str, need: ResourceNeed, metrics: Metrics | None, *, request: int) -> curves.Usage | None:
    """The peak usage of the container's earlier pods, in base units (bytes, millicores)."""
    if resource == "memory":
        return curves.peak_usage(metrics, m.MEMORY, need.container, request=request, unit="MiB", factor=curves.MiB)
    found = curves.peak_usage(metrics, m.CPU_USAGE, need.container, request=request / 1000, unit="cores", factor=1.0)
    return None if found is None else curves.Usage(peak=found.peak * 1000, pods=found.pods,
                                                     revisions=found.revisions, curve=found.curve)


def _from_usage(resource: str, need: ResourceNeed, usage: curves.Usage, policy: Policy, *, in_git: Any, path: str,
                budget: int) -> tuple[FieldChange, Curve]:
    """Toward the observed peak x headroom, never below the peak, within what fits the node."""
    peak = math.ceil(usage.peak)
    seen = (f"peak {resource} usage {_format_up(resource, peak)} of {usage.pods} earlier pod(s) (revision(s) "
            f"{', '.join(usage.revisions)}) over the window")
    if peak > budget:
        raise NoFix(f"{seen}, more than {policy.requests.node_fraction:.0%} of node {need.node}'s allocatable "
                    f"{resource} ({need.allocatable_raw}) leaves it: the workload needs bigger nodes, not a smaller "
                    "request", code="cut_too_deep")
    headroom = policy.requests.headroom
    wanted = _round_up(resource, math.ceil(peak * headroom))
    new_amount = max(min(wanted, _round_down(resource, budget)), _round_up(resource, peak))
    new_value = _format(resource, new_amount)
    fits = (f"x{headroom:g} headroom (policy requests.headroom)" if new_amount == wanted
            else f"limited to {policy.requests.node_fraction:.0%} of node {need.node}'s allocatable {resource} "
                 f"({need.allocatable_raw})")
    reason = (f"{seen} {fits}, never below that peak; limit unchanged: the pod may still use more when the node "
              f"has it free. If it truly needs {in_git}, it needs a bigger node pool instead")
    shown = usage.curve.model_copy(update={"proposed": new_amount / (curves.MiB if resource == "memory" else 1000)})
    return FieldChange(path=path, old=in_git, new=new_value, reason=reason), shown


def _amount(resource: str, value: Any) -> int:
    return quantities.parse_bytes(value) if resource == "memory" else quantities.parse_cpu_millis(value)


def _round_down(resource: str, amount: int) -> int:
    step = 2**20 if resource == "memory" else 10
    return (amount // step) * step


def _round_up(resource: str, amount: int) -> int:
    step = 2**20 if resource == "memory" else 10
    return -(-amount // step) * step


def _format_up(resource: str, amount: int) -> str:
    return _format(resource, _round_up(resource, amount))


def _format(resource: str, amount: int) -> str:
    if resource == "memory":
        mib = amount // 2**20
        return f"{mib // 1024}Gi" if mib and mib % 1024 == 0 else f"{mib}Mi"
    return quantities.format_cpu_millis(amount)
