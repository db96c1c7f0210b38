"""History (recorded as "history"): an earlier raise of the same field by anyone, in process on the demo with a
repository that has a history (tests/gitrepo.py): a person's commit within the window, one outside it, and a
PR an older version of the bot opened on a branch in another format."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from app import ledger as ledgers
from app.ports import Remediation
from tests.gitrepo import Commit, seed_history
from tests.stages.world import DEMO, World

FILE = "apps/checkout/deployment.yaml"
LIMIT = "spec.template.spec.containers[name=checkout].resources.limits.memory"
HOUR = 3600.0


def _history(world: World, tmp_path: Path, *, hours_ago: float) -> Commit:
    """The demo's repo, but 512Mi came from a person's commit ``hours_ago`` (384Mi before it)."""
    source = tmp_path / "source"
    shutil.copytree(DEMO / "repo", source)
    raised = (source / FILE).read_text()
    (source / FILE).write_text(raised.replace('memory: "512Mi"', 'memory: "384Mi"'))
    now = time.time()
    change = Commit(subject="checkout: raise memory limit before Black Friday (INC-2291)", files={FILE: raised},
                    at=now - hours_ago * HOUR, author="Sam Rivera <sam@example.com>")
    seed_history(source, world.bare, first_at=now - 40 * 24 * HOUR, commits=[change])
    return change


def _stage(world: World, outcome_stages: list[dict[str, str]]) -> str:
    [decision] = [s["decision"] for s in outcome_stages if s["stage"] == "history"]
    return decision


def test_a_persons_raise_within_the_window_is_escalated_naming_the_commit(world: World, tmp_path: Path) -> None:
    change = _history(world, tmp_path, hours_ago=3)
    outcome = world.pipeline().handle(world.incident())

    assert (outcome.outcome, outcome.reason.split(":")[0]) == ("no_fix", "escalated"), outcome.reason
    [sha] = change.shas
    assert f"commit {sha[:12]} by Sam Rivera <sam@example.com> at " in outcome.reason
    assert '("checkout: raise memory limit before Black Friday (INC-2291)") raised ' + LIMIT in outcome.reason
    assert f"in {FILE} from 384Mi to 512Mi" in outcome.reason
    assert world.remote_branches() == ["main"] and world.opened() == [], "no branch, no PR"
    stages = [s.model_dump() for s in outcome.stages]
    assert _stage(world, stages).startswith("escalate: escalated: commit ")
    assert [s["stage"] for s in stages][-1] == "history", "nothing after it ran"


def test_a_raise_outside_the_window_goes_on(world: World, tmp_path: Path) -> None:
    _history(world, tmp_path, hours_ago=30)
    outcome = world.pipeline().handle(world.incident())
    assert outcome.outcome == "pr_opened", outcome.reason
    stages = [s.model_dump() for s in outcome.stages]
    assert _stage(world, stages) == f"proceed: no earlier raise of {LIMIT} by anyone within the window"


def test_an_older_bots_open_pr_is_commented_once_and_no_second_pr_is_opened(world: World) -> None:
    """An older version opened autofix-v0/shop-checkout (its marker in the body, another branch format)."""
    row = Remediation(workload="Deployment/shop/checkout", cause="oom_killed", branch="autofix-v0/shop-checkout",
                      pr_number=1, pr_url="", state="open", before={LIMIT: "512Mi"}, after={LIMIT: "640Mi"})
    older = world.forge.open_pr(branch=row.branch, base="main", title="[autofix] checkout OOMKilled",
                                body="Raise memory.\n" + ledgers.marker(row) + "\n", labels=["autofix"])

    first = world.pipeline().handle(world.incident())
    assert (first.outcome, first.reason) == ("no_fix", f"PR #{older.number} (branch autofix-v0/shop-checkout) "
                                             f"already raises {LIMIT} in {FILE} from 512Mi to 640Mi and is open: "
                                             "not opening a second PR for it (the new evidence is commented there)")
    assert [pr["number"] for pr in world.opened()] == [older.number] and world.remote_branches() == ["main"]
    comment = (world.prs / f"{older.number}-autofix-v0__shop-checkout" / "comment-1.md").read_text()
    assert comment.startswith("GitOps Autofix diagnosed the same failure") and "OOMKilled" in comment

    again = world.pipeline().handle(world.incident())
    assert again.outcome == "no_fix" and len(world.opened()[0]["comments"]) == 1, "one comment while it is open"
    [kept] = [e for e in world.ledger.entries() if e.pr_number == older.number]
    assert kept.opened_at == 0.0 and kept.escalated_at is not None, "not the bot's PR: never in the PR budget"
