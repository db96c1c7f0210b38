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
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from app import render
from app.ports import Forge, Ledger, PullRequest, Remediation

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
    """A hidden HTML comment for the PR body. Angle brackets are escaped so no value can end the comment."""
    data = {"workload": entry.workload, "cause": entry.cause, "fingerprint": entry.fingerprint,
            "before": entry.before, "after": entry.after, "images": list(entry.images)}
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
                            before=old.before or fresh.before, after=old.after or fresh.after)
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
        if now < until and not changed:
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
