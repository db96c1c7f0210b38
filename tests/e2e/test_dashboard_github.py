"""`autofix dashboard sync` against the GitHub fake: the issue is created once, a human ticks boxes in it (a PATCH
of its body, as GitHub's UI sends), the next sync re-queues the declined alert's job and lifts the cooldown,
then writes the body again with nothing ticked."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from app import cli, dashboard, ledger, policies
from app.adapters.store import JobStore
from app.settings import DEFAULT_POLICY_DIR
from tests.dashboard_world import seeded
from tests.fakes.github_api import FakeGitHub

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def _env(monkeypatch: pytest.MonkeyPatch, fake: FakeGitHub, data: Path) -> None:
    for key, value in {"AUTOFIX_FORGE": "github", "AUTOFIX_GITHUB_REPO": fake.repo, "GITHUB_TOKEN": fake.token,
                       "AUTOFIX_GITHUB_API_URL": fake.api_url, "AUTOFIX_GITHUB_WRITE_SPACING": "0",
                       "AUTOFIX_DATA_DIR": str(data), "AUTOFIX_POLICY_DIR": str(DEFAULT_POLICY_DIR)}.items():
        monkeypatch.setenv(key, value)


def _patch_body(fake: FakeGitHub, number: int, body: str) -> None:
    """A human edits the issue: PATCH /repos/{o}/{r}/issues/N with the new body, as GitHub's UI does."""
    request = urllib.request.Request(f"{fake.api_url}/repos/{fake.repo}/issues/{number}", method="PATCH",
                                     data=json.dumps({"body": body}).encode(),
                                     headers={"Authorization": f"token {fake.token}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback fake
        assert answer.status == 200


def test_ticked_boxes_retry_the_alert_and_lift_the_cooldown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    store, _, ids = seeded(tmp_path, now=now)
    store.close()
    with FakeGitHub("acme/gitops") as fake:
        _env(monkeypatch, fake, tmp_path)
        assert cli.main(["dashboard", "sync"]) == 0
        assert "created" in capsys.readouterr().out
        assert len(fake.issues) == 1
        number, issue = next(iter(fake.issues.items()))
        assert issue["title"] == "GitOps Autofix Dashboard" and dashboard.MARKER in issue["body"]
        box = f"- [ ] <!-- autofix-retry:{ids['declined']} -->"
        assert box in issue["body"] and "- [ ] <!-- autofix-lift:8 -->" in issue["body"]

        ticked = issue["body"].replace(box, box.replace("[ ]", "[x]")).replace(
            "- [ ] <!-- autofix-lift:8 -->", "- [x] <!-- autofix-lift:8 -->")
        _patch_body(fake, number, ticked)
        assert cli.main(["dashboard", "sync"]) == 0
        out = capsys.readouterr().out
        assert "updated" in out and f"retried job(s): [{ids['declined']}]" in out and "lifted: [8]" in out

        assert len(fake.issues) == 1  # found again by its marker, never a second issue
        body = fake.issues[number]["body"]
        assert "- [x]" not in body and "autofix-lift:8" not in body

    reopened = JobStore(tmp_path / "jobs.sqlite3")
    job = reopened.get(ids["declined"])
    assert job is not None and job.state == "queued" and job.attempts == 0  # leased by the next worker
    assert reopened.lease("worker-1", ttl=60) is not None
    row = next(e for e in reopened.entries() if e.pr_number == 8)
    assert row.cooldown_lifted_at is not None
    limits = policies.load(DEFAULT_POLICY_DIR).limits
    assert ledger.decide(reopened.entries(branch=row.branch), now=time.time(), limits=limits,
                         images=()).action == "proceed"
    other = reopened.get(ids["cooldown"])
    assert other is not None and other.state == "done"  # only the ticked one was retried


def test_dashboard_off_by_policy_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    (policy_dir / "policy.yaml").write_text("dashboard:\n  enabled: false\n")
    with FakeGitHub("acme/gitops") as fake:
        _env(monkeypatch, fake, tmp_path)
        monkeypatch.setenv("AUTOFIX_POLICY_DIR", str(policy_dir))
        assert cli.main(["dashboard", "sync"]) == 0
        assert "off" in capsys.readouterr().out
        assert fake.issues == {} and not fake.requests_to("POST")
