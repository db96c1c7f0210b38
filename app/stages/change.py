"""Change stage: where git defines the workload, the fix, the edit and its risk, as four timed steps.

    source    sync the checkout; the deployer and layout that produce the workload from git (app/sources)
    plan      the effective workload in git; the team's opt-out; the cause's fixer (app/causes.py)
    validate  the policy's paths; each file edited with the round-trip editor and checked; the render verified
    risk      the risk of the change; the change record (ChangeSet) everything else is rendered from
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app import causes, fieldpaths, risk, validation, yaml_rt
from app.errors import NoFix, PermanentError
from app.models.changes import ChangeSet, FileChange, FileEdit, Location, Plan, TrackRecord
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.policies import Policy
from app.ports import Workspace
from app.sources import RepoIdentity, deployers
from app.sources.layouts import Layouts
from app.stages import Output

OPT_OUT = "autofix.io/ignore"
OPT_OUT_CAUSES = "autofix.io/ignore-causes"


@dataclass(frozen=True, kw_only=True)
class Located(Output):
    location: Location
    base_commit: str
    index_metrics: Mapping[str, float]  # the repository index at this commit: size, what refreshing it cost


@dataclass(frozen=True, kw_only=True)
class Planned(Output):
    document: dict[str, Any]  # the workload as git produces it: the manifest, or the rendered overlay/chart
    plan: Plan


@dataclass(frozen=True, kw_only=True)
class Edited(Output):
    location: Location  # where the change shows: the edited manifest, or the render root (``shown_path``)
    edits: tuple[FileEdit, ...]
    files: tuple[FileChange, ...]
    checks: tuple[str, ...]  # every check that passed, one line each
    rendered: str  # "verified: ..." or "not verified: why"
    after: dict[str, Any]  # the effective workload with the plan applied
    layered: bool  # an overlay, a patch or a values file was edited, not the workload's own manifest


@dataclass(frozen=True, kw_only=True)
class Change(Output):
    changeset: ChangeSet


def locate(*, evidence: Evidence, workspace: Workspace, identity: RepoIdentity) -> Located:
    base_commit = workspace.sync()
    metrics = workspace.index.metrics()  # built once per commit, then updated from git diff
    location = deployers.locate(evidence, workspace, identity)
    return Located(location=location, base_commit=base_commit, index_metrics=metrics,
                   decision=f"{location.path}#{location.document_index} via {location.source} at {base_commit[:12]}")


def plan(*, located: Located, evidence: Evidence, diagnosis: Diagnosis, workspace: Workspace, policy: Policy,
         layouts: Layouts) -> Planned:
    document = layouts.of(located.location).effective(located.location, evidence, repo=workspace)
    check_opt_out(document, diagnosis.cause)
    # a rule's fixer (a sizing one reads Prometheus' series), or the model's proposal gated
    planned = causes.plan(diagnosis, document, policy, metrics=evidence.metrics)
    return Planned(document=document, plan=planned, decision=planned.summary)


def edit(*, located: Located, planned: Planned, evidence: Evidence, workspace: Workspace,
         layouts: Layouts) -> Edited:
    location, fix = located.location, planned.plan
    layout = layouts.of(location)
    check_allowed(fix)
    edits = layout.edits(location, fix, evidence=evidence, repo=workspace, workload=planned.document)
    files, checks = apply_edits(workspace, edits, fix, tag_files=layout.layered)
    rendered, render_checks = layout.verify(location, evidence, repo=workspace, plan=fix,
                                            new_texts={f.path: f.new_text for f in files})
    checks += render_checks
    shown = location.model_copy(update={
        "path": layout.shown_path(location, edits), "document_index": edits[0].document_index,
        "environments": layout.environments(location, edits, repo=workspace)})
    return Edited(location=shown, edits=tuple(edits), files=tuple(files), checks=tuple(checks), rendered=rendered,
                  after=applied(planned.document, fix), layered=layout.layered,
                  decision=f"{len(checks)} check(s) passed; {', '.join(f.path for f in files)}; render {rendered}")


def assess(*, planned: Planned, edited: Edited, evidence: Evidence, policy: Policy,
           namespace_labels: Mapping[str, str], track: TrackRecord | None = None,
           namespace_annotations: Mapping[str, str] | None = None) -> Change:
    """``track``: the ledger's record of earlier fixes of this cause (risk.track_record), for the history factor.
    The namespace factor reads the Namespace's labels and annotations and the evidence's Argo CD / Flux objects."""
    assessed = risk.assess(workload=planned.document, namespace=evidence.workload.namespace, plan=planned.plan,
                           policy=policy, namespace_labels=dict(namespace_labels), related=evidence.related,
                           track=track, namespace_annotations=dict(namespace_annotations or {}),
                           gitops=list(evidence.gitops))
    # For a patch, values file or kustomization the gates judge the effective workload before and after.
    layered = edited.layered
    changeset = ChangeSet(location=edited.location, plan=planned.plan, files=list(edited.files), risk=assessed,
                          validation=list(edited.checks), edits=list(edited.edits), rendered=edited.rendered,
                          workload_old=planned.document if layered else None,
                          workload_new=edited.after if layered else None)
    cold = " cold" if track is not None and track.cold else ""
    return Change(changeset=changeset, decision=f"{assessed.level} ({assessed.score:.2f}){cold}")


def check_opt_out(document: Any, cause: str) -> None:
    """The team's own "no", written on the manifest in git, wins over any rule."""
    annotations = ((document or {}).get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(OPT_OUT, "")).lower() == "true":
        raise NoFix(f"the manifest in git opts out of GitOps Autofix ({OPT_OUT}: \"true\")", code="opted_out")
    skipped = {c.strip() for c in str(annotations.get(OPT_OUT_CAUSES, "")).split(",")}
    if cause in skipped:
        raise NoFix(f"the manifest in git opts out of fixes for {cause}", code="opted_out")


def check_allowed(fix: Plan) -> None:
    """The policy's paths bound the workload fields, whichever file ends up holding them."""
    for change in fix.changes:
        if fix.allowed_paths and not any(fieldpaths.matches(change.path, g) for g in fix.allowed_paths):
            raise PermanentError(f"change not allowed for {fix.cause}: {change.path}", code="validation_failed")


def apply_edits(repo: Workspace, edits: list[FileEdit], fix: Plan, *,
                tag_files: bool) -> tuple[list[FileChange], list[str]]:
    """Edit each file with the round-trip editor and check every edited document; one FileChange per file."""
    originals: dict[str, str] = {}
    texts: dict[str, str] = {}
    checks: list[str] = []
    for found in edits:
        old = texts.get(found.path) or originals.setdefault(found.path, repo.read_text(found.path))
        new = yaml_rt.edit(old, document_index=found.document_index,
                           changes=[(c.path, c.new) for c in found.changes], prefix=found.prefix)
        # The workload document itself is checked against the plan and the policy's paths; a patch, values
        # file or kustomization against exactly the translated changes (the render checks the workload).
        whole = not found.prefix and found.changes == fix.changes
        sub = fix if whole else Plan(cause=fix.cause, summary=fix.summary, changes=found.changes)
        passed = validation.check(old, new, document_index=found.document_index, prefix=found.prefix, plan=sub)
        checks += [f"{found.path}: {c}" if tag_files else c for c in passed]
        texts[found.path] = new
    files = [FileChange(path=p, old_text=originals[p], new_text=t, diff=_diff(p, originals[p], t))
             for p, t in texts.items()]
    return files, checks


def applied(workload: dict[str, Any], fix: Plan) -> dict[str, Any]:
    """The effective workload with the plan applied (what the render showed, when one was verified)."""
    out = copy.deepcopy(workload)
    for change in fix.changes:
        keys = fieldpaths.resolve(out, change.path)
        node: Any = out
        for key in keys[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[keys[-1]] = change.new
    return out


def _diff(path: str, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=f"a/{path}", tofile=f"b/{path}"))
