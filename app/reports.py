"""Reports: per cause, what the bot decided over the last N days and what became of its PRs (pure).

Two sources, both read by the caller: the ledger's rows (one per PR, opened in the window) give the PRs and their
life (merged, closed, the followed ``final`` outcome, when each step happened); the job store's finished jobs
(done or failed in the window) give the decisions that opened no PR: ``no_fix`` by its reason code.

Rates are over the PRs opened in the window: merged / opened, and effective and reverted / merged. A rate with
nothing to count is None (not 0). The times are medians in seconds, as the outcomes module (app/outcomes.py)
records them on the MLflow run: merge = merged_at - opened_at, sync = synced_at - merged_at, resolve =
resolved_at - merged_at (the alert resolved after the merge).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from app.ports import Remediation

DAY = 86400.0
MAX_JOBS = 1_000_000  # finished jobs read per report: the purge keeps far fewer (retention)
UNKNOWN = "unknown"  # a job whose result names no cause (it failed before the diagnosis, or an older result)


class FinishedJob(Protocol):
    """What a report reads of a finished job (app.adapters.store.Job has it)."""

    @property
    def state(self) -> str: ...

    @property
    def updated_at(self) -> float: ...

    @property
    def result(self) -> dict[str, Any] | None: ...


class Source(Protocol):
    """Where a report reads from: the job store (app.adapters.store.JobStore) holds both."""

    def entries(self, *, branch: str | None = None) -> list[Remediation]: ...

    def finished(self, *, since: float, limit: int = ...) -> Sequence[FinishedJob]: ...


@dataclass(frozen=True)
class CauseReport:
    cause: str
    opened: int = 0
    still_open: int = 0
    merged: int = 0
    closed: int = 0  # closed unmerged
    effective: int = 0
    ineffective: int = 0
    reverted: int = 0
    merged_rate: float | None = None
    effective_rate: float | None = None
    reverted_rate: float | None = None
    no_fix: dict[str, int] = field(default_factory=dict)  # reason code -> jobs
    failed: int = 0  # jobs that ended in an error
    median_merge_s: float | None = None
    median_sync_s: float | None = None
    median_resolve_s: float | None = None


@dataclass(frozen=True)
class Report:
    days: float
    since: float  # Unix seconds
    until: float
    causes: list[CauseReport]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def read(source: Source, *, now: float, days: float) -> Report:
    """The report over the last ``days`` days, read from the ledger and the finished jobs."""
    jobs = source.finished(since=now - days * DAY, limit=MAX_JOBS)
    return build(source.entries(), jobs, now=now, days=days)


def build(entries: Iterable[Remediation], jobs: Iterable[FinishedJob], *, now: float, days: float) -> Report:
    since = now - days * DAY
    rows: dict[str, list[Remediation]] = defaultdict(list)
    for entry in entries:
        if since <= entry.opened_at <= now:
            rows[entry.cause].append(entry)
    declined: dict[str, Counter[str]] = defaultdict(Counter)
    failed: Counter[str] = Counter()
    for job in jobs:
        if not since <= job.updated_at <= now:
            continue
        result = job.result or {}
        cause = str(result.get("cause") or UNKNOWN)
        if job.state == "failed" or result.get("outcome") == "failed":
            failed[cause] += 1
        elif result.get("outcome") == "no_fix":
            declined[cause][reason(result)] += 1
    causes = sorted(set(rows) | set(declined) | set(failed))
    return Report(days=days, since=since, until=now,
                  causes=[_cause(c, rows.get(c, []), declined.get(c, Counter()), failed[c]) for c in causes])


def reason(result: Mapping[str, Any]) -> str:
    """A no_fix's reason code; an older result without one: the stage that ended the handling."""
    if result.get("code"):
        return str(result["code"])
    stages = result.get("stages") or []
    return f"stage:{stages[-1].get('stage')}" if stages and isinstance(stages[-1], Mapping) else UNKNOWN


def _cause(cause: str, rows: list[Remediation], declined: Counter[str], failed: int) -> CauseReport:
    merged = [e for e in rows if e.state == "merged"]
    finals = Counter(e.final for e in rows)
    return CauseReport(
        cause=cause, opened=len(rows), still_open=sum(e.state == "open" for e in rows), merged=len(merged),
        closed=sum(e.state == "closed" for e in rows), effective=finals["effective"],
        ineffective=finals["ineffective"], reverted=finals["reverted"],
        merged_rate=_rate(len(merged), len(rows)), effective_rate=_rate(finals["effective"], len(merged)),
        reverted_rate=_rate(finals["reverted"], len(merged)), no_fix=dict(sorted(declined.items())), failed=failed,
        median_merge_s=_median(e.merged_at - e.opened_at for e in merged if e.merged_at is not None),
        median_sync_s=_median(e.synced_at - e.merged_at for e in merged
                              if e.synced_at is not None and e.merged_at is not None),
        median_resolve_s=_median(e.resolved_at - e.merged_at for e in merged
                                 if e.resolved_at is not None and e.merged_at is not None
                                 and e.resolved_at >= e.merged_at))


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _median(values: Iterable[float]) -> float | None:
    kept = [max(v, 0.0) for v in values]
    return round(statistics.median(kept), 1) if kept else None


def table(report: Report) -> str:
    """The report as a terminal table: one row per cause, then the no_fix reasons."""
    head = ("cause", "opened", "open", "merged", "closed", "effective", "reverted", "merged%", "effective%",
            "reverted%", "merge", "sync", "resolve", "no_fix", "failed")
    rows = [head] + [(
        c.cause, str(c.opened), str(c.still_open), str(c.merged), str(c.closed), str(c.effective), str(c.reverted),
        _pct(c.merged_rate), _pct(c.effective_rate), _pct(c.reverted_rate), _duration(c.median_merge_s),
        _duration(c.median_sync_s), _duration(c.median_resolve_s), str(sum(c.no_fix.values())), str(c.failed))
        for c in report.causes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"Last {report.days:g} day(s): {len(report.causes)} cause(s); times are medians", ""]
    lines += ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
              .rstrip() for r in rows]
    reasons = [f"  {c.cause}: " + ", ".join(f"{k} {n}" for k, n in c.no_fix.items())
               for c in report.causes if c.no_fix]
    if reasons:
        lines += ["", "no_fix by reason:", *reasons]
    if not report.causes:
        lines += ["(nothing decided in this window)"]
    return "\n".join(lines)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * DAY:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / DAY:.1f}d"
