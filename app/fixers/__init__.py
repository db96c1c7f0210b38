"""Fixers: (diagnosis, the workload object as it is in git, policy) -> Plan, one module per kind of change.

A fixer computes exact values (reproducible: same inputs, same plan) or raises NoFix saying why not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app import fieldpaths
from app.errors import NoFix
from app.fixers import commands, config_refs, cpu, hpa, image, memory, probes, requests, storage
from app.models.changes import Plan
from app.models.diagnosis import Diagnosis
from app.policies import Policy

Fixer = Callable[[Diagnosis, dict[str, Any], Policy], Plan]

REGISTRY: dict[str, Fixer] = {
    memory.CAUSE: memory.plan,
    requests.CAUSE: requests.plan,
    cpu.CAUSE: cpu.plan,
    hpa.CAUSE: hpa.plan,
    storage.CAUSE: storage.plan,
    image.CAUSE: image.plan,
    config_refs.CAUSE: config_refs.plan,
    probes.CAUSE: probes.plan,
    probes.SLOW_START: probes.plan_slow_start,
    commands.CAUSE: commands.plan,
}


def plan(diagnosis: Diagnosis, document: dict[str, Any], policy: Policy) -> Plan:
    fixer = REGISTRY.get(diagnosis.cause)
    if fixer is None:
        raise NoFix(f"no fixer knows how to change git for cause {diagnosis.cause}", code="no_fixer")
    result = fixer(diagnosis, document, policy)
    return result.model_copy(update={"allowed_paths": policy.paths_for(diagnosis.cause)})


def container_path(kind: str, container: str, *, init: bool, field: str) -> str:
    """Field path of a container's field in a workload object, the container selected by name."""
    from app.kube import POD_TEMPLATE_PREFIX

    prefix = POD_TEMPLATE_PREFIX.get(kind)
    if prefix is None:
        raise NoFix(f"{kind} has no pod template to change", code="unsupported_kind")
    key = "initContainers" if init else "containers"
    return f"{prefix}.spec.{key}[name={container}].{field}"


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

