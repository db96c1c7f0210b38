"""Revision stage: a rollback the cluster's evidence cannot prove, proven (or not) from git's history of the field.

The image rollback needs an earlier image shown to have worked. When no earlier ReplicaSet is left (the
Deployment was recreated, its ReplicaSets deleted with it) or the one left was scaled down with no trace of when,
the detector reports the failure unfixable and asks git (``ImagePullFacts.ask_git``). Which file and key set
the image is known only once the source stage located the workload: the layout says where the failing value is
written (a manifest's ``image``, a values file's ``redis.tag``, an ``images:`` entry's ``newTag``). This stage
reads that file's history on the base branch (bounded: MAX_COMMITS commits, back to HORIZON before the failing
rollout) and app/detectors/revisions.py judges it: the value before the commit that set the failing one, how
long git had it and how long Argo CD or Flux ran it. Proven: the finding becomes a rollback (evidence lines and
root cause name the commits and the sync history); the fixer holds how long against the policy
(rollback.min_available_seconds), as for a ReplicaSet. Else no_fix, the cluster's reason and git's together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app import fixers, kube
from app.detectors import revisions
from app.errors import NoFix
from app.models.causes import ImagePullFacts, ImageRollbackFacts
from app.models.changes import FieldChange, FileEdit, Location, Plan
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.ports import Workspace
from app.sources.images import split_image
from app.sources.layouts import Layout, Layouts
from app.stages import End, Output
from app.stages.change import Located

MAX_COMMITS = 30  # commits of the file read, newest first
HORIZON = 90 * 86_400.0  # how far before the failing rollout the history is read


@dataclass(frozen=True, kw_only=True)
class Revised(Output):
    diagnosis: Diagnosis  # a rollback proven from git, or the diagnosis as it was (``stop`` says why not)


def wanted(diagnosis: Diagnosis) -> bool:
    """Whether the diagnosis is an unproven rollback git's history may prove."""
    facts = diagnosis.finding.facts
    return not diagnosis.fixable and isinstance(facts, ImagePullFacts) and facts.ask_git is not None


def prove(*, located: Located, evidence: Evidence, diagnosis: Diagnosis, workspace: Workspace,
          layouts: Layouts) -> Revised:
    facts = diagnosis.finding.facts
    assert isinstance(facts, ImagePullFacts) and facts.ask_git is not None, "only an unproven rollback asks git"
    location = located.location
    layout = layouts.of(location)
    document = layout.effective(location, evidence, repo=workspace)
    path = fixers.container_path(str(document.get("kind") or evidence.workload.kind), facts.container,
                                 init=facts.init, field="image")
    try:
        where, edit = _where(layout, location, evidence, workspace, document, path, facts)
    except NoFix as err:
        return _unproven(diagnosis, err.message)
    since = _anchor(evidence) - HORIZON
    history = workspace.file_history(where.file, since=since, limit=MAX_COMMITS)
    found = revisions.from_git(history, where, gitops=evidence.gitops, since=since,
                               truncated=len(history) >= MAX_COMMITS)
    if isinstance(found, revisions.NotInGit):
        return _unproven(diagnosis, found.reason, found.lines)
    image = _as_image(where, found.value, facts.failing_image)
    problem = _check(image, found, facts, edit=edit, back=lambda target: _one_edit(
        layout, location, evidence, workspace, document, FieldChange(path=path, old=facts.failing_image, new=target)))
    if problem is not None:
        return _unproven(diagnosis, problem, found.lines)
    assert image is not None
    question = facts.ask_git
    rollback = ImageRollbackFacts(**facts.model_dump(), previous_image=image,
                                  previous_replicaset=question.replicaset, previous_revision=question.revision,
                                  previous_ran_seconds=found.seconds, in_git=found.summary)
    finding = diagnosis.finding.model_copy(update={
        "facts": rollback, "evidence": [*diagnosis.finding.evidence, *found.lines],
        "root_cause": f"{diagnosis.finding.root_cause} {_cluster_said(facts)}: {found.summary}."})
    revised = diagnosis.model_copy(update={"finding": finding, "fixable": True, "no_fix_reason": None})
    return Revised(diagnosis=revised, decision=f"git's history: {found.summary}"[:500])


def _cluster_said(facts: ImagePullFacts) -> str:
    question = facts.ask_git
    if question is None or question.replicaset is None:
        return "No earlier ReplicaSet is left to show what worked"
    return (f"Revision {question.revision} (replicaset {question.replicaset}) ran {question.image}, but the cluster no "
            "longer shows for how long")


def _where(layout: Layout, location: Location, evidence: Evidence, workspace: Workspace, document: dict[str, Any],
           path: str, facts: ImagePullFacts) -> tuple[revisions.GitField, FileEdit]:
    """The file, object and key that set the failing image, as the layout would edit it."""
    in_git = fixers.value_in_git(document, path)
    if in_git != facts.failing_image:
        raise NoFix(f"git has image {in_git} for container {facts.container}, not the failing {facts.failing_image}")
    edit = _one_edit(layout, location, evidence, workspace, document, FieldChange(path=path, old=in_git, new=in_git))
    change = edit.changes[0]
    where = revisions.git_field(workspace.read_text(edit.path), file=edit.path, document_index=edit.document_index,
                                prefix=edit.prefix, path=change.path, failing=change.old)
    return where, edit


def _one_edit(layout: Layout, location: Location, evidence: Evidence, workspace: Workspace,
              document: dict[str, Any], change: FieldChange) -> FileEdit:
    plan = Plan(cause="image_pull_after_rollout", summary="where the image is set", changes=[change])
    edits = layout.edits(location, plan, evidence=evidence, repo=workspace, workload=document)
    if len(edits) != 1 or len(edits[0].changes) != 1:
        raise NoFix(f"the image of {evidence.workload.short} is written in {len(edits)} places: not one field's "
                    "history to read")
    return edits[0]


def _as_image(where: revisions.GitField, value: Any, failing_image: str) -> str | None:
    """The image the earlier value gives: the whole reference, or the failing one with that tag or digest."""
    if revisions.same(where.failing, failing_image):
        return str(value)
    name, tag, digest = split_image(failing_image)
    if tag is not None and digest is None and revisions.same(where.failing, tag):
        return f"{name}:{value}"
    if digest is not None and revisions.same(where.failing, digest):
        return f"{name}{':' + tag if tag else ''}@{value}"
    return None


def _check(image: str | None, found: revisions.InGit, facts: ImagePullFacts, *, edit: FileEdit,
           back: Callable[[str], FileEdit]) -> str | None:
    """Why the earlier value cannot be the rollback's target, if it cannot: not an image, not what the cluster's
    ReplicaSet ran, or not what the layout would write back in the same place (``back``: its edit for an image)."""
    path = edit.changes[0].path
    if image is None:
        return f"{edit.path} {path} {found.value} does not say which image ran"
    question = facts.ask_git
    if question is not None and question.image is not None and question.image != image:
        return (f"git had {image} before, but revision {question.revision} (replicaset {question.replicaset}) ran "
                f"{question.image}: git and the cluster disagree")
    try:
        written = back(image)
    except NoFix as err:
        return err.message
    if (written.path, written.prefix, written.changes[0].path) != (edit.path, edit.prefix, path) or \
            not revisions.same(written.changes[0].new, found.value):
        return f"rolling back to {image} would not write {path} {found.value} back in {edit.path}"
    return None


def _anchor(evidence: Evidence) -> float:
    """When the failing rollout began: its ReplicaSet's creation, else when the alert started firing."""
    created = kube.meta(evidence.replicasets[0]).get("creationTimestamp") if evidence.replicasets else None
    for value in (created, evidence.incident.starts_at):
        when = _epoch(value)
        if when is not None:
            return when
    return datetime.now(UTC).timestamp()


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() if value else None
    except ValueError:
        return None


def _unproven(diagnosis: Diagnosis, why: str, lines: tuple[str, ...] = ()) -> Revised:
    reason = (f"{diagnosis.finding.root_cause} No fix: {diagnosis.no_fix_reason}; git's history does not prove an "
              f"earlier image either: {why}")
    finding = diagnosis.finding.model_copy(update={"evidence": [*diagnosis.finding.evidence, *lines]})
    return Revised(diagnosis=diagnosis.model_copy(update={"finding": finding}), decision=f"not proven: {why}"[:500],
                   stop=End(kind="no_fix", reason=reason, code="unproven_revision"))
