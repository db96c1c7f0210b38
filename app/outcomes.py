"""Outcomes: each fix the bot proposed, followed read-only to its end (issue 15).

For every ledger row not decided yet, ``follow`` asks
- the forge: merged (when, by whom) or closed unmerged, or still open (``Forge.get_pr``);
- the cluster: whether the merge commit synced (Argo CD Application ``status.sync.revision`` /
  ``status.history[]``, Flux Kustomization ``status.lastAppliedRevision``, HelmRelease ``status.history[]``'s
  chart version ``+<sha>``), and whether the workload runs with the new values (the live object's field at each
  of ``Remediation.after``'s paths equals what the PR set, the rollout observed);
- git: whether a later commit on the base branch undid the change (a file the PR changed is back to its text
  before the merge, or a commit says it reverts the PR).
The alert's side arrives by itself: the history stage records ``resolved_at`` when a merged fix's alert resolves
and ``fired_again_at`` when the same alert for the same workload and cause comes back after the merge.

``decide`` is pure: the final outcome is ``rejected`` (closed unmerged), ``reverted``, ``ineffective`` (fired
again after the merge: today's escalation), ``effective`` (rolled out, then quiet for the policy's
``outcomes.quiet_hours``) or ``stale`` (open, or merged but never rolled out, after ``outcomes.decision_hours``).
A decided row is stored in the ledger and an amendment of its MLflow run (tag ``outcome.final``, metrics
``time_to_merge_s``, ``time_to_sync_s``, ``time_to_resolve_s``) goes through the outbox: MLflow being down
never blocks it, and the amendment's key (record key + ``.outcome``) makes it land once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from app import fieldpaths, quantities
from app import ledger as ledgers
from app.errors import PermanentError, TemporaryError
from app.models.runs import PendingRun, amendment
from app.policies import OutcomesPolicy
from app.ports import ClusterReader, Forge, K8sObject, Ledger, PullRequest, Remediation, Workspace

log = logging.getLogger(__name__)

FINALS = ("effective", "ineffective", "reverted", "rejected", "stale")
HOUR = 3600.0
LABEL = "autofix"  # the ledger's label (app/stages/history.py LEDGER_LABEL)
_WORKLOAD_GROUPS = ("apps", "batch", "")  # the API groups of the workload kinds the bot fixes
AMENDMENT = "outcome"  # the amendment's name: its outbox key is <record key>.outcome


@dataclass(frozen=True)
class Seen:
    """What the forge, the cluster and git say about one fix now."""

    pr: PullRequest | None = None
    synced_at: float | None = None
    rolled_out: bool = False
    reverted: bool = False


# ---- pure: fold what was seen into the row, then decide --------------------------------------------------


def advance(entry: Remediation, seen: Seen, *, now: float, windows: OutcomesPolicy) -> Remediation:
    """The row with what was seen folded in (times kept from the first sighting) and, once due, its final."""
    row = entry
    pr = seen.pr
    if pr is not None and pr.state in ("open", "merged", "closed"):
        row = replace(row, state=pr.state, merged_at=ledgers.epoch(pr.merged_at) or row.merged_at,
                      closed_at=ledgers.epoch(pr.closed_at) or row.closed_at, merged_by=pr.merged_by or row.merged_by)
    if row.state == "merged":
        row = replace(row, synced_at=row.synced_at or seen.synced_at,
                      rolled_out_at=row.rolled_out_at or (now if seen.rolled_out else None))
    final = decide(row, now=now, windows=windows, reverted=seen.reverted)
    return row if final is None else replace(row, final=final[0], final_at=final[1])


def decide(row: Remediation, *, now: float, windows: OutcomesPolicy, reverted: bool) -> tuple[str, float] | None:
    """The final outcome and when it became final; None while the fix is still being followed."""
    if row.final is not None:
        return row.final, row.final_at or now
    decision, quiet = windows.decision_hours * HOUR, windows.quiet_hours * HOUR
    if row.state == "closed":
        return "rejected", row.closed_at or now
    if row.state == "open":
        return ("stale", now) if now - row.opened_at >= decision else None
    merged_at = row.merged_at or row.opened_at
    if reverted:  # a human undid it: whatever the alert did, that is their verdict
        return "reverted", now
    if row.fired_again_at is not None and row.fired_again_at >= merged_at:
        return "ineffective", row.fired_again_at
    if row.rolled_out_at is not None:
        return ("effective", row.rolled_out_at + quiet) if now - row.rolled_out_at >= quiet else None
    return ("stale", now) if now - merged_at >= decision else None


def metrics(row: Remediation) -> dict[str, float]:
    """Seconds from opened to merged, merged to synced, merged to resolved (those known)."""
    found: dict[str, float] = {}
    if row.merged_at is not None and row.opened_at:
        found["time_to_merge_s"] = max(row.merged_at - row.opened_at, 0.0)
    if row.merged_at is not None and row.synced_at is not None:
        found["time_to_sync_s"] = max(row.synced_at - row.merged_at, 0.0)
    if row.merged_at is not None and row.resolved_at is not None and row.resolved_at >= row.merged_at:
        found["time_to_resolve_s"] = row.resolved_at - row.merged_at
    return found


def tags(row: Remediation) -> dict[str, str]:
    found = {"outcome.final": str(row.final), "outcome.pr_state": row.state, "outcome.final_at": _iso(row.final_at)}
    if row.merged_by:
        found["outcome.merged_by"] = row.merged_by
    if row.fired_again_at is not None:
        found["outcome.fired_again_at"] = _iso(row.fired_again_at)
    return found


def amend(row: Remediation) -> PendingRun | None:
    """The amendment of the row's MLflow run; None for a row without a run (opened before records had keys)."""
    if not row.record_id or row.final is None:
        return None
    return amendment(amends=row.record_id, name=AMENDMENT, tags=tags(row), metrics=metrics(row),
                     created_at=row.final_at or 0.0)


def followed(row: Remediation) -> bool:
    """The bot's own rows not decided yet (a row with opened_at 0 is someone else's PR the bot commented on)."""
    return row.final is None and row.opened_at > 0 and row.pr_number > 0


# ---- reading the world (ports) ----------------------------------------------------------------------------


def follow(*, ledger: Ledger, forge: Forge, cluster: ClusterReader, workspace: Workspace, windows: OutcomesPolicy,
           outbox: Callable[[PendingRun], None], clock: Callable[[], float],
           clusters: Callable[[str], ClusterReader | None] | None = None,
           fetch: Callable[[], object] | None = None) -> list[Remediation]:
    """One pass over the rows still followed: each one's new state is recorded (and, once final, its MLflow
    amendment queued). Returns the rows it looked at, as they are now. ``workspace`` is read at its ``head()``:
    synced by the caller first, or by ``fetch`` (the workspace's sync), called once before the first row, and only
    when there is a row to follow: a repository with nothing open or unsettled is not fetched. ``clusters``
    (several clusters, clusters.yaml): the reader of the cluster a row's ledger ``cluster`` names
    (``reader_of``); without it every row is read from ``cluster``."""
    ledgers.sync(ledger, forge, label=LABEL)  # an empty ledger (lost data dir) is rebuilt first
    rows = [row for row in ledger.entries() if followed(row)]
    if rows and fetch is not None:
        fetch()  # a git failure fails the whole pass of this repository, as the caller's sync did
    result = []
    for row in rows:
        try:
            seen = look(row, forge=forge, cluster=reader_of(row, every=cluster, clusters=clusters),
                        workspace=workspace)
        except (TemporaryError, PermanentError) as err:  # one row's trouble never stops the others
            log.warning("outcome not followed", extra={"pr": row.pr_number, "error": str(err)[:300]})
            result.append(row)
            continue
        fresh = advance(row, seen, now=clock(), windows=windows)
        if fresh != row:
            ledger.record(fresh)
        run = amend(fresh) if fresh.final is not None else None
        if run is not None:
            outbox(run)
        if fresh.final is not None:
            log.info("outcome decided", extra={"pr": fresh.pr_number, "final": fresh.final})
        result.append(fresh)
    return result


def reader_of(row: Remediation, *, every: ClusterReader,
              clusters: Callable[[str], ClusterReader | None] | None) -> ClusterReader:
    """Where a row's workload and its Argo CD / Flux status are read: the cluster the fix was for. ``every`` for a
    row that names none (one cluster; a row made before the ledger kept the cluster: the first cluster that has the
    workload). A cluster no longer configured is read as empty: the forge and git still decide rejected, reverted
    and stale, and no other cluster's workload of the same name can make the fix look rolled out."""
    if not row.cluster or clusters is None:
        return every
    own = clusters(row.cluster)
    if own is None:
        log.warning("outcome's cluster not configured", extra={"pr": row.pr_number, "cluster": row.cluster})
        return _NOWHERE
    return own


class _Nowhere:
    """A cluster with nothing in it (ClusterReader): a fix's cluster that is not configured any more."""

    def get(self, kind: str, namespace: str | None, name: str) -> K8sObject | None:
        return None

    def list(self, kind: str, namespace: str | None, *, label_selector: str | None = None) -> list[K8sObject]:
        return []

    def logs(self, namespace: str, pod: str, container: str, *, previous: bool, tail_lines: int) -> str:
        return ""


_NOWHERE = _Nowhere()


def look(row: Remediation, *, forge: Forge, cluster: ClusterReader, workspace: Workspace) -> Seen:
    pr = forge.get_pr(row.pr_number)
    if pr is None or pr.state != "merged":
        return Seen(pr=pr)
    commit = pr.merge_commit or ""
    return Seen(pr=pr, synced_at=synced(cluster, commit) if commit else None, rolled_out=rolled_out(row, cluster),
                reverted=reverted(row, forge, pr, workspace, merged_at=ledgers.epoch(pr.merged_at) or row.opened_at))


def synced(cluster: ClusterReader, commit: str) -> float | None:
    """When ``commit`` was applied by Argo CD or Flux, as their status says (now, when it gives no time)."""
    now = datetime.now(UTC).timestamp()
    for app in _list(cluster, "Application"):
        status = app.get("status") or {}
        for entry in status.get("history") or []:
            if entry.get("revision") == commit:
                return ledgers.epoch(entry.get("deployedAt")) or now
        if (status.get("sync") or {}).get("revision") == commit:
            return now
    for kustomization in _list(cluster, "Kustomization"):
        status = kustomization.get("status") or {}
        if _same_commit(str(status.get("lastAppliedRevision") or ""), commit):
            return _ready_since(status) or now
    for release in _list(cluster, "HelmRelease"):
        for entry in (release.get("status") or {}).get("history") or []:
            version = str(entry.get("chartVersion") or "")
            if "+" in version and commit.startswith(version.rsplit("+", 1)[1]) and len(version.rsplit("+", 1)[1]) >= 7:
                return ledgers.epoch(entry.get("lastDeployed")) or now
    return None


def _same_commit(revision: str, commit: str) -> bool:
    """Flux 2 writes ``main@sha1:<sha>``; older versions ``main/<sha>``."""
    return bool(commit) and revision.rsplit(":", 1)[-1].rsplit("/", 1)[-1] == commit


def _ready_since(status: Mapping[str, Any]) -> float | None:
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready" and c.get("status") == "True"]
    return ledgers.epoch(ready[0].get("lastTransitionTime")) if ready else None


def _list(cluster: ClusterReader, kind: str) -> list[dict[str, Any]]:
    """Every object of ``kind``; none when the kind is not installed (no Argo CD, no Flux) or not readable."""
    try:
        return cluster.list(kind, None)
    except PermanentError:
        return []


def rolled_out(row: Remediation, cluster: ClusterReader) -> bool:
    """The live workload carries every value the PR set, and its controller has seen that spec."""
    kind, _, rest = row.workload.partition("/")
    namespace, _, name = rest.partition("/")
    if not (kind and namespace and name and row.after) or kind == "?":
        return False
    live = cluster.get(kind, namespace, name)
    if live is None:
        return False
    generation = (live.get("metadata") or {}).get("generation")
    observed = (live.get("status") or {}).get("observedGeneration")
    if generation is not None and observed is not None and int(observed) < int(generation):
        return False
    for path, wanted in row.after.items():
        try:
            value = fieldpaths.get(live, path)
        except (KeyError, ValueError):
            return False
        if not same_value(value, wanted):
            return False
    return True


def same_value(live: Any, wanted: Any) -> bool:
    """Equal as the API server would store it: ``1Gi`` == ``1024Mi``, ``500m`` == ``0.5``."""
    if live == wanted or str(live) == str(wanted):
        return True
    if isinstance(live, bool) or isinstance(wanted, bool) or live is None or wanted is None:
        return False
    try:
        return quantities.parse(live) == quantities.parse(wanted)
    except (ValueError, ArithmeticError, TypeError):
        return False


def reverted(row: Remediation, forge: Forge, pr: PullRequest, workspace: Workspace, *, merged_at: float) -> bool:
    """A commit on the base branch after the merge put a file the PR changed back to its text before the merge,
    or says it reverts the PR (``git revert``'s subject)."""
    for path in _files(row, forge, pr, workspace):
        try:
            # From an hour before: the merge commit's own time may precede the forge's merged_at a little.
            history = workspace.file_history(path, since=merged_at - HOUR, limit=20)
        except PermanentError:
            continue
        index = next((i for i, c in enumerate(history) if c.sha == pr.merge_commit), None)
        merge = history[index] if index is not None else None
        later = history[:index] if index is not None else [c for c in history if c.time > merged_at]
        for commit in later:  # newest first, all after the merge
            if merge is not None and commit.text == merge.previous and commit.previous == merge.text:
                return True
            if commit.subject.startswith("Revert ") and (f"#{pr.number}" in commit.subject or
                                                         (bool(pr.title) and pr.title in commit.subject)):
                return True
    return False


def _files(row: Remediation, forge: Forge, pr: PullRequest, workspace: Workspace) -> list[str]:
    """The files the PR changed as the forge lists them; a forge that cannot say (the local one): the files
    that define the workload at the base (the repository index)."""
    listed = [f.path for f in forge.pr_files(pr)]
    if listed:
        return listed
    kind, _, rest = row.workload.partition("/")
    namespace, _, name = rest.partition("/")
    index = workspace.index
    return sorted({hit.path for group in _WORKLOAD_GROUPS for hit in index.find(
        group=group, kind=kind, namespace=namespace, name=name, default_namespace=namespace)})


def _iso(seconds: float | None) -> str:
    return datetime.fromtimestamp(seconds or 0.0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(rows: list[Remediation]) -> str:
    """The rows as a terminal table: PR, workload, cause, state, merged by, synced, rolled out, final."""
    head = ("PR", "WORKLOAD", "CAUSE", "STATE", "MERGED BY", "SYNCED", "ROLLED OUT", "FINAL")
    lines = [head] + [(f"#{r.pr_number}", r.workload, r.cause, r.state, r.merged_by or "-",
                       _iso(r.synced_at) if r.synced_at else "-", _iso(r.rolled_out_at) if r.rolled_out_at else "-",
                       r.final or "following") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines) + "\n"
