"""Never loop, respect "no": the ledger of remediations, rebuilt from the forge, and what it allows next.

The forge is the source of truth. Every PR the bot opens carries the ``autofix`` label, a branch
``autofix/<ns>/<workload>/<cause>`` and a hidden marker in its body (workload, cause, values before and
after, images); the ledger in the job store is a cache of those PRs plus what the bot did about them. When the
data dir is lost the ledger is empty and is rebuilt from the forge before any decision.

The rules (``decide``), for one workload and cause (= one branch):
- a PR still open: the publish stage updates it or reports a duplicate (one open PR at most);
- the last PR was merged less than ``merged_fix_window_hours`` ago: the fix did not help; escalate on that PR;
- the last PR was closed unmerged less than ``cooldown_hours_after_closed`` ago: a human said no; stay quiet
  unless the evidence changed materially (the workload runs other images now);
- otherwise proceed, with the values before the first merged fix as the baseline the caps are measured from.

Earlier raises the bot did not write (commits, PRs of other bots and older versions) are judged by the second
half of this module, once the change is known (``precedents``-related functions, see the comment there).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from app import fieldpaths, quantities, render, yaml_rt
from app.ports import FileCommit, Forge, Ledger, PrFile, PullRequest, Remediation

log = logging.getLogger(__name__)

MARKER_PREFIX = "<!-- autofix-ledger: "
_MARKER = re.compile(r"<!-- autofix-ledger: (?P<json>\{.*?\}) -->", re.DOTALL)
_BRANCH = re.compile(r"^autofix/(?P<ns>[a-z0-9.-]+)/(?P<name>[a-z0-9.-]+)/(?P<cause>[a-z0-9.-]+)$")
HOUR = 3600.0


@dataclass(frozen=True)
class Verdict:
    action: Literal["proceed", "escalate", "cooldown"]
    reason: str = ""
    pr: Remediation | None = None
    baseline: dict[str, Any] = field(default_factory=dict)  # path -> value in git before the first fix


# ---- the marker: what a PR body says about itself -----------------------------------------------------


def marker(entry: Remediation) -> str:
    """A hidden HTML comment for the PR body. Angle brackets are escaped so no value can end the comment.
    The cluster only when there is one to name (clusters.yaml): a one-cluster install's bodies stay as they were."""
    data: dict[str, Any] = {"workload": entry.workload, "cause": entry.cause, "fingerprint": entry.fingerprint,
                            "before": entry.before, "after": entry.after, "images": list(entry.images)}
    if entry.cluster:
        data["cluster"] = entry.cluster
    text = json.dumps(data, sort_keys=True, default=str).replace("<", "\\u003c").replace(">", "\\u003e")
    return f"{MARKER_PREFIX}{text} -->"


def from_pr(pr: PullRequest) -> Remediation | None:
    """The ledger row a PR stands for: from its marker, else from its branch name alone; None if not ours."""
    match = _BRANCH.match(pr.branch)
    if match is None:
        return None
    data: dict[str, Any] = {}
    found = _MARKER.search(pr.body or "")
    if found is not None:
        try:
            loaded = json.loads(found.group("json"))
            data = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            log.warning("unreadable ledger marker", extra={"pr": pr.number})
    state = pr.state if pr.state in ("open", "merged", "closed") else "closed"
    return Remediation(
        workload=str(data.get("workload") or f"?/{match['ns']}/{match['name']}"),
        cause=str(data.get("cause") or match["cause"].replace("-", "_")),
        branch=pr.branch, pr_number=pr.number, pr_url=pr.url, state=state,
        before=dict(data.get("before") or {}), after=dict(data.get("after") or {}),
        fingerprint=str(data.get("fingerprint") or ""), images=tuple(data.get("images") or ()),
        opened_at=epoch(pr.created_at) or 0.0, merged_at=epoch(pr.merged_at), closed_at=epoch(pr.closed_at),
        cluster=str(data.get("cluster") or ""),
    )


def epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def when(seconds: float | None) -> str:
    return datetime.fromtimestamp(seconds or 0.0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- sync with the forge ------------------------------------------------------------------------------


def sync(ledger: Ledger, forge: Forge, *, label: str, branch: str | None = None) -> list[Remediation]:
    """Rebuild an empty ledger from every labelled PR; refresh the rows of ``branch``; return them."""
    if ledger.is_empty():
        prs = forge.list_prs(label, "all")
        log.info("ledger rebuilt from the forge", extra={"prs": len(prs), "label": label})
        _merge(ledger, prs)
    if branch is not None:
        _merge(ledger, forge.list_prs(label, "all", branch=branch))
    return ledger.entries(branch=branch)


def _merge(ledger: Ledger, prs: list[PullRequest]) -> None:
    known = {e.pr_number: e for e in ledger.entries()}
    for pr in prs:
        fresh = from_pr(pr)
        if fresh is None:
            continue
        old = known.get(pr.number)
        if old is not None:  # the forge knows the state; we know what we wrote and did
            fresh = replace(old, state=fresh.state, merged_at=fresh.merged_at, closed_at=fresh.closed_at,
                            pr_url=fresh.pr_url, opened_at=old.opened_at or fresh.opened_at,
                            before=old.before or fresh.before, after=old.after or fresh.after,
                            cluster=old.cluster or fresh.cluster)
        if fresh != old:
            ledger.record(fresh)


# ---- the rules ----------------------------------------------------------------------------------------


def decide(entries: list[Remediation], *, now: float, limits: Any, images: tuple[str, ...]) -> Verdict:
    """What the ledger allows for one workload and cause (``limits`` is the policy's Limits)."""
    if not entries:
        return Verdict("proceed")
    baseline = _baseline(entries)
    last = max(entries, key=lambda e: (e.opened_at, e.pr_number))
    if last.state == "open":
        return Verdict("proceed", f"PR #{last.pr_number} is open: update it, never a second one", last, baseline)
    merged_at = last.merged_at if last.state == "merged" else None
    if merged_at is not None and now - merged_at < limits.merged_fix_window_hours * HOUR:
        return Verdict("escalate", f"escalated: fix merged at {when(merged_at)} did not resolve "
                                   f"(PR #{last.pr_number})", last, baseline)
    if last.state == "closed" and last.closed_at is not None:
        until = last.closed_at + limits.cooldown_hours_after_closed * HOUR
        changed = bool(last.images) and bool(images) and set(images) != set(last.images)
        lifted = last.cooldown_lifted_at is not None  # a human ticked "lift" on the dashboard issue
        if now < until and not changed and not lifted:
            return Verdict("cooldown", f"PR #{last.pr_number} was closed unmerged at {when(last.closed_at)}: "
                                       f"no new PR for this workload and cause until {when(until)} unless the "
                                       "evidence changes", last, baseline)
    return Verdict("proceed", "", None, baseline)


def _baseline(entries: list[Remediation]) -> dict[str, Any]:
    """Per path, the value in git before the first merged fix: caps count from there, not from the last raise."""
    baseline: dict[str, Any] = {}
    for entry in sorted(entries, key=lambda e: (e.opened_at, e.pr_number)):
        if entry.state == "merged":
            for path, value in entry.before.items():
                baseline.setdefault(path, value)
    return baseline


def budget_wait(ledger: Ledger, *, now: float, per_hour: int) -> float | None:
    """Seconds to wait before another new PR fits the global hourly budget; None when it fits now."""
    if ledger.opened_since(now - HOUR) < per_hour:
        return None
    recent = sorted(e.opened_at for e in ledger.entries() if e.opened_at >= now - HOUR)
    oldest = recent[-per_hour] if per_hour and len(recent) >= per_hour else now
    return max(oldest + HOUR - now, 1.0)


# ---- what the bot says on a PR ------------------------------------------------------------------------


def escalation_comment(verdict: Verdict, *, alert: str, root_cause: str, evidence: list[str], run_url: str) -> str:
    assert verdict.pr is not None
    # Untrusted text escaped as in the PR body (app/render.py): no HTML, mention or closing keyword works.
    lines = [f"**Escalation**: this fix was merged at {when(verdict.pr.merged_at)}, and {render.code(alert)} "
             "fired again for the same cause. GitOps Autofix will not open another PR for this problem: it needs "
             "a human.", "", render.prose(root_cause), "", "New evidence:", "", render.fence(evidence), "",
             f"Run: {render.run_text(run_url)}"]
    return "\n".join(lines) + "\n"


def resolved_comment(*, alert: str, resolved_at: str, closing: bool) -> str:
    tail = " Closing it, as the policy asks (`limits.close_pr_on_resolve`)." if closing else \
        " Merge it only if you still want the change."
    return f"The alert {render.code(alert)} resolved at {resolved_at} without this change.{tail}\n"


# ---- earlier raises the bot did not write -------------------------------------------------------------
#
# Older versions of this bot, other bots and people raise limits too; the rules above only know the bot's own
# branches. Before a raise is published, the history stage (app/stages/history.py ``precedents``) asks two
# more witnesses whether the same field of the same workload was raised recently:
# - git: the base branch's first-parent commits that changed the file the fix edits, within
#   ``merged_fix_window_hours``; the field's value is read on both sides of each commit with the same field path
#   the edit uses (the document found again by kind and name, so a reordered file still matches);
# - the forge: every PR labelled ``autofix`` whose branch is not this version's ``autofix/<ns>/<name>/<cause>``
#   (open, merged or closed; any title, any branch). Such a PR is tied to the workload, most exact first, by
#   (1) this bot's ledger marker in its body naming the workload; (2) being merged as one of those commits:
#   GitHub's merge commit id, or "(#N)" / "Merge pull request #N" in the commit's subject; (3) its changed
#   files (the forge's patches): it changes the file the fix edits, a removed and an added line of the field's
#   own key under the same parent key raise the value, and the file defines no other workload or the workload's
#   name is a word of the PR's branch, title or body.
# A raise is one in the same direction as ours (a quantity or number that went up): a commit that lowered or
# first set the field is not an earlier fix (it may be the cause), and values that are not quantities are not
# judged here.


@dataclass(frozen=True)
class Raise:
    """One field our change raises, where the edit writes it (a document of a file, in its own paths)."""

    file: str
    document_index: int
    prefix: tuple[str | int, ...]
    path: str
    old: Any
    new: Any
    kind: str | None = None  # the document's kind and name at the base: found again by them in older texts
    name: str | None = None


@dataclass(frozen=True)
class Precedent:
    """An earlier raise of the same field: a commit on the base branch, a PR, or both (a merged PR)."""

    raised: Raise
    old: Any
    new: Any
    at: float  # when it landed on the base (commit, merge); for an open or closed PR when it was opened/closed
    commit: FileCommit | None = None
    pr: PullRequest | None = None
    tie: str = ""  # how a PR was tied to the workload (module comment above)

    @property
    def landed(self) -> bool:
        return self.commit is not None or (self.pr is not None and self.pr.state == "merged")


@dataclass(frozen=True)
class Judgement:
    action: Literal["proceed", "escalate", "open", "cooldown"]
    reason: str = ""
    precedent: Precedent | None = None


_SUBJECT_PR = re.compile(r"\(#(?P<squash>[0-9]+)\)\s*$|^Merge pull request #(?P<merge>[0-9]+)\b")
_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?:-\s+)?(?P<key>[A-Za-z0-9_.\"'/-]+)\s*:(?:\s+(?P<value>[^#]*?))?\s*(?:#.*)?$")
_WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet"})


def is_raise(old: Any, new: Any) -> bool:
    """Whether ``new`` is a larger quantity (or number) than ``old``; False when either is not one."""
    try:
        return bool(quantities.parse(_scalar(new)) > quantities.parse(_scalar(old)))
    except (ValueError, TypeError, ArithmeticError):
        return False


def _scalar(value: Any) -> str | int | float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError("not a quantity")
    return value.strip().strip("\"'") if isinstance(value, str) else value


def document_identity(text: str, *, document_index: int, prefix: tuple[str | int, ...] = ()) -> tuple[str | None,
                                                                                                      str | None]:
    """The kind and metadata.name of the object an edit writes (None, None for a values file or a patch
    without them)."""
    obj = _object(_documents(text), document_index, prefix, kind=None, name=None)
    if not isinstance(obj, dict):
        return None, None
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    kind = obj.get("kind")
    return (str(kind) if kind else None), (str(name) if name else None)


def value_in(text: str | None, raised: Raise) -> Any:
    """The field's value in one version of the file; None when the file, the object or the field is absent."""
    if text is None:
        return None
    obj = _object(_documents(text), raised.document_index, raised.prefix, kind=raised.kind, name=raised.name)
    try:
        return fieldpaths.get(obj, raised.path) if obj is not None else None
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _documents(text: str) -> list[Any]:
    try:
        return yaml_rt.documents(text)
    except Exception:  # noqa: BLE001 - an old version that no longer parses says nothing about the field
        return []


def _object(docs: list[Any], index: int, prefix: tuple[str | int, ...], *, kind: str | None,
            name: str | None) -> Any:
    """The edited object in one version: by kind and name when known (the same index first), else by index."""
    def at(doc: Any) -> Any:
        try:
            return fieldpaths.get(doc, prefix) if prefix else doc
        except (KeyError, IndexError, TypeError, ValueError):
            return None

    if kind is not None and name is not None:
        order = [index, *(i for i in range(len(docs)) if i != index)] if index < len(docs) else range(len(docs))
        for i in order:
            obj = at(docs[i])
            if isinstance(obj, dict) and obj.get("kind") == kind and (obj.get("metadata") or {}).get("name") == name:
                return obj
        return None
    return at(docs[index]) if index < len(docs) else None


def commit_raises(raised: Raise, history: list[FileCommit]) -> list[Precedent]:
    """The commits that raised the field (its value on both sides of each), newest first."""
    found = []
    for commit in history:
        before, after = value_in(commit.previous, raised), value_in(commit.text, raised)
        if before is not None and after is not None and is_raise(before, after):
            found.append(Precedent(raised=raised, old=before, new=after, at=commit.time, commit=commit))
    return found


def foreign(pr: PullRequest) -> bool:
    """A labelled PR this version did not open: its branch is not ``autofix/<ns>/<name>/<cause>``."""
    return _BRANCH.match(pr.branch) is None


def marker_of(pr: PullRequest) -> dict[str, Any] | None:
    """The ledger marker in a PR's body (this bot, any version, any branch), if there is one."""
    found = _MARKER.search(pr.body or "")
    if found is None:
        return None
    try:
        data = json.loads(found.group("json"))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def tie_to_commits(found: list[Precedent], prs: list[PullRequest]) -> list[Precedent]:
    """Each commit that raised the field, with the merged PR it landed as, if one of ``prs`` is."""
    merged = {pr.number: pr for pr in prs if pr.state == "merged"}
    by_commit = {pr.merge_commit: pr for pr in merged.values() if pr.merge_commit}
    tied = []
    for precedent in found:
        commit = precedent.commit
        if commit is None:
            tied.append(precedent)
            continue
        pr, tie = by_commit.get(commit.sha), "merge commit"
        subject = _SUBJECT_PR.search(commit.subject)
        if pr is None and subject is not None:
            pr, tie = merged.get(int(subject["squash"] or subject["merge"])), f"#N in the subject of {commit.sha[:12]}"
        tied.append(replace(precedent, pr=pr, tie=tie) if pr is not None else precedent)
    return tied


def pr_raise(pr: PullRequest, raised: Raise, *, workload: str, name: str, files: list[PrFile] | None,
             single_workload: bool) -> Precedent | None:
    """What a labelled PR not in this version's format says about the field, tied to the workload by its
    ledger marker or its changed files (module comment above); None when it is not tied or raises nothing."""
    marker = marker_of(pr)
    if marker is not None:
        if marker.get("workload") != workload:
            return None
        before, after = (marker.get("before") or {}), (marker.get("after") or {})
        old, new = before.get(raised.path), after.get(raised.path)
        if old is None or not is_raise(old, new):
            return None
        return Precedent(raised=raised, old=old, new=new, at=_pr_time(pr), pr=pr, tie="ledger marker")
    # A file the forge did not show (too large to show) has no hunks to read: not an empty change (hidden_change).
    patch = next((f.patch for f in files or [] if f.path == raised.file and not f.too_large), None)
    if patch is None or not (single_workload or _mentions(pr, name)):
        return None
    change = _patch_raise(patch, raised.path)
    if change is None:
        return None
    return Precedent(raised=raised, old=change[0], new=change[1], at=_pr_time(pr), pr=pr, tie="changed files")


def hidden_change(pr: PullRequest, raised: Raise, *, name: str, files: list[PrFile] | None,
                  single_workload: bool) -> str | None:
    """What to say when a labelled PR without a marker, tied to the workload as ``pr_raise`` ties it, changes the
    raised field's file but the forge did not show its hunks (GitLab's too_large or collapsed): whether it raised
    the field cannot be read. None otherwise."""
    if marker_of(pr) is not None or not (single_workload or _mentions(pr, name)):
        return None
    if not any(f.path == raised.file and f.too_large for f in files or []):
        return None
    return f"#{pr.number} changes {raised.file} but its diff is too large to show: not read"


def _pr_time(pr: PullRequest) -> float:
    stamp = pr.merged_at if pr.state == "merged" else pr.closed_at if pr.state == "closed" else pr.created_at
    return epoch(stamp) or 0.0


def _mentions(pr: PullRequest, name: str) -> bool:
    word = re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])")
    return any(word.search(text or "") for text in (pr.branch, pr.title, pr.body))


def _patch_raise(patch: str, path: str) -> tuple[str, str] | None:
    """A removed and an added line of the field's key (same parent key where the hunk shows it) whose value
    went up: (old, new). Each side of the hunk is read with its own indentation stack."""
    keys = [seg for seg in fieldpaths.parse(path) if isinstance(seg, str)]
    leaf, parent = keys[-1], (keys[-2] if len(keys) > 1 else None)
    removed: list[str] = []
    added: list[str] = []
    for marker, out in (("-", removed), ("+", added)):
        stack: list[tuple[int, str]] = []
        for line in patch.splitlines():
            if line.startswith("@@"):
                stack = []
                continue
            sign, body = line[:1], line[1:]
            if sign not in (" ", marker):
                continue
            match = _KEY_LINE.match(body)
            if match is None:
                continue
            item = body.lstrip()  # "- name: x": the key sits right of the dash
            indent = len(match["indent"]) + (len(item) - len(item.lstrip("-").lstrip()) if item[:1] == "-" else 0)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            key = match["key"].strip("\"'")
            if sign == marker and key == leaf and match["value"] and (not stack or parent is None
                                                                         or stack[-1][1] == parent):
                out.append(match["value"].strip().strip("\"'"))
            stack.append((indent, key))
    for old, new in zip(removed, added, strict=False):
        if is_raise(old, new):
            return old, new
    return None


def judge(found: list[Precedent], *, now: float, limits: Any) -> Judgement:
    """What earlier raises by others allow (``limits`` is the policy's Limits): a raise that landed within
    ``merged_fix_window_hours`` did not help (escalate); an open PR already proposes it; a PR closed unmerged
    within ``cooldown_hours_after_closed`` was a "no"; else go on."""
    window = limits.merged_fix_window_hours * HOUR
    # A raise with its PR first (where people discussed it: the comment goes there), then the newest.
    landed = sorted((p for p in found if p.landed and now - p.at < window), key=lambda p: (p.pr is None, -p.at))
    if landed:
        return Judgement("escalate", _landed_reason(landed[0], window=window), landed[0])
    pending = [p for p in found if p.pr is not None and p.pr.state == "open"]
    if pending:
        p = pending[0]
        assert p.pr is not None
        return Judgement("open", f"{_pr_label(p.pr)} already raises {_change(p)} and is open: not opening a "
                                 "second PR for it (the new evidence is commented there)", p)
    for p in found:
        if p.pr is not None and p.pr.state == "closed" and p.pr.closed_at:
            until = (epoch(p.pr.closed_at) or 0.0) + limits.cooldown_hours_after_closed * HOUR
            if now < until:
                return Judgement("cooldown", f"{_pr_label(p.pr)} raising {_change(p)} was closed unmerged at "
                                             f"{when(epoch(p.pr.closed_at))}: no new PR for it until {when(until)}",
                                 p)
    return Judgement("proceed")


def _landed_reason(p: Precedent, *, window: float) -> str:
    again = f"the same failure is back within {window / HOUR:g} h: not raising it again, it needs a human"
    if p.pr is not None:
        return (f"escalated: {_pr_label(p.pr)} raised {_change(p)}, merged at {when(p.at)}, and {again} "
                f"(commented on PR #{p.pr.number})")
    commit = p.commit
    assert commit is not None
    return (f"escalated: commit {commit.sha[:12]} by {_flat(commit.author)} at {when(commit.time)} "
            f"(\"{_flat(commit.subject)}\") raised {_change(p)}, and {again}")


def _pr_label(pr: PullRequest) -> str:
    return f"PR #{pr.number} (branch {_flat(pr.branch)})"


def _change(p: Precedent) -> str:
    return f"{p.raised.path} in {p.raised.file} from {_flat(p.old)} to {_flat(p.new)}"


def _flat(value: Any, limit: int = 120) -> str:
    """Untrusted text (a commit's author and subject, a branch) on one bounded line."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def precedent_comment(p: Precedent, *, action: str, alert: str, root_cause: str, evidence: list[str],
                      run_url: str) -> str:
    """What the bot says on a PR by someone else that raised the same field: the new evidence, once."""
    if action == "escalate":
        head = (f"**Escalation**: this change raised {render.code(p.raised.path)} from {render.code(p.old)} to "
                f"{render.code(p.new)}, it was merged at {when(p.at)}, and {render.code(alert)} fired again for "
                "the same cause. GitOps Autofix will not raise it again: it needs a human.")
    else:
        head = (f"GitOps Autofix diagnosed the same failure and would raise {render.code(p.raised.path)} too: "
                f"{render.code(alert)} fired again. It opens no second PR; the new evidence is below.")
    lines = [head, "", render.prose(root_cause), "", "New evidence:", "", render.fence(evidence), "",
             f"Run: {render.run_text(run_url)}"]
    return "\n".join(lines) + "\n"


def defines_only(text: str, *, kind: str | None, name: str | None) -> bool:
    """Whether the file's only workload document is the one named (then a PR changing it is about it)."""
    if kind is None or name is None:
        return False
    workloads = [doc for doc in _documents(text) if isinstance(doc, dict) and doc.get("kind") in _WORKLOAD_KINDS]
    return len(workloads) == 1 and workloads[0].get("kind") == kind and \
        (workloads[0].get("metadata") or {}).get("name") == name
