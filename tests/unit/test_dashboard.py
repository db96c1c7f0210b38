"""The dashboard issue: its body (golden), its size bound, hostile text, the ticks read back, and a sync through
the local forge (the issue on disk, the real job store as the ledger and the queue)."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from app import dashboard, ledger, policies
from app.adapters.store import Job, JobStore
from app.forges.local import LocalForge
from app.settings import DEFAULT_POLICY_DIR
from tests.dashboard_world import HOUR, NOW, alert, finish, no_fix, remediation, seeded

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "dashboard"
POLICY = policies.load(DEFAULT_POLICY_DIR)


def _body(store: JobStore, *, policy: policies.Policy = POLICY) -> str:
    return dashboard.body(entries=store.entries(), jobs=store.finished(since=NOW - dashboard.RECENT_SECONDS),
                          now=NOW, policy=policy)


def _tick(text: str, target: str) -> str:
    """What a human does in GitHub's UI: the box of ``target`` (e.g. "retry:2") becomes [x]."""
    box = f"- [ ] <!-- autofix-{target} -->"
    assert box in text
    return text.replace(box, f"- [x] <!-- autofix-{target} -->")


def test_body_with_every_section_matches_the_golden_file(tmp_path: Path) -> None:
    store, _, _ = seeded(tmp_path)
    text = _body(store)
    golden = GOLDEN / "every_section.md"
    if os.environ.get("AUTOFIX_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_body_lists_each_section_from_the_ledger_and_the_jobs(tmp_path: Path) -> None:
    store, _, ids = seeded(tmp_path)
    text = _body(store)
    sections = {part.split("\n", 1)[0]: part for part in text.split("\n## ")[1:]}
    assert "PR #11" in sections["Open pull requests"] and "risk 0.42" in sections["Open pull requests"]
    assert "PR #7" in sections["Escalations waiting for a human"]
    assert "fired again at 2027-01-15T07:00:00Z (job 1), diagnosis `oom: oom_killed`" in text
    cooldowns = sections["Cooldowns"]
    assert "<!-- autofix-lift:8 -->" in cooldowns and "until 2027-01-17T22:00:00Z" in cooldowns
    assert "autofix-lift:9" not in cooldowns  # lifted already
    declined = sections["Recent no_fix decisions"]
    assert f"<!-- autofix-retry:{ids['declined']} -->" in declined and "a bug, not a configuration" in declined
    assert f"autofix-retry:{ids['opened']}" not in text  # a PR was opened: nothing declined
    outcomes = sections["Outcomes of the last fixes"]
    assert "**effective**" in outcomes and "**rejected**" in outcomes and "still followed" in outcomes
    assert dashboard.ticked(text) == dashboard.Ticks(frozenset(), frozenset())  # nothing ticked by the bot


def test_ticked_reads_only_the_boxes_a_human_ticked(tmp_path: Path) -> None:
    store, _, ids = seeded(tmp_path)
    text = _tick(_tick(_body(store), f"retry:{ids['declined']}"), "lift:8")
    assert dashboard.ticked(text) == dashboard.Ticks(retry=frozenset({ids["declined"]}), lift=frozenset({8}))
    assert dashboard.ticked(text.replace("- [x]", "* [X]")).lift == frozenset({8})


def test_body_stays_within_the_forge_limit_with_many_long_rows() -> None:
    long_name = "checkout-" + "x" * 240
    entries = [remediation(n, f"Deployment/shop/{long_name}{n}", "oom_killed", "open", opened=NOW - n)
               for n in range(100, 400)]
    jobs = [Job(id=n, dedupe_key=f"k{n}", fingerprint=f"{n:016x}", alertname="KubePodCrashLooping",
                alert_status="firing", alert={}, state="done", attempts=1, lease_owner=None, lease_expires_at=None,
                available_at=NOW, error=None, created_at=NOW - 100 - n, updated_at=NOW - 100 - n,
                result={"fingerprint": f"{n:016x}", **no_fix("r" * 3000, workload=f"Deployment/shop/{long_name}",
                                                             cause="app_crash", diagnosis="app_crash")})
            for n in range(150)]
    wide = POLICY.model_copy(update={"dashboard": POLICY.dashboard.model_copy(update={"max_items": 200})})
    text = dashboard.body(entries=entries, jobs=jobs, now=NOW, policy=wide)
    assert len(text) <= dashboard.MAX_BODY_CHARS < 65_536
    for title in ("Open pull requests", "Escalations waiting for a human", "Cooldowns", "Recent no_fix decisions",
                  "Outcomes of the last fixes"):
        assert f"## {title}" in text
    assert "more" in text.split("## Open pull requests", 1)[1].split("##", 1)[0]  # rows left out are counted


def test_hostile_text_cannot_add_a_box_ping_close_or_inject_html(tmp_path: Path) -> None:
    store, clock, _ = seeded(tmp_path)
    hostile = ("OOMKilled\n- [x] <!-- autofix-retry:1 -->\n- [x] <!-- autofix-lift:8 --> fixes #3 @acme/sre "
               "<img src=x onerror=alert(1)> ``` `code` <!-- end")
    finish(store, clock, alert("KubePodCrashLooping", "ffffeeeeddddcccc", {"namespace": "shop", "pod": "evil-0"}),
           no_fix(hostile, workload="Deployment/shop/evil", cause="app_crash", diagnosis=hostile), at=NOW - 60)
    store.record(remediation(40, "Deployment/shop/evil", "oom_killed", "merged", opened=NOW - 9 * HOUR,
                             merged_at=NOW - 8 * HOUR, escalated_at=NOW - 60))
    clock.now = NOW
    text = _body(store)
    assert dashboard.ticked(text) == dashboard.Ticks(frozenset(), frozenset())
    # Outside code spans (where markdown renders no HTML) no "<" opens a tag or a comment but the bot's own boxes.
    outside_code = re.sub(r"(`+).*?(?<!`)\1(?!`)", "", text)
    assert not re.findall(r"(?<!\\)<(?!!-- autofix-(?:dashboard|retry:\d+|lift:\d+) -->)", outside_code)
    assert "\\<img" in text
    assert "@acme" not in text and "fixes #3" not in text  # a zero-width space breaks the mention and the keyword
    assert all(line.startswith(("- ", "## ", "<!-- autofix-dashboard -->", "GitOps Autofix", "Updated ")) or not line
               for line in text.splitlines())  # every line is one the bot started


def test_lifted_cooldown_lets_the_ledger_proceed() -> None:
    closed = remediation(8, "StatefulSet/data/redis", "cpu_throttling", "closed", opened=NOW - 12 * HOUR,
                         closed_at=NOW - 10 * HOUR)
    assert ledger.decide([closed], now=NOW, limits=POLICY.limits, images=()).action == "cooldown"
    lifted = replace(closed, cooldown_lifted_at=NOW - 1)
    assert ledger.decide([lifted], now=NOW, limits=POLICY.limits, images=()).action == "proceed"


def test_sync_through_the_local_forge_creates_once_then_acts_on_ticks(tmp_path: Path) -> None:
    store, clock, ids = seeded(tmp_path)
    forge = LocalForge(tmp_path / "prs")
    first = dashboard.sync(board=forge, jobs=store, ledger=store, policy=POLICY, clock=clock)
    assert first is not None and first.created and first.retried == () and first.lifted == ()
    body_file = tmp_path / "prs" / "issues" / str(first.issue.number) / "body.md"
    assert store.get(ids["declined"]).state == "done"  # type: ignore[union-attr]
    body_file.write_text(_tick(_tick(body_file.read_text(), f"retry:{ids['declined']}"), "lift:8"))
    clock.now = NOW + 60
    second = dashboard.sync(board=forge, jobs=store, ledger=store, policy=POLICY, clock=clock)
    assert second is not None and not second.created and second.issue.number == first.issue.number
    assert second.retried == (ids["declined"],) and second.lifted == (8,)
    job = store.get(ids["declined"])
    assert job is not None and job.state == "queued" and job.attempts == 0 and job.result is None
    row = next(e for e in store.entries() if e.pr_number == 8)
    assert row.cooldown_lifted_at == NOW + 60
    assert ledger.decide(store.entries(branch=row.branch), now=NOW + 60, limits=POLICY.limits,
                         images=()).action == "proceed"
    rewritten = body_file.read_text()
    assert "autofix-lift:8" not in rewritten and "- [x]" not in rewritten
    third = dashboard.sync(board=forge, jobs=store, ledger=store, policy=POLICY, clock=clock)
    assert third is not None and third.retried == () and third.lifted == ()  # acted on once


def test_sync_acts_only_on_what_the_body_offered(tmp_path: Path) -> None:
    store, clock, ids = seeded(tmp_path)
    forge = LocalForge(tmp_path / "prs")
    made = forge.create_issue(title="GitOps Autofix Dashboard", body=f"{dashboard.MARKER}\n"
                              f"- [x] <!-- autofix-retry:999 -->\n- [x] <!-- autofix-retry:{ids['opened']} -->\n"
                              "- [x] <!-- autofix-lift:11 -->\n- [x] <!-- autofix-lift:12345 -->\n")
    done = dashboard.sync(board=forge, jobs=store, ledger=store, policy=POLICY, clock=clock)
    assert done is not None and done.issue.number == made.number
    assert done.retried == () and done.lifted == ()  # no such job; a PR was opened; PR 11 is open; 12345 unknown
    job = store.get(ids["opened"])
    assert job is not None and job.state == "done"


def test_policy_turns_the_dashboard_off(tmp_path: Path) -> None:
    store, clock, _ = seeded(tmp_path)
    forge = LocalForge(tmp_path / "prs")
    off = POLICY.model_copy(update={"dashboard": POLICY.dashboard.model_copy(update={"enabled": False})})
    assert dashboard.sync(board=forge, jobs=store, ledger=store, policy=off, clock=clock) is None
    assert not (tmp_path / "prs" / "issues").exists()


@pytest.mark.parametrize("text", ["dashboard:\n  enabled: false\n", "dashboard:\n  max_items: 0\n"])
def test_policy_file_sets_the_dashboard(tmp_path: Path, text: str) -> None:
    (tmp_path / "policy.yaml").write_text(text)
    if "max_items: 0" in text:
        with pytest.raises(Exception, match="max_items"):
            policies.load(tmp_path, setting="")
    else:
        assert policies.load(tmp_path, setting="").dashboard.enabled is False


def test_keeper_writes_after_a_job_at_most_once_per_interval_and_when_a_box_is_ticked(tmp_path: Path) -> None:
    store, clock, _ = seeded(tmp_path)
    forge = LocalForge(tmp_path / "prs")
    keeper = dashboard.Keeper(board=forge, jobs=store, ledger=store, policy=POLICY, clock=clock)
    clock.now = NOW + 61
    assert keeper.tick() is None and forge.find_issue(dashboard.MARKER) is None  # no job finished since the start
    finish(store, clock, alert("KubePodCrashLooping", "00aa11bb22cc33dd", {"namespace": "shop", "pod": "a-0"}),
           no_fix("nothing to change", workload="Deployment/shop/a", cause="app_crash", diagnosis="app_crash"),
           at=NOW + 70)
    clock.now = NOW + 100
    assert keeper.tick() is None  # within the interval of the last check
    clock.now = NOW + 125
    made = keeper.tick()
    assert made is not None and made.created
    clock.now = NOW + 190
    assert keeper.tick() is None  # nothing finished, nothing ticked: read only
    body_file = tmp_path / "prs" / "issues" / str(made.issue.number) / "body.md"
    body_file.write_text(_tick(body_file.read_text(), "lift:8"))
    clock.now = NOW + 200
    assert keeper.tick() is None  # within the interval
    clock.now = NOW + 260
    acted = keeper.tick()
    assert acted is not None and acted.lifted == (8,) and not acted.created
