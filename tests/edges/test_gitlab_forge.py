"""GitLabForge with the real python-gitlab against the loopback GitLab fake: assert on what GitLab received."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app import deadlines, dependencies, ledger
from app.errors import ConfigError, PermanentError, TemporaryError
from app.forges.gitlab import GitLabForge, project_from_url
from app.ports import PullRequest
from tests.fakes.gitlab_api import FakeGitLab, project_path

pytestmark = pytest.mark.timeout(60)

TOKEN = "glpat-Xy7testtoken0123456789"
BRANCH = "autofix/shop/web/oom-killed"
BODY = "## What happened\n\n`web` was OOMKilled.\n\n| field | old | new |\n|---|---|---|\n| memory | 256Mi | 384Mi |\n"
MRS = project_path("acme/gitops") + "/merge_requests"


@pytest.fixture
def fake() -> Iterator[FakeGitLab]:
    with FakeGitLab("acme/gitops", token=TOKEN) as server:
        yield server


def make_forge(fake: FakeGitLab, *, token: str = TOKEN, project: str = "acme/gitops", **kwargs: float) -> GitLabForge:
    options: dict[str, float] = {"write_spacing": 0, "backoff": 0.01, "max_wait": 2.0}
    options.update(kwargs)
    return GitLabForge(project, url=fake.url, token=token, **options)  # type: ignore[arg-type]


def open_default(forge: GitLabForge, labels: tuple[str, ...] = ("autofix", "risk:low")) -> PullRequest:
    return forge.open_pr(branch=BRANCH, base="main", title="fix(shop/web): raise memory limit", body=BODY,
                         labels=list(labels))


def test_open_mr_sends_branches_title_description_and_labels_as_one_string(fake: FakeGitLab) -> None:
    pr = open_default(make_forge(fake), ("autofix", "risk:low", "cause:oom-killed"))

    assert pr == PullRequest(number=1, url="https://gitlab.example/acme/gitops/-/merge_requests/1", branch=BRANCH,
                             state="open", title="fix(shop/web): raise memory limit",
                             labels=("autofix", "risk:low", "cause:oom-killed"))
    [lookup] = fake.requests_to("GET", "/merge_requests")
    assert lookup.path == MRS  # the project by its URL-encoded path
    assert lookup.query["state"] == "opened" and lookup.query["source_branch"] == BRANCH
    [create] = fake.requests_to("POST", "/merge_requests")
    assert create.body == {"source_branch": BRANCH, "target_branch": "main", "title": "fix(shop/web): raise memory limit",
                           "description": BODY, "labels": "autofix,risk:low,cause:oom-killed"}
    assert create.headers["PRIVATE-TOKEN"] == TOKEN
    assert fake.requests_to("PUT") == []  # the labels went with the create: GitLab creates missing ones itself
    assert fake.mrs[1]["labels"] == ["autofix", "risk:low", "cause:oom-killed"]


def test_second_open_finds_the_open_mr_and_adds_only_missing_labels(fake: FakeGitLab) -> None:
    forge = make_forge(fake)
    first = open_default(forge)
    second = open_default(forge, ("autofix", "risk:medium"))

    assert second.number == first.number
    assert len(fake.requests_to("POST", "/merge_requests")) == 1
    [put] = fake.requests_to("PUT", f"{MRS}/1")
    assert put.body == {"add_labels": "risk:medium"}
    assert second.labels == ("autofix", "risk:low", "risk:medium")


def test_409_another_open_mr_is_found_and_used(fake: FakeGitLab) -> None:
    fake.seed_mr(source_branch=BRANCH, title="older", labels=("autofix",))
    # The lookup misses (as if the list lagged): the create answers 409, the second lookup finds the MR.
    fake.fail_next(1, 200, body=[], method="GET", path="/merge_requests")

    pr = open_default(make_forge(fake))

    assert pr.number == 1 and len(fake.mrs) == 1
    [create] = fake.requests_to("POST", "/merge_requests")
    assert create.body["source_branch"] == BRANCH
    assert pr.labels == ("autofix", "risk:low")  # the missing label added to the MR found


def test_the_fakes_409_is_gitlabs(fake: FakeGitLab) -> None:
    """The answer the forge relies on, as GitLab words it (a list under ``message``)."""
    import requests

    fake.seed_mr(source_branch=BRANCH)
    answer = requests.post(f"{fake.url}/api/v4{MRS}", headers={"PRIVATE-TOKEN": TOKEN}, timeout=5,
                           json={"source_branch": BRANCH, "target_branch": "main", "title": "again"})
    assert answer.status_code == 409
    assert answer.json() == {"message": ["Another open merge request already exists for this source branch: !1"]}


def test_mr_from_a_fork_with_the_same_branch_is_not_ours(fake: FakeGitLab) -> None:
    fake.seed_mr(source_branch=BRANCH, title="someone's fork", fork=True)
    forge = make_forge(fake)

    assert forge.find_open_pr(BRANCH) is None
    assert open_default(forge).number == 2


def test_answer_lost_after_create_is_not_a_second_mr(fake: FakeGitLab) -> None:
    """A 502 after GitLab created the MR: the write is not re-sent blindly, the job's retry finds the MR."""
    forge = make_forge(fake)
    fake.fail_next(1, 502, method="POST", path="/merge_requests", processed=True)

    with pytest.raises(TemporaryError) as caught:
        open_default(forge)
    assert caught.value.dependency == "forge" and caught.value.kind == dependencies.HTTP_5XX
    assert "POST /api/v4/projects/acme%2Fgitops/merge_requests" in str(caught.value)

    again = open_default(forge)
    assert again.number == 1 and len(fake.mrs) == 1
    assert len(fake.requests_to("POST", "/merge_requests")) == 1


def test_update_edits_title_and_description_and_adds_a_note(fake: FakeGitLab) -> None:
    forge = make_forge(fake)
    pr = open_default(forge)

    updated = forge.update_pr(pr, title="new title", body="new body", comment="Updated: the limit is now 512Mi")

    assert updated.title == "new title" and updated.body == "new body"
    [put] = fake.requests_to("PUT", f"{MRS}/1")
    assert put.body == {"title": "new title", "description": "new body"}
    [note] = fake.requests_to("POST", f"{MRS}/1/notes")
    assert note.body == {"body": "Updated: the limit is now 512Mi"}


def test_comment_on_a_merged_mr_and_close_with_a_comment(fake: FakeGitLab) -> None:
    forge = make_forge(fake)
    pr = open_default(forge)
    fake.merge(1, by="alice")
    forge.comment(pr, "Escalation: the fix merged but the alert fired again")
    fake.seed_mr(source_branch="autofix/shop/api/oom-killed", labels=("autofix",))
    other = forge.find_open_pr("autofix/shop/api/oom-killed")
    assert other is not None

    forge.close_pr(other, comment="Closing: the alert resolved without this change")

    assert [n["body"] for n in fake.notes[1]] == ["Escalation: the fix merged but the alert fired again"]
    assert [n["body"] for n in fake.notes[2]] == ["Closing: the alert resolved without this change"]
    assert fake.requests_to("PUT", f"{MRS}/2")[-1].body == {"state_event": "close"}
    assert fake.mrs[2]["state"] == "closed"


def test_set_body_replaces_the_description(fake: FakeGitLab) -> None:
    forge = make_forge(fake)
    forge.set_body(open_default(forge), BODY + "\nMLflow run: https://mlflow.example/#/experiments/1/runs/abc\n")
    assert fake.mrs[1]["description"].endswith("runs/abc\n")


def test_states_map_and_get_pr_names_who_merged(fake: FakeGitLab) -> None:
    forge = make_forge(fake)
    for name in ("a", "b", "c"):
        fake.seed_mr(source_branch=f"autofix/shop/{name}/oom-killed", labels=("autofix",))
    fake.merge(1, by="alice", sha="c0ffee" * 6 + "beef")
    fake.close(2)

    assert [(p.number, p.state) for p in forge.list_prs("autofix", "merged")] == [(1, "merged")]
    assert [(p.number, p.state) for p in forge.list_prs("autofix", "closed")] == [(2, "closed")]
    assert [(p.number, p.state) for p in forge.list_prs("autofix", "open")] == [(3, "open")]
    assert {p.number for p in forge.list_prs("autofix", "all")} == {1, 2, 3}
    assert fake.requests_to("GET", "/merge_requests")[0].query["state"] == "merged"
    merged = forge.get_pr(1)
    assert merged is not None and merged.merged_by == "alice"
    assert merged.merge_commit == "c0ffee" * 6 + "beef"
    assert merged.merged_at is not None and merged.closed_at == merged.merged_at  # as GitHub reports a merge
    assert merged.merged_at.endswith("Z") and "." not in merged.merged_at
    assert forge.get_pr(99) is None


def test_list_by_label_branch_and_update_time(fake: FakeGitLab) -> None:
    old = datetime.now(UTC) - timedelta(days=30)
    fake.seed_mr(source_branch="autofix/shop/a/oom-killed", labels=("autofix",), at=old)
    fake.seed_mr(source_branch="autofix/shop/b/oom-killed", labels=("autofix",))
    fake.seed_mr(source_branch="feature/x", labels=("other",))
    forge = make_forge(fake)

    recent = forge.list_prs("autofix", "all", updated_since=(datetime.now(UTC) - timedelta(days=1)).timestamp())
    assert [p.number for p in recent] == [2]
    assert "updated_after" in fake.requests_to("GET", "/merge_requests")[-1].query
    assert [p.number for p in forge.list_prs("autofix", branch="autofix/shop/a/oom-killed")] == [1]
    assert fake.requests_to("GET", "/merge_requests")[-1].query["labels"] == "autofix"


def test_lists_follow_gitlabs_pages(fake: FakeGitLab) -> None:
    for i in range(130):
        fake.seed_mr(source_branch=f"autofix/shop/w{i}/oom-killed", labels=("autofix",))
    forge = make_forge(fake)

    listed = forge.list_prs("autofix", "all")

    assert len(listed) == 130
    pages = fake.requests_to("GET", "/merge_requests")
    assert [r.query.get("page", "1") for r in pages] == ["1", "2"]  # followed the Link header's rel="next"
    assert all(r.query["per_page"] == "100" for r in pages)


def test_the_fakes_pagination_headers_are_gitlabs(fake: FakeGitLab) -> None:
    import requests

    for i in range(3):
        fake.seed_mr(source_branch=f"b{i}")
    answer = requests.get(f"{fake.url}/api/v4{MRS}", params={"per_page": 2}, headers={"PRIVATE-TOKEN": TOKEN},
                          timeout=5)
    assert len(answer.json()) == 2
    assert {k: answer.headers[k] for k in ("x-page", "x-per-page", "x-next-page", "x-total", "x-total-pages")} == \
        {"x-page": "1", "x-per-page": "2", "x-next-page": "2", "x-total": "3", "x-total-pages": "2"}
    assert "page=2" in answer.links["next"]["url"] and "page=2" in answer.links["last"]["url"]


def test_pr_files_reads_the_mr_diffs(fake: FakeGitLab) -> None:
    fake.seed_mr(source_branch=BRANCH, files={"apps/web/deploy.yaml": "@@ -1 +1 @@\n-memory: 256Mi\n+memory: 384Mi\n"})
    forge = make_forge(fake)
    pr = forge.find_open_pr(BRANCH)
    assert pr is not None

    [changed] = forge.pr_files(pr)

    assert changed.path == "apps/web/deploy.yaml" and "+memory: 384Mi" in changed.patch
    assert fake.requests_to("GET", f"{MRS}/1/diffs")


def test_reviewers_by_username_groups_refused(fake: FakeGitLab) -> None:
    alice = fake.add_user("alice")
    forge = make_forge(fake)
    pr = open_default(forge)

    refused = forge.request_reviewers(pr, reviewers=["alice", "project_42_bot_autofix", "ghost"], teams=["sre"])

    assert [r["username"] for r in fake.mrs[1]["reviewers"]] == ["alice"]
    assert fake.requests_to("PUT", f"{MRS}/1")[-1].body == {"reviewer_ids": [alice]}
    assert [r.query["username"] for r in fake.requests_to("GET", "/users")] == ["alice", "ghost"]
    names = dict(refused)
    assert set(names) == {"team sre", "ghost"}  # never the author (the bot), who is not asked
    assert "group" in names["team sre"] and "no GitLab user" in names["ghost"]


def test_reviewers_gitlab_drops_are_reported(fake: FakeGitLab) -> None:
    """GitLab answers 200 and silently keeps only the first reviewer on Free, and only members: both reported."""
    fake.add_user("alice")
    fake.add_user("bob")
    fake.add_user("mallory", member=False)
    forge = make_forge(fake)
    pr = open_default(forge)

    refused = dict(forge.request_reviewers(pr, reviewers=["mallory", "alice", "bob"], teams=[]))
    # Free keeps the first id only (mallory), then drops it (no member): GitLab changes nothing, answers 200.
    assert set(refused) == {"mallory", "alice", "bob"} and fake.mrs[1]["reviewers"] == []
    fake.multiple_reviewers = True
    refused = dict(forge.request_reviewers(pr, reviewers=["mallory", "alice", "bob"], teams=[]))
    assert set(refused) == {"mallory"} and "member" in refused["mallory"]
    assert {r["username"] for r in fake.mrs[1]["reviewers"]} == {"alice", "bob"}


def test_dashboard_issue_found_by_marker_created_and_updated(fake: FakeGitLab) -> None:
    forge = make_forge(fake)
    assert forge.find_issue("<!-- autofix-dashboard -->") is None
    created = forge.create_issue(title="GitOps Autofix dashboard", body="<!-- autofix-dashboard -->\nnothing yet")
    forge.create_issue(title="unrelated", body="hello")

    found = forge.find_issue("<!-- autofix-dashboard -->")
    assert found is not None and found.number == created.number == 1
    assert found.url == "https://gitlab.example/acme/gitops/-/issues/1"
    updated = forge.update_issue(found, title="GitOps Autofix dashboard", body="<!-- autofix-dashboard -->\n2 open")
    assert updated.body.endswith("2 open") and fake.issues[1]["description"].endswith("2 open")
    assert fake.requests_to("GET", "/issues")[-1].query["state"] == "opened"


def test_ledger_rebuilt_from_mrs(fake: FakeGitLab) -> None:
    """app/ledger.from_pr reads our PullRequest: the hidden marker in the description, the branch, the times."""
    from app.ports import Remediation

    entry = Remediation(workload="Deployment/shop/web", cause="oom_killed", branch=BRANCH, pr_number=0, pr_url="",
                        state="open", before={"memory": "256Mi"}, after={"memory": "384Mi"}, images=("web:1.2",))
    fake.seed_mr(source_branch=BRANCH, description=BODY + ledger.marker(entry), labels=("autofix",))
    fake.merge(1)
    [pr] = make_forge(fake).list_prs("autofix", "all")

    row = ledger.from_pr(pr)

    assert row is not None and row.workload == "Deployment/shop/web" and row.state == "merged"
    assert row.after == {"memory": "384Mi"} and row.images == ("web:1.2",)
    assert row.merged_at is not None and row.opened_at > 0


def test_429_with_retry_after_is_waited_out(fake: FakeGitLab) -> None:
    fake.fail_next(1, 429, {"Retry-After": "1"}, method="POST", path="/merge_requests")

    pr = open_default(make_forge(fake))

    assert pr.number == 1
    assert len(fake.requests_to("POST", "/merge_requests")) == 2  # a throttled write was not carried out: re-sent


def test_long_retry_after_becomes_a_temporary_error_with_gitlabs_delay(fake: FakeGitLab) -> None:
    fake.fail_next(1, 429, {"Retry-After": "120"}, method="GET")

    with pytest.raises(TemporaryError) as caught:
        make_forge(fake).find_open_pr(BRANCH)

    assert caught.value.delay == 120.0 and caught.value.kind == dependencies.RATE_LIMITED
    assert len(fake.requests) == 1  # not slept on
    assert str(caught.value).startswith("forge: GitLab 429 while trying to find merge request on acme/gitops")


def test_5xx_on_reads_retried_within_the_jobs_budget(fake: FakeGitLab) -> None:
    fake.fail_next(5, 502, method="GET")
    health = dependencies.DependencyHealth(dependencies.NAMES)
    with deadlines.running(deadlines.Deadline(60, attempts=2, observer=health)), \
            pytest.raises(TemporaryError) as caught:
        make_forge(fake).find_open_pr(BRANCH)
    assert len(fake.requests) == 2  # the job allows two failed attempts of the forge
    assert caught.value.dependency == "forge"
    assert health.state("forge").state == "down"


def test_unknown_project_names_it(fake: FakeGitLab) -> None:
    with pytest.raises(PermanentError) as caught:
        make_forge(fake, project="acme/nope").find_open_pr(BRANCH)
    assert caught.value.code == "gitlab_not_found"
    assert "acme/nope" in str(caught.value) and "404 Project Not Found" in str(caught.value)
    assert fake.requests[0].path == "/projects/acme%2Fnope/merge_requests"


def test_bad_token_is_named_and_never_shown(fake: FakeGitLab) -> None:
    with pytest.raises(PermanentError) as caught:
        make_forge(fake, token="glpat-wrong").find_open_pr(BRANCH)
    assert caught.value.code == "gitlab_auth" and "401" in str(caught.value)
    assert "glpat-wrong" not in str(caught.value)


def test_refused_connection_is_temporary_and_names_the_call() -> None:
    with FakeGitLab() as gone:
        url = gone.url
    forge = GitLabForge("acme/gitops", url=url, token=TOKEN, backoff=0.01, retries=1)
    with pytest.raises(TemporaryError) as caught:
        forge.find_open_pr(BRANCH)
    assert caught.value.kind == dependencies.REFUSED
    assert "GET /api/v4/projects/acme%2Fgitops/merge_requests" in str(caught.value)


def test_auth_header_is_basic_oauth2_and_permissions_from_the_role(fake: FakeGitLab) -> None:
    forge = make_forge(fake)
    scheme, _, value = forge.auth_header().removeprefix("Authorization: ").partition(" ")
    assert scheme == "Basic" and base64.b64decode(value).decode() == f"oauth2:{TOKEN}"
    assert forge.repo_permissions()["push"] is True
    fake.access_level = 20  # Reporter: cannot push a branch
    assert forge.repo_permissions()["push"] is False


def test_project_path_from_clone_urls_and_config_errors() -> None:
    assert project_from_url("https://gitlab.example.com/platform/team/gitops.git") == "platform/team/gitops"
    assert project_from_url("git@gitlab.com:acme/gitops.git") == "acme/gitops"
    assert project_from_url("ssh://git@gitlab.example:2222/acme/gitops.git") == "acme/gitops"
    assert project_from_url("/srv/git/gitops.git") == ""
    assert project_from_url("file:///srv/git/gitops.git") == ""
    with pytest.raises(ConfigError):
        GitLabForge("gitops", url="https://gitlab.com", token=TOKEN)
    with pytest.raises(ConfigError):
        GitLabForge("acme/gitops", url="https://gitlab.com", token="")


def test_doctor_forge_row_for_gitlab(fake: FakeGitLab, tmp_path: Path) -> None:
    """The project comes from the clone URL's path when AUTOFIX_GITLAB_PROJECT is unset; the role decides."""
    from app import doctor
    from app.settings import Settings

    settings = Settings(forge="gitlab", gitlab_url=fake.url, gitlab_token=TOKEN, data_dir=tmp_path,
                        git_url="https://gitlab.example/acme/gitops.git")
    row, auth_header = doctor._forge(settings)
    assert row.status == "ok" and "acme/gitops" in row.detail, row
    assert auth_header is not None and auth_header().startswith("Authorization: Basic ")
    assert fake.requests_to("GET", project_path("acme/gitops"))
    fake.access_level = 20
    row, _ = doctor._forge(settings)
    assert row.status == "fail" and "Developer" in row.detail
