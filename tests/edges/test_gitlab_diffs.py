"""MR diffs as GitLab really answers them, through the real python-gitlab against the loopback GitLab fake: files
whose hunks GitLab leaves out (``too_large``, ``collapsed``: ``diff: ""``) are reported as too large to show, not as
empty changes, and a GitLab older than 15.7 (no ``.../diffs`` route: 404) is read through ``.../changes``. Then the
caller that reads the hunks (the precedents of app/ledger.py, app/stages/history.py) says it could not read them.

The hunk is GoogleCloudPlatform/microservices-demo's checkoutservice limit raise, as in tests/unit/test_precedents.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from app import ledger
from app.errors import PermanentError
from app.forges.gitlab import GitLabForge
from app.ports import PrFile, PullRequest
from tests.fakes.gitlab_api import FakeGitLab, project_path
from tests.unit.test_precedents import PATCH  # GitLab's diff of the raise: the hunks GitHub's patch has

pytestmark = pytest.mark.timeout(60)

TOKEN = "glpat-Xy7testtoken0123456789"
MRS = project_path("acme/gitops") + "/merge_requests"
FILE = "kubernetes-manifests/checkoutservice.yaml"
LOCK = "kubernetes-manifests/generated/all-in-one.yaml"
VALUES = "helm-chart/values.yaml"
LIMIT = "spec.template.spec.containers[name=server].resources.limits.memory"
RAISED = ledger.Raise(file=FILE, document_index=0, prefix=(), path=LIMIT, old="192Mi", new="288Mi",
                      kind="Deployment", name="checkoutservice")


@pytest.fixture(params=["17.5.0", "15.4.0"], ids=["diffs", "before-15.7"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeGitLab]:
    with FakeGitLab("acme/gitops", token=TOKEN, version=request.param) as server:
        yield server


def make_forge(fake: FakeGitLab) -> GitLabForge:
    return GitLabForge("acme/gitops", url=fake.url, token=TOKEN, write_spacing=0, backoff=0.01, max_wait=2.0)


def seed(fake: FakeGitLab, **hidden: tuple[str, ...]) -> PullRequest:
    mr = fake.seed_mr(source_branch="renovate/checkoutservice-memory", title="checkoutservice: memory 192Mi",
                      labels=("autofix",), files={FILE: PATCH, LOCK: "@@ -1 +1 @@\n-a\n+b\n", VALUES: "@@ -3 +3 @@\n"
                                                  "-replicas: 1\n+replicas: 2\n"}, **hidden)
    return PullRequest(number=int(mr["iid"]), url=str(mr["web_url"]), branch=str(mr["source_branch"]), state="open")


def endpoints(fake: FakeGitLab) -> list[str]:
    return [r.path.removeprefix(f"{MRS}/1/") for r in fake.requests if r.path.startswith(f"{MRS}/1/")]


def test_files_gitlab_leaves_out_are_too_large_to_show_not_empty(fake: FakeGitLab) -> None:
    forge = make_forge(fake)
    pr = seed(fake, too_large=(FILE,), collapsed=(LOCK,))

    assert forge.pr_files(pr) == [PrFile(path=FILE, patch="", too_large=True),
                                  PrFile(path=LOCK, patch="", too_large=True),
                                  PrFile(path=VALUES, patch="@@ -3 +3 @@\n-replicas: 1\n+replicas: 2\n")]
    assert forge.pr_files(pr) == forge.pr_files(pr)
    if fake.version == "17.5.0":
        assert endpoints(fake) == ["diffs"] * 3
    else:  # one 404 on .../diffs, then .../changes only: this GitLab is asked the old way from then on
        assert endpoints(fake) == ["diffs", "changes", "changes", "changes"]


def test_a_shown_diff_is_read_as_before(fake: FakeGitLab) -> None:
    forge = make_forge(fake)
    pr = seed(fake)
    assert forge.pr_files(pr)[0] == PrFile(path=FILE, patch=PATCH, too_large=False)


def test_an_unknown_mr_is_named_not_read_as_no_change(fake: FakeGitLab) -> None:
    with pytest.raises(PermanentError) as err:
        make_forge(fake).pr_files(PullRequest(number=99, url="", branch="b", state="open"))
    assert err.value.code == "gitlab_not_found" and "merge_requests/99/changes" in str(err.value)


def test_the_fakes_diff_endpoints_answer_as_gitlab_does(fake: FakeGitLab) -> None:
    seed(fake, too_large=(FILE,), collapsed=(LOCK,))
    headers = {"PRIVATE-TOKEN": TOKEN}
    diffs = requests.get(f"{fake.url}/api/v4{MRS}/1/diffs", headers=headers, timeout=5)
    changes = requests.get(f"{fake.url}/api/v4{MRS}/1/changes", headers=headers, timeout=5)
    assert changes.status_code == 200
    mr = changes.json()
    assert (mr["iid"], mr["changes_count"], mr["overflow"]) == (1, "3", False)
    if fake.version == "17.5.0":
        assert diffs.status_code == 200 and diffs.headers["x-total"] == "3"
        first, second, _ = diffs.json()
        assert (first["diff"], first["too_large"], first["collapsed"]) == ("", True, False)
        assert (second["diff"], second["too_large"], second["collapsed"]) == ("", False, True)
        assert mr["changes"] == diffs.json()
    else:
        assert (diffs.status_code, diffs.json()) == (404, {"error": "404 Not Found"})
        assert [c["diff"] for c in mr["changes"]][:2] == ["", ""]
        assert not {"too_large", "collapsed"} & set(mr["changes"][0])  # older GitLab sent neither flag


def test_precedents_say_a_too_large_diff_was_not_read(fake: FakeGitLab) -> None:
    """The hunks' reader (app/ledger.py): a visible raise ties the MR; the same MR with the file too large to show
    is neither a raise nor its absence: it is said (app/stages/history.py puts it in the decision)."""
    forge = make_forge(fake)
    shown, hidden = seed(fake), seed(fake, too_large=(FILE,))
    merged = [PullRequest(number=p.number, url=p.url, branch=p.branch, state="merged", labels=("autofix",),
                          merged_at="2026-11-23T12:00:00Z", closed_at="2026-11-23T12:00:00Z") for p in (shown, hidden)]

    hit = ledger.pr_raise(merged[0], RAISED, workload="Deployment/onlineboutique/checkoutservice",
                          name="checkoutservice", files=forge.pr_files(shown), single_workload=True)
    assert hit is not None and (hit.old, hit.new, hit.tie) == ("128Mi", "192Mi", "changed files")
    assert ledger.hidden_change(merged[0], RAISED, name="checkoutservice", files=forge.pr_files(shown),
                                single_workload=True) is None

    files = forge.pr_files(hidden)
    assert ledger.pr_raise(merged[1], RAISED, workload="Deployment/onlineboutique/checkoutservice",
                           name="checkoutservice", files=files, single_workload=True) is None
    assert ledger.hidden_change(merged[1], RAISED, name="checkoutservice", files=files, single_workload=True) == \
        f"#2 changes {FILE} but its diff is too large to show: not read"
