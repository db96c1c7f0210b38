"""GitHubForge with the real PyGithub against the loopback GitHub fake: assert on what GitHub received."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest

from app.errors import PermanentError, TemporaryError
from app.forges.github import GitHubForge
from app.ports import PullRequest
from tests.fakes.github_api import PRIMARY_RATE_LIMIT, SECONDARY_RATE_LIMIT, FakeGitHub

TOKEN = "ghs_testtoken1234567890"
BRANCH = "autofix/shop/web/oomkilled"
BODY = "## What happened\n\n`web` was OOMKilled.\n\n| field | old | new |\n|---|---|---|\n| memory | 256Mi | 384Mi |\n"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub("acme/gitops", token=TOKEN) as server:
        yield server


def make_forge(fake: FakeGitHub, *, token: str = TOKEN, **kwargs: float) -> GitHubForge:
    options: dict[str, float] = {"write_spacing": 0, "request_spacing": 0, "backoff": 0.01, "max_wait": 2.0}
    options.update(kwargs)
    return GitHubForge("acme/gitops", api_url=fake.api_url, token=token, **options)  # type: ignore[arg-type]


def open_default(forge: GitHubForge) -> PullRequest:
    return forge.open_pr(branch=BRANCH, base="main", title="fix(shop/web): raise memory limit", body=BODY,
                         labels=["autofix", "risk:low"])


def test_open_pr_sends_title_body_base_and_labels(fake: FakeGitHub) -> None:
    pr = open_default(make_forge(fake))

    assert pr == PullRequest(number=1, url="https://github.example/acme/gitops/pull/1", branch=BRANCH,
                             state="open", title="fix(shop/web): raise memory limit", labels=("autofix", "risk:low"))
    lookup = fake.requests_to("GET", "/pulls")[0]
    assert lookup.query == {"state": "open", "head": f"acme:{BRANCH}"}
    [create] = fake.requests_to("POST", "/pulls")
    assert create.body == {"base": "main", "head": BRANCH, "title": "fix(shop/web): raise memory limit", "body": BODY}
    assert create.headers["Authorization"] == f"token {TOKEN}"
    [labels] = fake.requests_to("POST", "/issues/1/labels")
    assert labels.body == ["autofix", "risk:low"]
    assert [lab["name"] for lab in fake.pulls[1]["labels"]] == ["autofix", "risk:low"]


def test_second_open_reuses_the_pr(fake: FakeGitHub) -> None:
    forge = make_forge(fake)
    first = open_default(forge)
    second = open_default(forge)

    assert second.number == first.number
    assert len(fake.requests_to("POST", "/pulls")) == 1
    assert len(fake.requests_to("POST", "/labels")) == 1  # labels already there: not re-sent
    assert list(fake.pulls) == [1]


def test_422_already_exists_counts_as_success(fake: FakeGitHub) -> None:
    fake.create_pull(head=f"acme:{BRANCH}", title="older")
    forge = make_forge(fake)
    # The lookup misses (as if GitHub's list lagged), the create answers 422, the second lookup finds it.
    fake.fail_next(1, 200, body=[], method="GET", path="/pulls")

    pr = open_default(forge)

    assert pr.number == 1
    [create] = fake.requests_to("POST", "/pulls")
    assert create.body["head"] == BRANCH
    assert len(fake.pulls) == 1
    assert pr.labels == ("autofix", "risk:low")


def test_502_then_success_is_retried(fake: FakeGitHub) -> None:
    forge = make_forge(fake)
    fake.fail_next(2, 502)

    pr = open_default(forge)

    assert pr.number == 1
    assert len(fake.requests_to("GET", "/repos/acme/gitops")) == 3  # two 502s, then the repo


def test_reposted_create_after_lost_answer_makes_no_duplicate(fake: FakeGitHub) -> None:
    forge = make_forge(fake)
    # GitHub creates the PR but the answer is a proxy 502: PyGithub re-posts, GitHub answers 422.
    fake.fail_next(1, 502, method="POST", path="/pulls", processed=True)

    pr = open_default(forge)

    assert pr.number == 1 and len(fake.pulls) == 1
    assert len(fake.requests_to("POST", "/pulls")) == 2
    assert [lab["name"] for lab in fake.pulls[1]["labels"]] == ["autofix", "risk:low"]


def test_persistent_502_is_temporary(fake: FakeGitHub) -> None:
    forge = make_forge(fake, retries=2)
    fake.fail_next(10, 502)
    with pytest.raises(TemporaryError) as info:
        forge.find_open_pr(BRANCH)
    assert info.value.code == "github_unavailable"
    assert isinstance(info.value.__cause__, Exception)
    assert len(fake.requests) == 3


def test_bad_token_is_permanent_without_retry_storm(fake: FakeGitHub) -> None:
    forge = make_forge(fake, token="ghs_wrong_token_value")
    started = time.monotonic()
    with pytest.raises(PermanentError) as info:
        open_default(forge)
    assert time.monotonic() - started < 2
    assert info.value.code == "github_auth"
    assert "ghs_wrong_token_value" not in str(info.value)
    assert len(fake.requests) == 1
    assert info.value.__cause__ is not None


def test_unknown_repo_is_permanent(fake: FakeGitHub) -> None:
    forge = GitHubForge("acme/missing", api_url=fake.api_url, token=TOKEN, write_spacing=0, request_spacing=0)
    with pytest.raises(PermanentError) as info:
        forge.find_open_pr(BRANCH)
    assert info.value.code == "github_not_found"
    assert "acme/missing" in str(info.value)


@pytest.mark.e2e  # waits out a real timeout or spacing: the slow part
def test_secondary_rate_limit_with_short_retry_after_is_waited_out(fake: FakeGitHub) -> None:
    forge = make_forge(fake)
    fake.fail_next(1, 403, headers={"Retry-After": "1"}, body=SECONDARY_RATE_LIMIT)
    started = time.monotonic()
    assert forge.find_open_pr(BRANCH) is None
    assert 0.9 <= time.monotonic() - started < 5


@pytest.mark.parametrize(("status", "headers", "body", "delay"), [
    pytest.param(403, {"Retry-After": "120"}, SECONDARY_RATE_LIMIT, 120, id="403-secondary-retry-after"),
    pytest.param(403, {}, SECONDARY_RATE_LIMIT, 60, id="403-secondary-no-header"),
    pytest.param(429, {"Retry-After": "90"}, {"message": "Too Many Requests"}, 90, id="429-retry-after"),
    pytest.param(403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "RESET"}, PRIMARY_RATE_LIMIT, 300,
                 id="403-primary-reset"),
])
def test_long_rate_limits_become_temporary_with_delay(fake: FakeGitHub, status: int, headers: dict[str, str],
                                                      body: dict[str, str], delay: float) -> None:
    forge = make_forge(fake)
    headers = {k: str(int(time.time()) + 300) if v == "RESET" else v for k, v in headers.items()}
    fake.fail_next(1, status, headers=headers, body=body)
    started = time.monotonic()

    with pytest.raises(TemporaryError) as info:
        forge.find_open_pr(BRANCH)

    assert time.monotonic() - started < 2  # no worker sleeps through a long rate limit
    assert info.value.delay == pytest.approx(delay, abs=3)
    assert len(fake.requests) == 1


def test_forbidden_without_rate_limit_is_permanent(fake: FakeGitHub) -> None:
    forge = make_forge(fake)
    fake.fail_next(1, 403, body={"message": "Resource not accessible by integration"})
    with pytest.raises(PermanentError) as info:
        forge.find_open_pr(BRANCH)
    assert info.value.code == "github_forbidden"


def test_update_pr_edits_then_comments(fake: FakeGitHub) -> None:
    forge = make_forge(fake)
    pr = open_default(forge)

    updated = forge.update_pr(pr, title="fix(shop/web): raise memory limit to 512Mi", body=BODY + "\nv2\n",
                              comment="Updated: the pod was OOMKilled again.")

    assert updated.title == "fix(shop/web): raise memory limit to 512Mi"
    [patch] = fake.requests_to("PATCH", "/pulls/1")
    assert patch.body == {"title": "fix(shop/web): raise memory limit to 512Mi", "body": BODY + "\nv2\n"}
    assert [c["body"] for c in fake.comments[1]] == ["Updated: the pod was OOMKilled again."]
    methods = [r.method for r in fake.requests]
    assert methods.index("PATCH") < len(methods) - 1 and methods[-1] == "POST"


def test_comment(fake: FakeGitHub) -> None:
    forge = make_forge(fake)
    pr = open_default(forge)
    forge.comment(pr, "Alert resolved.")
    assert fake.comments[1][-1]["body"] == "Alert resolved."


def test_find_open_pr_ignores_closed(fake: FakeGitHub) -> None:
    forge = make_forge(fake)
    pr = open_default(forge)
    assert forge.find_open_pr(BRANCH) == pr
    fake.close(1)
    assert forge.find_open_pr(BRANCH) is None


def test_list_prs_by_label_and_state(fake: FakeGitHub) -> None:
    fake.create_pull(head="acme:autofix/a/x/oom", labels=("autofix", "risk:low"))
    fake.create_pull(head="acme:autofix/a/y/oom", labels=("autofix",))
    fake.create_pull(head="acme:autofix/a/z/oom", labels=("autofix",))
    fake.create_pull(head="acme:feature", labels=("other",))
    fake.merge(1)
    fake.close(2)
    forge = make_forge(fake)

    assert {(p.number, p.state, p.branch) for p in forge.list_prs("autofix")} == {
        (1, "merged", "autofix/a/x/oom"), (2, "closed", "autofix/a/y/oom"), (3, "open", "autofix/a/z/oom")}
    assert [p.number for p in forge.list_prs("autofix", state="merged")] == [1]
    assert [p.number for p in forge.list_prs("autofix", state="closed")] == [2]
    assert [p.number for p in forge.list_prs("autofix", state="open")] == [3]
    assert fake.requests_to("GET", "/issues")[0].query["labels"] == "autofix"


def test_enterprise_prefix() -> None:
    with FakeGitHub("acme/gitops", token=TOKEN, prefix="/api/v3") as fake:
        assert fake.api_url.endswith("/api/v3")
        pr = open_default(make_forge(fake))
        assert pr.number == 1
        assert fake.requests and all(r.path.startswith("/repos/acme/gitops") for r in fake.requests)


def test_auth_header_for_git() -> None:
    with FakeGitHub(token=TOKEN) as fake:
        header = make_forge(fake).auth_header()
    scheme, _, value = header.removeprefix("Authorization: ").partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(value).decode() == f"x-access-token:{TOKEN}"


def test_unreachable_api_is_temporary() -> None:
    with FakeGitHub(token=TOKEN) as fake:
        url = fake.api_url
    forge = GitHubForge("acme/gitops", api_url=url, token=TOKEN, write_spacing=0, request_spacing=0,
                        retries=1, backoff=0.01)
    with pytest.raises(TemporaryError):
        forge.find_open_pr(BRANCH)


def test_reviewers_are_requested_never_the_bot_itself(fake: FakeGitHub) -> None:
    forge = make_forge(fake)
    pr = open_default(forge)
    refused = forge.request_reviewers(pr, reviewers=["carol", "gitops-autofix[bot]", "carol"], teams=["shop-team"])
    assert refused == []
    [asked] = fake.requests_to("POST", "/requested_reviewers")
    assert asked.body == {"reviewers": ["carol"], "team_reviewers": ["shop-team"]}
    assert [u["login"] for u in fake.pulls[1]["requested_reviewers"]] == ["carol"]


def test_a_reviewer_who_is_not_a_collaborator_is_refused_and_the_others_still_asked(fake: FakeGitHub) -> None:
    """GitHub refuses the whole request (422) when one user is not a collaborator: each is then asked alone."""
    fake.collaborators = {"carol"}
    forge = make_forge(fake)
    pr = open_default(forge)
    refused = forge.request_reviewers(pr, reviewers=["carol", "mallory"], teams=["shop-team"])
    assert [name for name, _ in refused] == ["mallory"]
    assert "Reviews may only be requested from collaborators" in refused[0][1]
    assert [r.body for r in fake.requests_to("POST", "/requested_reviewers")] == [
        {"reviewers": ["carol", "mallory"], "team_reviewers": ["shop-team"]}, {"reviewers": ["carol"]},
        {"reviewers": ["mallory"]}, {"team_reviewers": ["shop-team"]}]
    assert [u["login"] for u in fake.pulls[1]["requested_reviewers"]] == ["carol"]
    assert [t["slug"] for t in fake.pulls[1]["requested_teams"]] == ["shop-team"]
