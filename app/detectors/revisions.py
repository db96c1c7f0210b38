"""Which earlier revision of a Deployment worked, and the evidence that shows it (shared by the rollbacks).

A ReplicaSet that serves ready pods now proves its pod template runs. Under ``strategy: Recreate``, with one
replica and ``maxUnavailable: 1``, or after a Helm upgrade, the previous ReplicaSet is scaled to 0 before the
new pods start, so during the failure no earlier revision serves. Such a revision counts as having worked
when the evidence shows it ran, available, until the rollout replaced it:

- its ``deployment.kubernetes.io/revision`` annotation and pod template say what it ran;
- its creation time and its scale-down (the Deployment's ``ScalingReplicaSet`` event "Scaled down replica
  set X to 0 from 1", or, once that event expired, the creation of the next revision) say how long it ran;
  a ReplicaSet reused by a rollback (``revision-history`` annotation) was created long before it last ran:
  then the span comes from the GitOps history (the sync or Helm release before the last one);
- the Deployment's ``Available`` condition must not have turned False before that scale-down (a revision
  already failing when it was replaced did not work);
- Argo CD's ``status.history`` (revision, deployedAt, source) and a Flux HelmRelease's ``status.history``
  (chart version, values digest, status) say which deployment it was; they are quoted as evidence.

How long is long enough is policy (``rollback.min_available_seconds``): the fixers judge ``ran_seconds``.
The newest candidate decides: an older revision is never preferred over one that merely lacks evidence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app import fieldpaths, kube, redact, yaml_rt
from app.models.evidence import Evidence
from app.ports import FileCommit
from app.quantities import format_duration

K8sObject = dict[str, Any]
# The deployment controller's wording: "Scaled down replica set X to 0 from 1" (Kubernetes >= 1.26),
# "Scaled down replica set X to 0" before, "Scaled down replica set X from 1 to 0" in some forks.
_SCALED_DOWN = re.compile(r"^Scaled down replica set (\S+) (?:to 0(?: from \d+)?|from \d+ to 0)$")
REUSED = "deployment.kubernetes.io/revision-history"
DEFAULT_GRACE = 30  # terminationGracePeriodSeconds when the pod template does not set it
SLACK = 5  # seconds between the controller's scale-down and the status it writes after


@dataclass(frozen=True)
class Worked:
    """An earlier ReplicaSet taken as having worked: serving now (``ran_seconds`` None), or scaled down after
    running ``ran_seconds`` (the fixers hold that against the policy)."""

    replicaset: K8sObject
    ran_seconds: int | None
    lines: tuple[str, ...]  # the evidence, as the finding (and so the PR) shows it
    summary: str  # how it is known, as a clause of the root cause


@dataclass(frozen=True)
class Unproven:
    """The newest earlier ReplicaSet was scaled down and the evidence does not show that it worked."""

    replicaset: K8sObject
    reason: str
    lines: tuple[str, ...]
    git_may_tell: bool = True  # False: the evidence shows it failing, git's history cannot outweigh that


def previous(ev: Evidence, *, differs: Callable[[K8sObject], bool],
             ran: Callable[[K8sObject], str]) -> Worked | Unproven | None:
    """The newest earlier ReplicaSet whose pod template ``differs`` from the failing one, judged on the evidence
    (``ran`` names what it ran: "image X"). None: no earlier revision ran anything else."""
    candidates = [rs for rs in ev.replicasets if differs(rs)]  # newest revision first
    for rs in candidates:
        ready = _ready(rs)
        if ready:
            line = f"replicaset {kube.name(rs)} (revision {kube.revision(rs)}) ran {ran(rs)} with {ready} ready pod(s)"
            return Worked(replicaset=rs, ran_seconds=None, lines=(line,), summary=f"{ready} ready pod(s) now")
    return _judged(ev, candidates[0], ran(candidates[0])) if candidates else None


def _ready(rs: K8sObject) -> int:
    status = rs.get("status") or {}
    return max(int(status.get("readyReplicas") or 0), int(status.get("availableReplicas") or 0))


def _judged(ev: Evidence, rs: K8sObject, what: str) -> Worked | Unproven:
    name, revision = kube.name(rs), kube.revision(rs)
    history = gitops_history(ev)
    span = _span(ev, rs)
    if span is None:
        return Unproven(replicaset=rs, lines=tuple(history),
                        reason=(f"revision {revision} (replicaset {name}) ran {what} but was scaled down, and "
                                "neither its ReplicaSet nor the GitOps history shows when it last started: "
                                "no evidence that it worked"))
    started, ended, how, seen_down = span
    seconds = int((ended - started).total_seconds())
    lines = [f"replicaset {name} (revision {revision}) ran {what}: {how}; ran {format_duration(seconds)}",
             *history]
    unavailable = _unavailable_since(ev.object, ev.workload.short)
    if unavailable is not None and (ended - unavailable[0]).total_seconds() > _grace(rs) + SLACK:
        lines.insert(1, unavailable[1])
        return Unproven(replicaset=rs, lines=tuple(lines), git_may_tell=False,
                        reason=(f"revision {revision} (replicaset {name}) ran {what}, but {unavailable[1]}, before "
                                f"that revision was replaced at {_iso(ended)}: it was failing already, no evidence "
                                "that it worked"))
    if unavailable is not None:
        lines.insert(1, f"{unavailable[1]}: it was available until this rollout")
    strategy = ((ev.object.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate"
    verb = "scaled it down" if seen_down else "replaced it"
    return Worked(replicaset=rs, ran_seconds=seconds, lines=tuple(lines),
                  summary=f"for {format_duration(seconds)} until this rollout {verb} (strategy {strategy})")


def _span(ev: Evidence, rs: K8sObject) -> tuple[datetime, datetime, str, bool] | None:
    """(started, replaced, how it is known, whether its scale-down event was seen) of a scaled-down ReplicaSet;
    None when the evidence cannot tell."""
    down = _scale_down(ev, kube.name(rs))
    following = _next_created(ev, rs)
    ends = [t for t in (down[0] if down else None, following) if t is not None]
    if not ends:
        return None
    ended = min(ends)  # Recreate scales down before it creates; a rolling update creates first
    created = _time(kube.meta(rs).get("creationTimestamp"))
    if kube.annotations_of(rs).get(REUSED) or created is None:
        created = _gitops_started(ev)  # reused by a rollback: its creation says nothing about its last run
        origin = "deployed by the GitOps sync before the last one at"
    else:
        origin = "created"
    if created is None or created >= ended:
        return None
    seen_down = down is not None and down[0] == ended
    how = (f"scaled down to 0 at {_iso(ended)} (event ScalingReplicaSet: {down[1]})" if down and seen_down
           else f"replaced at {_iso(ended)}, when the next revision's ReplicaSet was created")
    return created, ended, f"{origin} {_iso(created)}, {how}", seen_down


def _scale_down(ev: Evidence, name: str) -> tuple[datetime, str] | None:
    """When the deployment controller scaled ``name`` to 0, from its ScalingReplicaSet event on the Deployment."""
    found = []
    for event in ev.events_for(ev.workload.kind, ev.workload.name):
        message = str(event.get("message") or "")
        match = _SCALED_DOWN.match(message)
        when = _time(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp"))
        if event.get("reason") == "ScalingReplicaSet" and match and match.group(1) == name and when is not None:
            found.append((when, message))
    return max(found) if found else None


def _next_created(ev: Evidence, rs: K8sObject) -> datetime | None:
    """Creation of the next newer revision's ReplicaSet (unless that one was reused: created long before)."""
    newer = [r for r in ev.replicasets if kube.revision(r) > kube.revision(rs)]
    if not newer:
        return None
    following = min(newer, key=kube.revision)
    return None if kube.annotations_of(following).get(REUSED) else _time(kube.meta(following).get("creationTimestamp"))


def _unavailable_since(deployment: K8sObject, short: str) -> tuple[datetime, str] | None:
    """Since when the Deployment has lacked minimum availability (its Available=False condition), if it does."""
    for c in (deployment.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Available" and c.get("status") == "False":
            when = _time(c.get("lastTransitionTime"))
            if when is not None:
                reason = f" {c['reason']}" if c.get("reason") else ""
                return when, f"Deployment {short}: condition Available=False{reason} since {_iso(when)}"
    return None


def _grace(rs: K8sObject) -> int:
    """Recreate waits for the old pods to end before it creates the next ReplicaSet: up to their grace period."""
    value = kube.pod_spec_of(rs, "ReplicaSet").get("terminationGracePeriodSeconds")
    return int(value) if isinstance(value, int) else DEFAULT_GRACE


# ---------------------------------------------------------------- GitOps history


def gitops_history(ev: Evidence) -> list[str]:
    """What Argo CD's and Flux's own history say about the deployment before the last one, as evidence lines."""
    lines: list[str] = []
    for obj in ev.gitops:
        entries = (obj.get("status") or {}).get("history") or []
        if not isinstance(entries, list) or len(entries) < 2:
            continue
        if obj.get("kind") == "Application":
            lines.append(_argocd_line(obj, entries))
        elif obj.get("kind") == "HelmRelease":
            line = _flux_line(obj, entries)
            lines += [line] if line else []
    return lines


def _argocd_line(app: K8sObject, entries: list[Any]) -> str:
    """Argo CD appends each sync (oldest first): the last is this rollout's, the one before ran until it."""
    before, last = entries[-2], entries[-1]
    source = before.get("source") or {}
    where = " ".join(f"{k} {source[k]}" for k in ("path", "chart", "targetRevision") if source.get(k))
    return (f"Argo CD Application {kube.name(app)} status.history: revision {_short(before.get('revision'))} "
            f"deployed {before.get('deployedAt')}" + (f" ({where})" if where else "")
            + f", then revision {_short(last.get('revision'))} deployed {last.get('deployedAt')}")


def _flux_line(hr: K8sObject, entries: list[Any]) -> str | None:
    """Flux keeps Helm release snapshots newest first: the first is this rollout's, then the last good one."""
    current = entries[0]
    good = next((e for e in entries[1:] if e.get("status") in ("deployed", "superseded")), None)
    if good is None:
        return None
    return (f"Flux HelmRelease {kube.meta(hr).get('namespace')}/{kube.name(hr)} status.history: {_release(good)} "
            f"deployed {good.get('lastDeployed')}, status {good.get('status')}; then {_release(current)} deployed "
            f"{current.get('lastDeployed')}, status {current.get('status')}")


def _release(entry: dict[str, Any]) -> str:
    digest = str(entry.get("configDigest") or "")
    return (f"release {entry.get('version')} (chart {entry.get('chartName')} {entry.get('chartVersion')}"
            + (f", values {digest[:19]}" if digest else "") + ")")


def _gitops_started(ev: Evidence) -> datetime | None:
    """When the deployment before the last one was made, from Argo CD's or Flux's history."""
    for obj in ev.gitops:
        entries = (obj.get("status") or {}).get("history") or []
        if not isinstance(entries, list) or len(entries) < 2:
            continue
        if obj.get("kind") == "Application":
            return _time(entries[-2].get("deployedAt"))
        if obj.get("kind") == "HelmRelease":
            good = next((e for e in entries[1:] if e.get("status") in ("deployed", "superseded")), None)
            return _time(good.get("lastDeployed")) if good else None
    return None


def _short(revision: Any) -> str:
    text = str(revision or "")
    return text[:7] if re.fullmatch(r"[0-9a-f]{40}", text) else text


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- git history
#
# When the cluster cannot prove the previous revision (no earlier ReplicaSet left, or one scaled down with no trace
# of when), git can: the value the field had before the commit that set the failing one, and how long it stayed
# (from the commit that set it, or at least since the oldest commit read) - or, when the Argo CD Application or
# Flux HelmRelease keeps a history, how long it was deployed: from the first sync after git had it to the first
# sync after the failing commit. A history that reaches back before the value landed and shows no sync while git
# had it says it never ran. The newest earlier value decides, as the newest ReplicaSet does above; how long is
# long enough is the same policy (rollback.min_available_seconds), judged by the fixer.

MAX_SUBJECT = 80


@dataclass(frozen=True)
class GitField:
    """Where git sets the value: a document of a file (found again in older texts by its kind and name, or a list
    entry by its ``name``), the field's path below ``prefix``, and the failing value as that file writes it."""

    file: str
    document_index: int
    prefix: tuple[str | int, ...]
    path: str
    failing: Any
    kind: str | None = None
    name: str | None = None  # metadata.name with kind; else the list entry's own name (an images: entry)


@dataclass(frozen=True)
class InGit:
    """The value git had before the commit that set the failing one, and how long it was there (or deployed)."""

    value: Any  # as the file writes it
    seconds: int
    lines: tuple[str, ...]
    summary: str  # "git had it 34 d 3 h (... deployed ...) until commit abc1234 set X"


@dataclass(frozen=True)
class NotInGit:
    reason: str
    lines: tuple[str, ...] = ()


def git_field(text: str, *, file: str, document_index: int, prefix: tuple[str | int, ...], path: str,
              failing: Any) -> GitField:
    """The field at the base, with what finds its object again in older versions of the file."""
    obj = _at(_documents(text), document_index, prefix)
    kind = name = None
    if isinstance(obj, dict) and obj.get("kind") and isinstance(obj.get("metadata"), dict):
        kind, name = str(obj["kind"]), str(obj["metadata"].get("name") or "") or None
    elif isinstance(obj, dict) and prefix and isinstance(prefix[-1], int) and obj.get("name"):
        name = str(obj["name"])
    return GitField(file=file, document_index=document_index, prefix=prefix, path=path, failing=failing,
                    kind=kind if name else None, name=name)


def value_in(text: str | None, where: GitField) -> Any:
    """The field's value in one version of the file; None when the file, the object or the field is absent."""
    if text is None:
        return None
    obj = _find(_documents(text), where)
    try:
        return fieldpaths.get(obj, where.path) if isinstance(obj, dict) else None
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def same(a: Any, b: Any) -> bool:
    """Two values as git and the cluster write them (a tag 7.0 parses as a number): equal as text."""
    return a is not None and b is not None and not isinstance(a, dict | list) and str(a) == str(b)


def from_git(history: list[FileCommit], where: GitField, *, gitops: list[K8sObject], since: float,
             truncated: bool) -> InGit | NotInGit:
    """The value before the commit that set ``where.failing`` (``history``: the file's commits, newest first,
    read back to ``since``; ``truncated``: the read stopped at its limit before that), and how long it lasted."""
    field = f"{where.file} {where.path}"
    window = f"{len(history)} commit(s) of {where.file} read back to {_iso_ts(history[-1].time if truncated and history else since)}"
    found = _setting(history, where)
    if found is None:
        return NotInGit(f"git does not show what {field} was before {where.failing} ({window}, none set it)")
    index, setter = found
    previous = value_in(setter.previous, where)
    if previous is None:
        what = "added the file" if setter.previous is None else "set the field where it was not"
        return NotInGit(f"commit {_commit(setter)} {what} with {where.failing}: git has no earlier value of {field}")
    start = _landed(history[index + 1:], where, previous)
    held_from = start.time if start is not None else (history[-1].time if truncated else since)
    git_seconds = max(0, int(setter.time - held_from))
    origin = (f"from commit {_commit(start)}" if start is not None
              else f"since before {_iso_ts(held_from)} (at least; {window})")
    lines = [f"git history of {where.file}: {where.path} was {previous} {origin} until commit {_commit(setter)} set "
             f"{where.failing}: {'' if start is not None else 'at least '}{format_duration(git_seconds)} in git"]
    synced = _synced(gitops, start=start.time if start is not None else None, bound=held_from, end=setter.time)
    if isinstance(synced, NotInGit):
        return NotInGit(synced.reason, (*lines, *synced.lines))
    seconds, how = (synced[0], "deployed") if synced[0] is not None else (git_seconds, "in git")
    lines += synced[1]
    at_least = "at least " if how == "in git" and start is None else ""
    summary = (f"git had {where.path} {previous} for {at_least}{format_duration(seconds)} ({how}) until commit "
               f"{setter.sha[:12]} set {where.failing}")
    return InGit(value=previous, seconds=seconds, lines=tuple(lines), summary=summary)


def _setting(history: list[FileCommit], where: GitField) -> tuple[int, FileCommit] | None:
    """The newest commit that set the failing value (it had another value, or none, before)."""
    for i, commit in enumerate(history):
        if not same(value_in(commit.text, where), where.failing):
            return None  # the value changed back and forth since: not the simple history this rule reads
        if not same(value_in(commit.previous, where), where.failing):
            return i, commit
    return None


def _landed(older: list[FileCommit], where: GitField, value: Any) -> FileCommit | None:
    """The commit that gave the field ``value`` (None: it had it before every commit read)."""
    for commit in older:
        if not same(value_in(commit.text, where), value):
            return None
        if not same(value_in(commit.previous, where), value):
            return commit
    return None


def _synced(gitops: list[K8sObject], *, start: float | None, bound: float,
            end: float) -> tuple[int | None, list[str]] | NotInGit:
    """How long the GitOps controller ran the earlier value: from its first sync after git had it (at ``start``,
    or before ``bound`` when unknown) to its first sync after the failing commit (at ``end``); None when its
    history cannot tell (then git's span stands). A history reaching back before ``start`` without a sync while
    git had the value says it never ran."""
    source, deploys = _deploys(gitops)
    if not deploys:
        return None, []
    low = start if start is not None else bound
    during = [d for d in deploys if low <= d[0] < end and d[2]]
    after = [d for d in deploys if d[0] >= end]
    if during and after:
        seconds = int(after[0][0] - during[0][0])
        return seconds, [f"{source}: {during[0][1]} deployed {_iso_ts(during[0][0])} while git had it, then "
                         f"{after[0][1]} deployed {_iso_ts(after[0][0])}: it ran {format_duration(seconds)}"]
    if during:
        return None, [f"{source}: {during[0][1]} deployed {_iso_ts(during[0][0])} while git had it, no later sync"]
    if start is not None and deploys[0][0] < start:
        return NotInGit(f"{source} shows no sync between {_iso_ts(start)} and {_iso_ts(end)}, while git had that "
                        "value: it never ran")
    first = f"{deploys[0][1]} deployed {_iso_ts(deploys[0][0])}"
    return None, [f"{source}: its oldest entry is {first}: it does not tell how long that value ran"]


def _deploys(gitops: list[K8sObject]) -> tuple[str, list[tuple[float, str, bool]]]:
    """(whose history, [(when, what, whether it deployed fine)], oldest first) of the first Argo CD Application or
    Flux HelmRelease that keeps one."""
    for obj in gitops:
        entries = (obj.get("status") or {}).get("history") or []
        if not isinstance(entries, list):
            continue
        out: list[tuple[float, str, bool]] = []
        if obj.get("kind") == "Application":
            source = f"Argo CD Application {kube.name(obj)} status.history"
            for e in entries:
                when = _time(e.get("deployedAt")) if isinstance(e, dict) else None
                if when is not None:
                    out.append((when.timestamp(), f"revision {_revisions(e)}", True))
        elif obj.get("kind") == "HelmRelease":
            source = f"Flux HelmRelease {kube.meta(obj).get('namespace')}/{kube.name(obj)} status.history"
            for e in entries:
                when = _time(e.get("lastDeployed") or e.get("firstDeployed")) if isinstance(e, dict) else None
                if when is not None:
                    out.append((when.timestamp(), _release(e), e.get("status") in ("deployed", "superseded")))
        if out:
            return source, sorted(out, key=lambda d: d[0])
    return "", []


def _revisions(entry: dict[str, Any]) -> str:
    """An Argo CD history entry's revision (a multi-source Application's revisions, in source order)."""
    many = entry.get("revisions")
    if not entry.get("revision") and isinstance(many, list):
        return ", ".join(_short(r) for r in many)
    return _short(entry.get("revision"))


def _documents(text: str) -> list[Any]:
    try:
        return yaml_rt.documents(text)
    except Exception:  # noqa: BLE001 - an old version that no longer parses says nothing about the field
        return []


def _at(docs: list[Any], index: int, prefix: tuple[str | int, ...]) -> Any:
    if index >= len(docs):
        return None
    try:
        return fieldpaths.get(docs[index], prefix) if prefix else docs[index]
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _find(docs: list[Any], where: GitField) -> Any:
    """The object in one version: by kind and name, or a list entry by its name, else at the same place."""
    if where.kind is not None:
        for doc in docs:
            obj = _at([doc], 0, where.prefix)
            if isinstance(obj, dict) and obj.get("kind") == where.kind and \
                    (obj.get("metadata") or {}).get("name") == where.name:
                return obj
        return None
    if where.name is not None:
        items = _at(docs, where.document_index, where.prefix[:-1])
        named = [i for i in items if isinstance(i, dict) and i.get("name") == where.name] \
            if isinstance(items, list) else []
        return named[0] if len(named) == 1 else None
    return _at(docs, where.document_index, where.prefix)


def _commit(commit: FileCommit) -> str:
    subject = " ".join(commit.subject.split())[:MAX_SUBJECT]
    return redact.text(f"{commit.sha[:12]} ({_iso_ts(commit.time)}, {json.dumps(subject)})")


def _iso_ts(seconds: float) -> str:
    return _iso(datetime.fromtimestamp(seconds, UTC))
