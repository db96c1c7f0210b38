"""Intake stage: a firing alert is accepted unless its namespace is one the bot may not touch.

(A resolved alert is answered from the ledger instead: app/stages/history.py ``resolved``.)
"""

from __future__ import annotations

from dataclasses import dataclass

from app.models.incident import Incident
from app.policies import Policy
from app.stages import End, Output


@dataclass(frozen=True, kw_only=True)
class Accepted(Output):
    pass


def accept(*, incident: Incident, policy: Policy, own_namespace: str | None) -> Accepted:
    denied = incident.namespace and policy.namespace_denial(incident.namespace, own=own_namespace)
    if denied:
        return Accepted(decision=denied, stop=End(kind="skipped", reason=denied))
    return Accepted(decision="firing alert accepted")
