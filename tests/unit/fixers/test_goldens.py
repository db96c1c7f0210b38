"""Golden directories for every fixer: tests/golden/fixers/<case>/original/ (a manifest as the scenario's repo
has it, the evidence the detectors read, and for the model's fixer the model's proposal) -> expected/ (the
manifest after the fixer's plan went through the round-trip editor), compared byte for byte.

After an intended change of a fixer's output, rewrite expected/ with
`AUTOFIX_UPDATE_GOLDEN=1 pytest tests/unit/fixers/test_goldens.py` and review its diff like any other change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app import advice, causes, validation, yaml_rt
from app.models.causes import Cause
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from tests.conftest import ROOT
from tests.unit.detectors.support import POLICY

GOLDEN = ROOT / "tests" / "golden" / "fixers"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


def _manifest(case: str) -> Path:
    [manifest] = sorted((GOLDEN / case / "original").glob("*.yaml"))
    return manifest


def _diagnosis(case: str) -> Diagnosis:
    """The first finding on the evidence, or the model's proposal on it when the case has one."""
    original = GOLDEN / case / "original"
    ev = Evidence.model_validate_json((original / "evidence.json").read_text())
    proposal = original / "proposal.json"
    if proposal.exists():
        return advice.diagnosis_from(advice.Proposal.model_validate_json(proposal.read_text()), ev, model="gpt-test")
    return causes.diagnose(ev)[0]


def _fixed(case: str) -> str:
    text = _manifest(case).read_bytes().decode()  # bytes: universal newlines would hide a lost CRLF
    plan = causes.plan(_diagnosis(case), yaml_rt.documents(text)[0], POLICY)
    new = yaml_rt.edit(text, document_index=0, changes=[(c.path, c.new) for c in plan.changes])
    validation.check(text, new, document_index=0, plan=plan)
    return new


@pytest.mark.parametrize("case", CASES)
def test_fixer_golden(case: str) -> None:
    expected = GOLDEN / case / "expected" / _manifest(case).name
    new = _fixed(case)
    if os.environ.get("AUTOFIX_UPDATE_GOLDEN"):
        expected.write_bytes(new.encode())
    assert new == expected.read_bytes().decode()
    assert new != _manifest(case).read_bytes().decode(), "a golden case shows a change"


def test_every_fixer_has_a_golden_case() -> None:
    fixed = {_diagnosis(case).cause for case in CASES}
    assert fixed == {p.cause for p in causes.REGISTRY if p.fix is not None}
    assert Cause.MODEL_PROPOSED in fixed
