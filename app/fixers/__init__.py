"""Fixers: (the cause's facts, the workload object as it is in git, policy) -> Plan, one module per kind of change.

A fixer computes exact values (reproducible: same inputs, same plan) or raises NoFix saying why not. Which
fixer follows which cause is the one registry in app/causes.py; this package knows nothing of detectors.
"""

from __future__ import annotations

from typing import Any

from app import fieldpaths
from app.errors import NoFix


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
