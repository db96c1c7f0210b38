"""Gating stage (recorded as "gates"): every change, a rule's or a model's, passes the same gates (app/gates.py).

A refusal ends the handling (no_fix) and is recorded; it is never published.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app import gates
from app.errors import NoFix
from app.models.changes import ChangeSet
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.policies import Policy
from app.stages import End, Output, stopped


@dataclass(frozen=True, kw_only=True)
class Gated(Output):
    passed: bool
    lines: tuple[str, ...]  # each gate passed, or the one refusal


def check(*, evidence: Evidence, diagnosis: Diagnosis, changeset: ChangeSet, policy: Policy,
          baseline: Mapping[str, Any]) -> Gated:
    try:
        passed = _check(evidence=evidence, diagnosis=diagnosis, changeset=changeset, policy=policy,
                        baseline=baseline)
    except NoFix as err:
        return Gated(passed=False, lines=(err.message,), decision=stopped(err.message),
                     stop=End(kind="no_fix", reason=err.message, code=err.code))
    return Gated(passed=True, lines=tuple(passed), decision=f"{len(passed)} gate(s) passed")


def _check(*, evidence: Evidence, diagnosis: Diagnosis, changeset: ChangeSet, policy: Policy,
           baseline: Mapping[str, Any]) -> list[str]:
    loc, kind, by = changeset.location, evidence.workload.kind, diagnosis.proposed_by
    passed: list[str] = []
    if changeset.workload_old is not None and changeset.workload_new is not None:  # set only when layered
        # An overlay, values file or patch was edited: judge the rendered workload it produces.
        passed += gates.check(old=changeset.workload_old, new=changeset.workload_new, plan=changeset.plan,
                              policy=policy, kind=kind, proposed_by=by, baseline=baseline)
    for f in changeset.files:
        if f.path != loc.path:
            passed += gates.check_file(f.old_text, f.new_text)
            continue
        old, new = gates.objects(f.old_text, f.new_text, index=loc.document_index, prefix=loc.prefix)
        passed += gates.check(old=old, new=new, plan=changeset.plan, policy=policy, kind=kind, proposed_by=by,
                              baseline=baseline)
    return passed
