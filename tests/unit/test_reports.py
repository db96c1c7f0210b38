"""Reports: per cause counts, rates and median times over a window, from ledger rows and finished jobs' results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from app import reports
from app.ports import Remediation

NOW = 1_800_000_000.0
DAY, HOUR = 86400.0, 3600.0


@dataclass(frozen=True)
class Finished:
    """A finished job as the store returns it (the fields a report reads)."""

    state: str
    updated_at: float
    result: dict[str, Any] | None


def _pr(number: int, *, cause: str = "oom_killed", state: str = "merged", opened: float = NOW - 2 * DAY,
        merge_after: float | None = 2 * HOUR, sync_after: float | None = None, resolve_after: float | None = None,
        final: str | None = None) -> Remediation:
    merged = opened + merge_after if state == "merged" and merge_after is not None else None
    return Remediation(workload=f"Deployment/shop/w{number}", cause=cause, branch=f"autofix/shop/w{number}/x",
                       pr_number=number, pr_url=f"https://github.com/acme/gitops/pull/{number}", state=state,
                       opened_at=opened, merged_at=merged,
                       synced_at=merged + sync_after if merged is not None and sync_after is not None else None,
                       resolved_at=merged + resolve_after if merged is not None and resolve_after is not None else None,
                       final=final)


def _no_fix(cause: str | None, code: str, *, at: float = NOW - HOUR) -> Finished:
    return Finished(state="done", updated_at=at, result={
        "alertname": "KubePodCrashLooping", "fingerprint": "d09fc39d073c7e73", "outcome": "no_fix",
        "reason": "a reason", "code": code, "cause": cause,
        "stages": [{"stage": "intake", "seconds": 0.0, "decision": "firing alert accepted"}]})


def test_counts_rates_and_medians_per_cause() -> None:
    entries = [
        _pr(1, sync_after=300, resolve_after=1800, final="effective"),
        _pr(2, merge_after=4 * HOUR, sync_after=900, resolve_after=3600, final="effective"),
        _pr(3, merge_after=6 * HOUR, final="reverted"),
        _pr(4, state="closed"),
        _pr(5, state="open"),
        _pr(6, cause="image_pull_after_rollout", merge_after=HOUR),
    ]
    jobs = [_no_fix("oom_killed", "cooldown"), _no_fix("oom_killed", "cooldown"), _no_fix("oom_killed", "escalated"),
            _no_fix(None, "not_targeted"), Finished(state="failed", updated_at=NOW - HOUR, result=None),
            Finished(state="done", updated_at=NOW - HOUR, result={"outcome": "pr_opened", "cause": "oom_killed"})]
    report = reports.build(entries, jobs, now=NOW, days=7)
    image, oom, unknown = report.causes
    assert (oom.cause, oom.opened, oom.still_open, oom.merged, oom.closed) == ("oom_killed", 5, 1, 3, 1)
    assert (oom.effective, oom.reverted, oom.ineffective) == (2, 1, 0)
    assert (oom.merged_rate, oom.effective_rate, oom.reverted_rate) == (0.6, 0.6667, 0.3333)
    assert (oom.median_merge_s, oom.median_sync_s, oom.median_resolve_s) == (4 * HOUR, 600.0, 2700.0)
    assert oom.no_fix == {"cooldown": 2, "escalated": 1} and oom.failed == 0
    assert (image.opened, image.merged, image.median_merge_s, image.median_sync_s) == (1, 1, HOUR, None)
    assert image.effective_rate == 0.0 and image.no_fix == {}
    assert (unknown.cause, unknown.opened, unknown.merged_rate, unknown.no_fix, unknown.failed) == (
        "unknown", 0, None, {"not_targeted": 1}, 1)


def test_the_window_leaves_older_prs_and_jobs_out() -> None:
    entries = [_pr(1, opened=NOW - 10 * DAY), _pr(2, opened=NOW - 3 * DAY)]
    jobs = [_no_fix("oom_killed", "cooldown", at=NOW - 8 * DAY), _no_fix("oom_killed", "opted_out", at=NOW - DAY)]
    [oom] = reports.build(entries, jobs, now=NOW, days=7).causes
    assert (oom.opened, oom.no_fix) == (1, {"opted_out": 1})
    assert reports.build(entries, jobs, now=NOW, days=0.5).causes == []


def test_a_result_without_a_code_counts_by_the_stage_that_ended_it() -> None:
    older = Finished(state="done", updated_at=NOW - HOUR, result={
        "outcome": "no_fix", "cause": "oom_killed", "stages": [
            {"stage": "intake", "seconds": 0.0, "decision": "accepted"},
            {"stage": "gates", "seconds": 0.0, "decision": "memory cap"}]})
    [oom] = reports.build([], [older], now=NOW, days=1).causes
    assert oom.no_fix == {"stage:gates": 1}


def test_the_table_and_the_json_say_the_same() -> None:
    report = reports.build([_pr(1, sync_after=300, resolve_after=1800, final="effective"), _pr(2, state="closed")],
                           [_no_fix("oom_killed", "cooldown")], now=NOW, days=7)
    lines = reports.table(report).splitlines()
    assert lines[0] == "Last 7 day(s): 1 cause(s); times are medians"
    assert lines[2].split() == ["cause", "opened", "open", "merged", "closed", "effective", "reverted", "merged%",
                                "effective%", "reverted%", "merge", "sync", "resolve", "no_fix", "failed"]
    assert lines[3].split() == ["oom_killed", "2", "0", "1", "1", "1", "0", "50%", "100%", "0%", "2.0h", "5m", "30m",
                                "1", "0"]
    assert lines[-2:] == ["no_fix by reason:", "  oom_killed: cooldown 1"]
    data = json.loads(json.dumps(report.as_json()))
    assert data["days"] == 7 and data["since"] == NOW - 7 * DAY
    assert data["causes"][0]["merged_rate"] == 0.5 and data["causes"][0]["no_fix"] == {"cooldown": 1}


def test_an_empty_window_says_so() -> None:
    assert reports.table(reports.build([], [], now=NOW, days=30)).endswith("(nothing decided in this window)")


@pytest.mark.parametrize(("seconds", "shown"), [(None, "-"), (90.0, "2m"), (5400.0, "1.5h"), (3 * DAY, "3.0d")])
def test_durations_read_at_a_glance(seconds: float | None, shown: str) -> None:
    report = reports.build([_pr(1, merge_after=seconds)] if seconds is not None else [_pr(1, state="open")], [],
                           now=NOW, days=7)
    assert reports.table(report).splitlines()[3].split()[10] == shown
