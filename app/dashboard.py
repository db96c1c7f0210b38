"""The dashboard issue: one issue in the GitOps repository, kept current by the bot (Renovate's Dependency
Dashboard is the model).

It lists the open PRs, the escalations waiting for a human (with a line of evidence), the cooldowns (which PR
was closed, until when), the recent ``no_fix`` decisions with their reasons and the outcomes of the last fixes.
Two kinds of checkbox are read back on the next sync, before the body is written again:
- "retry": the declined alert's job is queued again now (``JobQueue.requeue``);
- "lift": the closed PR's ledger row gets ``cooldown_lifted_at``; ``ledger.decide`` then proceeds.

Each checkbox carries its target as a hidden comment (``<!-- autofix-retry:12 -->``) at the start of a line the
bot wrote; untrusted text (names, reasons) is escaped with render's helpers and stays inside one line, so it can
neither start a line nor add a checkbox. Ids are acted on only if they name a job or a ledger row we know.

``body`` is pure; ``sync`` does the reads and writes through ports. The body stays under ``MAX_BODY_CHARS``
(GitHub refuses more than 65,536): sections keep fewer rows until it fits.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from app import render
from app.ledger import when
from app.policies import Policy
from app.ports import Issue, IssueBoard, Ledger, Remediation

log = logging.getLogger(__name__)

MARKER = "<!-- autofix-dashboard -->"
MAX_BODY_CHARS = 60_000  # GitHub refuses issue bodies over 65,536 characters
RECENT_SECONDS = 7 * 24 * 3600.0  # no_fix decisions older than a week are left out
HOUR = 3600.0
_TICKED = re.compile(r"^[ \t]*[-*][ \t]+\[[xX]\][ \t]+<!-- autofix-(?P<kind>retry|lift):(?P<id>[0-9]{1,12}) -->",
                     re.MULTILINE)


class FinishedJob(Protocol):
    """What the dashboard reads of a job (app.adapters.store.Job)."""

    @property
    def id(self) -> int: ...
    @property
    def alertname(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def result(self) -> dict[str, Any] | None: ...
    @property
    def updated_at(self) -> float: ...


class JobQueue(Protocol):
    """The job store's part the dashboard uses (app.adapters.store.JobStore)."""

    def finished(self, *, since: float, limit: int = 100) -> Sequence[FinishedJob]: ...

    def requeue(self, job_id: int) -> bool: ...


@dataclass(frozen=True)
class Ticks:
    retry: frozenset[int]  # job ids
    lift: frozenset[int]  # PR numbers


@dataclass(frozen=True)
class Synced:
    issue: Issue
    retried: tuple[int, ...]
    lifted: tuple[int, ...]
    created: bool


def ticked(body: str) -> Ticks:
    """The checkboxes a human ticked in the issue body."""
    found: dict[str, set[int]] = {"retry": set(), "lift": set()}
    for match in _TICKED.finditer(body or ""):
        found[match["kind"]].add(int(match["id"]))
    return Ticks(retry=frozenset(found["retry"]), lift=frozenset(found["lift"]))


# ---- the body ------------------------------------------------------------------------------------------


def body(*, entries: Sequence[Remediation], jobs: Sequence[FinishedJob], now: float, policy: Policy) -> str:
    """The issue body: every section, newest first, at most ``max_items`` rows each, within MAX_BODY_CHARS."""
    rows = policy.dashboard.max_items
    while True:
        text = _compose(entries=entries, jobs=jobs, now=now, policy=policy, rows=rows)
        if len(text) <= MAX_BODY_CHARS or rows <= 1:
            break
        rows = max(1, rows // 2)
    if len(text) > MAX_BODY_CHARS:  # one row per section still too long: cannot be with bounded lines, kept safe
        text = text[:MAX_BODY_CHARS - 40].rsplit("\n", 1)[0] + "\n\n(cut to fit the forge's limit)\n"
    return text


def _compose(*, entries: Sequence[Remediation], jobs: Sequence[FinishedJob], now: float, policy: Policy,
             rows: int) -> str:
    own = [e for e in entries if e.opened_at > 0]  # rows with opened_at 0 are other people's PRs we commented on
    lines = [MARKER, "",
             "GitOps Autofix keeps this issue current: its pull requests, what waits for a human, and what it "
             "declined. Tick a box and the bot acts on its next update (at most a minute in the service, or "
             "`autofix dashboard sync`).", ""]
    lines += _section("Open pull requests", _open(own), rows, "No open pull request.")
    lines += _section("Escalations waiting for a human", _escalations(entries, jobs), rows, "None.")
    lines += _section("Cooldowns", _cooldowns(own, now=now, hours=policy.limits.cooldown_hours_after_closed), rows,
                      "None: every workload and cause may get a PR.")
    lines += _section("Recent no_fix decisions", _declined(jobs, now=now), rows, "None in the last 7 days.")
    lines += _section("Outcomes of the last fixes", _outcomes(own), rows, "No fix merged or closed yet.")
    lines += [f"Updated {when(now)}. Each section shows its newest {rows} row(s)."]
    return "\n".join(lines) + "\n"


def _section(title: str, items: list[str], rows: int, empty: str) -> list[str]:
    shown = items[:rows]
    more = [f"- … and {len(items) - rows} more"] if len(items) > rows else []
    return [f"## {title}", "", *(shown or [empty]), *more, ""]


def _pr(entry: Remediation) -> str:
    # Our own PR's number (an int): GitHub links it; nothing untrusted in it.
    return f"PR #{entry.pr_number}"


def _subject(entry: Remediation) -> str:
    return f"{render.code(entry.workload)} {render.code(entry.cause)}"


def _open(own: Sequence[Remediation]) -> list[str]:
    found = sorted((e for e in own if e.state == "open"), key=lambda e: (-e.opened_at, -e.pr_number))
    return [f"- {_pr(e)}: {_subject(e)}, opened {when(e.opened_at)}"
            + (f", risk {e.risk:.2f}" if e.risk is not None else "") for e in found]


def _escalations(entries: Sequence[Remediation], jobs: Sequence[FinishedJob]) -> list[str]:
    """Merged fixes after which the alert came back: the bot commented and stopped; a human decides."""
    found = sorted((e for e in entries if e.escalated_at is not None and e.final is None),
                   key=lambda e: (-(e.escalated_at or 0.0), -e.pr_number))
    out = []
    for e in found:
        line = f"- {_pr(e)}: {_subject(e)}, merged {when(e.merged_at)}, escalated {when(e.escalated_at)}"
        evidence = _evidence(e, jobs)
        out.append(line + (f". Evidence: {evidence}" if evidence else ""))
    return out


def _evidence(entry: Remediation, jobs: Sequence[FinishedJob]) -> str:
    """One line from the latest job of this workload and cause: the alert, when, what the diagnosis found."""
    for job in jobs:  # newest first
        result = job.result or {}
        if (result.get("workload"), result.get("cause")) != (entry.workload, entry.cause):
            continue
        diagnosed = next((s.get("decision") for s in result.get("stages") or [] if s.get("stage") == "diagnosis"), "")
        said = f"{render.code(job.alertname)} fired again at {when(job.updated_at)} (job {job.id})"
        return said + (f", diagnosis {render.code(diagnosed)}" if diagnosed else "")
    return ""


def _cooldowns(own: Sequence[Remediation], *, now: float, hours: float) -> list[str]:
    """The last PR of a workload and cause, closed unmerged within the cooldown and not lifted."""
    last: dict[str, Remediation] = {}
    for e in sorted(own, key=lambda e: (e.opened_at, e.pr_number)):
        last[e.branch] = e
    found = [e for e in last.values() if e.state == "closed" and e.closed_at is not None
             and e.cooldown_lifted_at is None and now < e.closed_at + hours * HOUR]
    found.sort(key=lambda e: (-(e.closed_at or 0.0), -e.pr_number))
    return [f"- [ ] <!-- autofix-lift:{e.pr_number} --> Lift: {_subject(e)} stays quiet until "
            f"{when((e.closed_at or 0.0) + hours * HOUR)}: {_pr(e)} was closed unmerged {when(e.closed_at)}"
            for e in found]


def _declined(jobs: Sequence[FinishedJob], *, now: float) -> list[str]:
    """The latest no_fix decision per alert fingerprint in the last week, with its reason."""
    seen: set[str] = set()
    out = []
    for job in jobs:  # newest first
        result = job.result or {}
        key = str(result.get("fingerprint") or job.id)
        if job.state != "done" or result.get("outcome") != "no_fix" or key in seen \
                or job.updated_at < now - RECENT_SECONDS:
            continue
        seen.add(key)
        workload = f" for {render.code(result['workload'])}" if result.get("workload") else ""
        out.append(f"- [ ] <!-- autofix-retry:{job.id} --> Retry now: {render.code(job.alertname)}{workload}, "
                   f"declined {when(job.updated_at)} (job {job.id}): {render.prose(result.get('reason') or '')}")
    return out


def _outcomes(own: Sequence[Remediation]) -> list[str]:
    """Fixes no longer open: merged or closed, and what became of them (``final``, once outcomes know it)."""
    done = sorted((e for e in own if e.state != "open"),
                  key=lambda e: (-(e.final_at or e.merged_at or e.closed_at or 0.0), -e.pr_number))
    out = []
    for e in done:
        ended = f"merged {when(e.merged_at)}" if e.state == "merged" else f"closed unmerged {when(e.closed_at)}"
        final = f"**{e.final}** ({when(e.final_at)})" if e.final else "still followed"
        out.append(f"- {_pr(e)}: {_subject(e)}, {ended}: {final}")
    return out


# ---- the sync: read the ticks, act, write the body ----------------------------------------------------


def sync(*, board: IssueBoard, jobs: JobQueue, ledger: Ledger, policy: Policy,
         clock: Callable[[], float]) -> Synced | None:
    """Act on the ticked boxes of the dashboard issue, then write it again (created when missing). None when
    the policy turns the dashboard off."""
    if not policy.dashboard.enabled:
        return None
    issue = board.find_issue(MARKER)
    now = clock()
    declined = {job.id for job in jobs.finished(since=now - RECENT_SECONDS, limit=500)
                if job.state == "done" and (job.result or {}).get("outcome") == "no_fix"}
    retried, lifted = _act(ticked(issue.body) if issue else Ticks(frozenset(), frozenset()), jobs=jobs,
                           ledger=ledger, now=now, declined=declined)
    entries = ledger.entries()
    recent = jobs.finished(since=now - RECENT_SECONDS, limit=500)
    text = body(entries=entries, jobs=recent, now=now, policy=policy)
    title = policy.dashboard.title
    if issue is None:
        issue = board.create_issue(title=title, body=text)
        created = True
    else:
        issue = board.update_issue(issue, title=title, body=text)
        created = False
    log.info("dashboard issue written", extra={"issue": issue.number, "retried": len(retried), "lifted": len(lifted)})
    return Synced(issue=issue, retried=retried, lifted=lifted, created=created)


def _act(ticks: Ticks, *, jobs: JobQueue, ledger: Ledger, now: float,
         declined: set[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Only what the body offered: a recent no_fix job is retried, a closed PR's cooldown lifted (a box typed
    in by hand for another job or PR does nothing)."""
    retried = tuple(sorted(job_id for job_id in ticks.retry if job_id in declined and jobs.requeue(job_id)))
    rows: Mapping[int, Remediation] = {e.pr_number: e for e in ledger.entries()} if ticks.lift else {}
    lifted = []
    for number in sorted(ticks.lift):
        row = rows.get(number)
        if row is not None and row.state == "closed" and row.cooldown_lifted_at is None:
            ledger.record(replace(row, cooldown_lifted_at=now))
            lifted.append(number)
    if retried or lifted:
        log.info("dashboard ticks acted on", extra={"retried": list(retried), "lifted": lifted})
    return retried, tuple(lifted)


class Keeper:
    """The service's dashboard: synced at most once per ``dashboard.interval_seconds``, and only when a job
    finished since the last sync or the issue has a ticked box (else one read of the issue, no write)."""

    def __init__(self, *, board: IssueBoard, jobs: JobQueue, ledger: Ledger, policy: Policy,
                 clock: Callable[[], float]) -> None:
        self._board, self._jobs, self._ledger, self._policy, self._clock = board, jobs, ledger, policy, clock
        self._last = clock()  # the first sync waits for a job to finish: a start alone writes nothing

    def tick(self) -> Synced | None:
        """Sync if due; None when not (or when the policy turns the dashboard off)."""
        now, last = self._clock(), self._last
        if not self._policy.dashboard.enabled or now - last < self._policy.dashboard.interval_seconds:
            return None
        self._last = now
        if not self._jobs.finished(since=last, limit=1):
            issue = self._board.find_issue(MARKER)
            if issue is None or ticked(issue.body) == Ticks(frozenset(), frozenset()):
                return None
        return sync(board=self._board, jobs=self._jobs, ledger=self._ledger, policy=self._policy, clock=self._clock)
