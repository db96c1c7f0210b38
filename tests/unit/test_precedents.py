"""Earlier raises the bot did not write (app/ledger.py, second half): which commits and PRs count, how a PR in
another format is tied to the workload, and what they allow. Texts are GoogleCloudPlatform/microservices-demo's
kubernetes-manifests, verbatim (tests/fixtures/real-history-checkoutservice/README.md)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app import ledger, policies
from app.ports import FileCommit, PrFile, PullRequest, Remediation
from tests.conftest import ROOT

MANIFESTS = ROOT / "tests" / "fixtures" / "real-history-checkoutservice" / "repo" / "kubernetes-manifests"
CHECKOUT = (MANIFESTS / "checkoutservice.yaml").read_text()
CART = (MANIFESTS / "cartservice.yaml").read_text()
FILE = "kubernetes-manifests/checkoutservice.yaml"
LIMIT = "spec.template.spec.containers[name=server].resources.limits.memory"
REQUEST = "spec.template.spec.containers[name=server].resources.requests.memory"
WORKLOAD = "Deployment/onlineboutique/checkoutservice"
HOUR = 3600.0
NOW = 1_790_000_000.0
LIMITS = policies.Limits(merged_fix_window_hours=24, cooldown_hours_after_closed=72)
RAISED = ledger.Raise(file=FILE, document_index=0, prefix=(), path=LIMIT, old="192Mi", new="288Mi",
                      kind="Deployment", name="checkoutservice")
# GitHub's patch of the raise (GET .../pulls/N/files): hunks without the file header, 3 lines of context.
PATCH = """@@ -72,4 +72,4 @@ spec:
               memory: 64Mi
             limits:
               cpu: 200m
-              memory: 128Mi
+              memory: 192Mi
"""


def raised_to(value: str, text: str = CHECKOUT) -> str:
    return text.replace("              memory: 128Mi", f"              memory: {value}")


def commit(sha: str, previous: str | None, text: str | None, *, hours_ago: float = 3, subject: str = "bump",
           author: str = "Dana Ops <dana@example.com>") -> FileCommit:
    return FileCommit(sha=sha * 40, time=NOW - hours_ago * HOUR, author=author, authored=NOW - hours_ago * HOUR,
                      subject=subject, text=text, previous=previous)


def pr(number: int, *, branch: str = "renovate/checkoutservice-memory", state: str = "merged", title: str = "",
       body: str = "", merge_commit: str | None = None, hours_ago: float = 3) -> PullRequest:
    stamp = ledger.when(NOW - hours_ago * HOUR)
    return PullRequest(number=number, url=f"https://github.example/acme/gitops/pull/{number}", branch=branch,
                       state=state, title=title, labels=("autofix",), body=body, created_at=stamp,
                       merged_at=stamp if state == "merged" else None,
                       closed_at=stamp if state in ("merged", "closed") else None, merge_commit=merge_commit)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("128Mi", "192Mi", True), ("1Gi", "512Mi", False), ("192Mi", "192Mi", False), ("500m", "1", True),
    (3, 5, True), ('"128Mi"', "256Mi", True), ("v1.2", "v1.3", False), (None, "1Gi", False), (True, 2, False),
])
def test_a_raise_is_a_quantity_that_went_up(old: object, new: object, expected: bool) -> None:
    assert ledger.is_raise(old, new) is expected


def test_the_field_is_read_in_each_version_by_kind_and_name() -> None:
    assert ledger.document_identity(CHECKOUT, document_index=0) == ("Deployment", "checkoutservice")
    assert ledger.value_in(CHECKOUT, RAISED) == "128Mi"
    # An older version that listed the Service first: the Deployment is found by kind and name, not index.
    service, deployment = CHECKOUT.split("---\n")[1], CHECKOUT.split("---\n")[0]
    assert ledger.value_in(f"{service}---\n{deployment}", RAISED) == "128Mi"
    assert ledger.value_in(None, RAISED) is None
    assert ledger.value_in("kind: [unclosed\n", RAISED) is None
    assert ledger.value_in(CHECKOUT.replace("checkoutservice", "checkout"), RAISED) is None


def test_only_commits_that_raised_the_field_count() -> None:
    history = [
        commit("a", raised_to("192Mi"), raised_to("192Mi").replace("cpu: 200m", "cpu: 300m"), hours_ago=1),
        commit("b", CHECKOUT, raised_to("192Mi"), hours_ago=3, subject="fix(checkoutservice): bump memory"),
        commit("c", raised_to("256Mi"), CHECKOUT, hours_ago=5, subject="right-size checkout"),  # lowered
        commit("d", None, CHECKOUT, hours_ago=7, subject="add checkoutservice"),  # first set
    ]
    [found] = ledger.commit_raises(RAISED, history)
    assert (found.commit, found.old, found.new, found.pr) == (history[1], "128Mi", "192Mi", None)


def test_a_commit_is_tied_to_the_pr_it_landed_as() -> None:
    raise_b = ledger.Precedent(raised=RAISED, old="128Mi", new="192Mi", at=NOW, commit=commit("b", None, None))
    by_sha = ledger.tie_to_commits([raise_b], [pr(4, merge_commit="b" * 40), pr(5)])
    assert by_sha[0].pr is not None and (by_sha[0].pr.number, by_sha[0].tie) == (4, "merge commit")

    squash = replace(raise_b, commit=commit("b", None, None, subject="fix(checkoutservice): bump memory (#7)"))
    [tied] = ledger.tie_to_commits([squash], [pr(7)])
    assert tied.pr is not None and tied.pr.number == 7 and tied.tie.startswith("#N in the subject")

    merge = replace(raise_b, commit=commit("b", None, None,
                                           subject="Merge pull request #9 from acme/autofix-old/checkoutservice"))
    assert ledger.tie_to_commits([merge], [pr(9)])[0].pr == pr(9)
    assert ledger.tie_to_commits([merge], [pr(9, state="open")])[0].pr is None, "only a merged PR lands"
    assert ledger.tie_to_commits([raise_b], [pr(4)])[0].pr is None


def test_a_pr_in_another_format_is_tied_by_its_changed_files() -> None:
    files = [PrFile(path=FILE, patch=PATCH)]
    hit = ledger.pr_raise(pr(3), RAISED, workload=WORKLOAD, name="checkoutservice", files=files,
                          single_workload=True)
    assert hit is not None and (hit.old, hit.new, hit.tie) == ("128Mi", "192Mi", "changed files")
    assert hit.at == NOW - 3 * HOUR and hit.landed

    def tied(patch: str = PATCH, path: str = FILE, *, single: bool = True, title: str = "") -> bool:
        return ledger.pr_raise(pr(3, title=title, branch="deps/update"), RAISED, workload=WORKLOAD,
                               name="checkoutservice", files=[PrFile(path=path, patch=patch)],
                               single_workload=single) is not None

    assert not tied(path="kubernetes-manifests/cartservice.yaml"), "another file"
    assert not tied(PATCH.replace("-              memory: 128Mi\n+              memory: 192Mi",
                                  "-              memory: 256Mi\n+              memory: 192Mi")), "lowered"
    requests_only = """@@ -69,7 +69,7 @@ spec:
           resources:
             requests:
               cpu: 100m
-              memory: 64Mi
+              memory: 96Mi
             limits:
               cpu: 200m
               memory: 128Mi
"""
    assert not tied(requests_only), "the request, not the limit"
    assert not tied(single=False), "a file with other workloads needs the name in the PR"
    assert tied(single=False, title="fix(checkoutservice): bump memory")
    assert not tied(single=False, title="fix(checkoutservice2): bump memory"), "a word, not a prefix"


def test_a_pr_with_the_bots_marker_on_another_branch_is_tied_by_it() -> None:
    row = Remediation(workload=WORKLOAD, cause="oom_killed", branch="autofix-v1/checkoutservice", pr_number=2,
                      pr_url="u", state="merged", before={LIMIT: "128Mi"}, after={LIMIT: "192Mi"})
    body = "An older version of the bot wrote this.\n" + ledger.marker(row) + "\n"
    hit = ledger.pr_raise(pr(2, branch=row.branch, body=body), RAISED, workload=WORKLOAD, name="checkoutservice",
                          files=None, single_workload=False)
    assert hit is not None and (hit.old, hit.new, hit.tie) == ("128Mi", "192Mi", "ledger marker")
    other = ledger.marker(replace(row, workload="Deployment/onlineboutique/cartservice"))
    assert ledger.pr_raise(pr(2, branch=row.branch, body=other), RAISED, workload=WORKLOAD, name="checkoutservice",
                           files=[PrFile(path=FILE, patch=PATCH)], single_workload=True) is None
    assert ledger.foreign(pr(2, branch=row.branch)) and not ledger.foreign(pr(2, branch="autofix/shop/x/oom-killed"))


def test_a_file_defines_only_the_workload() -> None:
    assert ledger.defines_only(CHECKOUT, kind="Deployment", name="checkoutservice")
    assert not ledger.defines_only(CART, kind="Deployment", name="cartservice"), "redis-cart is in it too"
    assert not ledger.defines_only("resources:\n  limits:\n    memory: 1Gi\n", kind=None, name=None)


def _precedent(*, hours_ago: float, pr_state: str | None = None) -> ledger.Precedent:
    at = NOW - hours_ago * HOUR
    if pr_state is None:
        return ledger.Precedent(raised=RAISED, old="128Mi", new="192Mi", at=at,
                                commit=commit("b", None, None, hours_ago=hours_ago,
                                              subject="fix(checkoutservice): bump memory"))
    return ledger.Precedent(raised=RAISED, old="128Mi", new="192Mi", at=at, pr=pr(3, state=pr_state,
                                                                                   hours_ago=hours_ago))


def test_judge() -> None:
    commit_only = ledger.judge([_precedent(hours_ago=3)], now=NOW, limits=LIMITS)
    assert commit_only.action == "escalate"
    assert commit_only.reason == (
        f"escalated: commit {'b' * 12} by Dana Ops <dana@example.com> at {ledger.when(NOW - 3 * HOUR)} "
        f"(\"fix(checkoutservice): bump memory\") raised {LIMIT} in {FILE} from 128Mi to 192Mi, and the same "
        "failure is back within 24 h: not raising it again, it needs a human")
    merged = ledger.judge([_precedent(hours_ago=3, pr_state="merged")], now=NOW, limits=LIMITS)
    assert merged.action == "escalate"
    assert merged.reason.startswith("escalated: PR #3 (branch renovate/checkoutservice-memory) raised ")
    assert merged.reason.endswith("(commented on PR #3)")
    assert ledger.judge([_precedent(hours_ago=30)], now=NOW, limits=LIMITS).action == "proceed"
    assert ledger.judge([_precedent(hours_ago=30, pr_state="merged")], now=NOW, limits=LIMITS).action == "proceed"
    assert ledger.judge([_precedent(hours_ago=30, pr_state="open")], now=NOW, limits=LIMITS).action == "open"
    closed = ledger.judge([_precedent(hours_ago=30, pr_state="closed")], now=NOW, limits=LIMITS)
    assert closed.action == "cooldown" and "was closed unmerged at" in closed.reason
    assert ledger.judge([_precedent(hours_ago=80, pr_state="closed")], now=NOW, limits=LIMITS).action == "proceed"
    assert ledger.judge([], now=NOW, limits=LIMITS).action == "proceed"


def test_untrusted_commit_text_stays_on_one_bounded_line() -> None:
    hostile = replace(_precedent(hours_ago=1), commit=commit("e", None, None, hours_ago=1,
                                                             author="x\n<script>y</script>", subject="s" * 500))
    reason = ledger.judge([hostile], now=NOW, limits=LIMITS).reason
    assert "\n" not in reason and "s" * 120 not in reason and "s" * 119 + "…" in reason


def test_a_raise_with_its_pr_is_escalated_there_even_when_its_commit_is_not_tied() -> None:
    """A rebase-merged PR tied by its files and its untied commit on main: the comment goes on the PR."""
    untied = _precedent(hours_ago=2)
    on_pr = _precedent(hours_ago=3, pr_state="merged")
    verdict = ledger.judge([untied, on_pr], now=NOW, limits=LIMITS)
    assert verdict.action == "escalate" and verdict.precedent is on_pr
