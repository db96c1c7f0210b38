"""Declared stage: HTTP probes answering 404 whose served path the cluster does not show, and the path git declares.

The probe detector (app/detectors/probes.py) corrects a path only where the evidence shows the path the container
serves. When the cluster shows none (no other probe passing on the port, no 2xx in its access log, no health-check
annotation on a Service in front of it), the finding stays unfixable and asks git, once the source stage located
the workload: a health path declared elsewhere in what deploys it counts as evidence, if exactly one is declared
and the container's own access log does not contradict it (that path answered with something other than 2xx):

- the chart's values, every source (the chart's own defaults too, even where an environment's file overrides
  them): ``livenessProbe.httpGet.path`` against ``readinessProbe.httpGet.path``, bitnami-style
  ``startupProbe.path``, a Service annotation's health-check path set through the values;
- the manifests of the workload's file: a Service's or an Ingress' load-balancer health-check annotation, a GKE
  BackendConfig's ``healthCheck.requestPath``.

Found: the finding names the declarations and becomes fixable (the fixer writes the path where the probe is set,
an environment's values file rather than the chart). Else no_fix: the cluster's reason and what git declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app import yaml_rt
from app.detectors import probes
from app.errors import PermanentError
from app.models.causes import ProbeChange, ProbeFacts
from app.models.changes import Location
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.ports import Workspace
from app.sources.layouts import helm
from app.stages import End, Output
from app.stages.change import Located

MAX_SHOWN = 4  # declarations named in the reason when there are too many to choose from


@dataclass(frozen=True, kw_only=True)
class Declared(Output):
    diagnosis: Diagnosis  # the probe paths git declares filled in, or the diagnosis as it was (``stop``: why not)


def wanted(diagnosis: Diagnosis) -> bool:
    """Whether the diagnosis is HTTP probes answering 404 with a path nothing in the cluster shows served."""
    facts = diagnosis.finding.facts
    return (not diagnosis.fixable and isinstance(facts, ProbeFacts) and facts.field == "path"
            and facts.handler == "httpGet" and any(c.new is None for c in _changes(facts)))


def find(*, located: Located, evidence: Evidence, diagnosis: Diagnosis, workspace: Workspace) -> Declared:
    facts = diagnosis.finding.facts
    assert isinstance(facts, ProbeFacts), "only probes answering 404 ask for a declared path"
    changes = _changes(facts)
    failing = {str(c.old) for c in changes}
    found = [(path, where) for path, where in _declarations(located.location, workspace) if path not in failing]
    paths = sorted({path for path, _ in found})
    if len(paths) != 1:
        shown = "; ".join(where for _, where in found[:MAX_SHOWN])
        return _unproven(diagnosis, "git declares no other health path for it" if not paths else
                         f"git declares {len(paths)} paths ({', '.join(paths)}: {shown}): not guessing which")
    [path] = paths
    refused = [r for r in probes.access_log(evidence, facts.container) if r.path == path and not 200 <= r.status < 300]
    if refused:
        return _unproven(diagnosis, f"git declares {path}, but the container's own log answers {refused[-1].method} "
                                    f"{path} with {refused[-1].status}: {refused[-1].text}")
    unfit = [c.probe for c in changes if c.new is None and not probes.fits(c.probe, path)]
    if unfit:
        return _unproven(diagnosis, f"git declares only {path}, named for another probe's purpose than "
                                    f"{' and '.join(unfit)}")
    return _proven(diagnosis, facts, changes, path, [where for p, where in found if p == path])


def _changes(facts: ProbeFacts) -> list[ProbeChange]:
    first = ProbeChange(probe=facts.probe, handler=facts.handler, field=facts.field, old=facts.old, new=facts.new)
    return [first, *(facts.others or [])]


def _declarations(location: Location, workspace: Workspace) -> list[tuple[str, str]]:
    """(path, where) of the health paths git declares for the workload: the chart's values or the manifests of
    its file."""
    spec = location.layout_spec
    if isinstance(spec, helm.HelmSpec):
        sources = [(_label(s), helm.data_of(s, workspace)) for s in spec.values]
        return probes.declared_in_values(sources)
    try:
        docs = yaml_rt.documents(workspace.read_text(location.path), source=location.path)
    except PermanentError:
        return []
    objects = [(location.path, item) for doc in docs for item in _items(doc)]
    return probes.declared_in_objects(objects)


def _items(doc: Any) -> list[Any]:
    """A document's objects: itself, or the items of a ``kind: List``."""
    if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        return list(doc["items"])
    return [doc]


def _label(source: helm.ValuesSource) -> str:
    where = source.path or "the Application"
    return f"{source.label} {where}" if source.label else where


def _proven(diagnosis: Diagnosis, facts: ProbeFacts, changes: list[ProbeChange], path: str,
            where: list[str]) -> Declared:
    filled = [c if c.new is not None else c.model_copy(update={"new": path}) for c in changes]
    first, *rest = filled
    declared = facts.model_copy(update={"new": first.new, "others": rest or None})
    finding = diagnosis.finding.model_copy(update={
        "facts": declared, "confidence": 0.75,
        "evidence": [*diagnosis.finding.evidence, *where],
        "root_cause": f"{diagnosis.finding.root_cause} Git declares the path it serves: {path} ({'; '.join(where)})."})
    proven = diagnosis.model_copy(update={"finding": finding, "fixable": True, "no_fix_reason": None})
    probes_named = " and ".join(c.probe for c in changes if c.new is None)
    return Declared(diagnosis=proven, decision=f"git declares {path} for {probes_named}: {where[0]}"[:500])


def _unproven(diagnosis: Diagnosis, why: str) -> Declared:
    reason = f"{diagnosis.finding.root_cause} No fix: {diagnosis.no_fix_reason}; {why}"
    return Declared(diagnosis=diagnosis, decision=f"not declared: {why}"[:500],
                    stop=End(kind="no_fix", reason=reason, code="no_fix"))

