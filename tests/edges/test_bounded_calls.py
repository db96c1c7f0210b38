"""Every edge is bounded: each adapter against a server that accepts the connection and never answers.

The real clients (the kubernetes client, PyGithub, git, the OpenAI SDK) talk to tests/fakes/silent.py on
127.0.0.1 inside a job's deadline (app.deadlines), as the worker runs them. What is asserted: the error
names the dependency and says it did not answer, the health observer heard it, and how many connections the
server accepted (a retry budget that stops early is fewer connections, not a faster clock).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app import deadlines
from app.adapters.cluster import KubeCluster
from app.adapters.llm import OpenAIAdvisor
from app.adapters.workspace import GitWorkspace
from app.advice import AdvisorError, Prompt
from app.errors import TemporaryError
from app.forges.github import GitHubForge
from tests.fakes.health import HealthRecorder
from tests.fakes.silent import SilentServer, kubeconfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]  # each waits out real (short) timeouts

TOKEN = "ghp_bounded_0123456789abcdefghijklmnop"
AUTHOR = "gitops-autofix[bot] <gitops-autofix@users.noreply.github.com>"


def test_cluster_api_that_never_answers_is_cut_at_the_read_timeout_naming_the_call(tmp_path: Path) -> None:
    observer = HealthRecorder()
    with SilentServer() as silent:
        cluster = KubeCluster.from_config(kubeconfig(tmp_path / "kc", silent.url), timeout=(1.0, 1.0))
        with deadlines.running(deadlines.Deadline(60, observer=observer)), pytest.raises(TemporaryError) as caught:
            cluster.get("Pod", "shop", "checkout-7d9f8b6c5-abcde")
        cluster.close()
    assert str(caught.value) == ("cluster: the Kubernetes API did not answer within 1 s "
                                 "(GET pods/checkout-7d9f8b6c5-abcde in namespace shop)")
    assert (caught.value.dependency, caught.value.kind) == ("cluster", "timeout")
    assert observer.kinds == [("error", "cluster", "timeout")]
    assert silent.accepted == 1, "a read timeout is not re-sent"


def test_cluster_read_timeout_never_outlasts_the_job_budget(tmp_path: Path) -> None:
    with SilentServer() as silent:
        cluster = KubeCluster.from_config(kubeconfig(tmp_path / "kc", silent.url))  # 15 s read timeout
        with deadlines.running(deadlines.Deadline(1.0)), pytest.raises(TemporaryError) as caught:
            cluster.list("Event", "shop")
        cluster.close()
    assert caught.value.dependency == "cluster" and caught.value.kind == "timeout"
    assert str(caught.value).startswith("cluster: the Kubernetes API did not answer within 1 s (GET events"), \
        "bounded by the 1 s job budget, not the 15 s read timeout"


def test_forge_retries_stop_when_the_jobs_retry_budget_for_it_is_spent() -> None:
    observer = HealthRecorder()
    with SilentServer() as silent:
        forge = GitHubForge("acme/gitops", api_url=silent.url, token=TOKEN, write_spacing=0, request_spacing=0,
                            retries=10, backoff=0.01, timeout=1)
        with deadlines.running(deadlines.Deadline(120, attempts=2, observer=observer)):
            with pytest.raises(TemporaryError) as caught:
                forge.find_open_pr("autofix/shop/checkout/oom-killed")
            with pytest.raises(deadlines.RetryBudgetSpent) as again:
                forge.find_open_pr("autofix/shop/checkout/oom-killed")  # refused at once: no third connection
    assert str(caught.value) == "forge: GitHub did not answer within 1 s (GET /repos/acme/gitops)"
    assert silent.accepted == 2, "two attempts (the job's budget for the forge), not PyGithub's eleven"
    assert str(again.value) == "forge: gave up after 2 failed attempts in this job (2 timeout; budget 2 per job)"
    assert observer.kinds == [("error", "forge", "timeout")]


def test_forge_read_timeout_never_outlasts_the_job_budget() -> None:
    with SilentServer() as silent:
        forge = GitHubForge("acme/gitops", api_url=silent.url, token=TOKEN, write_spacing=0, request_spacing=0,
                            retries=3, backoff=0.01)  # 15 s per attempt, four attempts: a minute unbounded
        with deadlines.running(deadlines.Deadline(1.0)), pytest.raises(TemporaryError) as caught:
            forge.find_open_pr("autofix/shop/checkout/oom-killed")
    assert caught.value.dependency == "forge" and caught.value.kind == "timeout", caught.value
    assert str(caught.value).startswith("forge: GitHub did not answer within "), caught.value
    assert silent.accepted == 1, "no second attempt once the job's time is up"


def test_git_remote_that_never_answers_is_cut_by_git_low_speed_limit(tmp_path: Path) -> None:
    observer = HealthRecorder()
    with SilentServer() as silent:
        workspace = GitWorkspace(f"{silent.url}/acme/gitops.git", base="main", checkout=tmp_path / "repo",
                                 author=AUTHOR, stall_seconds=1)  # the subprocess timeout stays at 180 s
        with deadlines.running(deadlines.Deadline(120, observer=observer)), pytest.raises(TemporaryError) as caught:
            workspace.sync()
    assert (caught.value.dependency, caught.value.kind) == ("git", "timeout")
    assert str(caught.value).startswith("git: fetch failed (128): "), caught.value
    assert "Operation too slow" in str(caught.value)
    assert observer.kinds == [("error", "git", "timeout")]


def test_git_call_never_outlasts_the_job_budget(tmp_path: Path) -> None:
    with SilentServer() as silent:
        workspace = GitWorkspace(f"{silent.url}/acme/gitops.git", base="main", checkout=tmp_path / "repo",
                                 author=AUTHOR)  # stalls of 20 s allowed, 180 s per call
        with deadlines.running(deadlines.Deadline(1.0)), pytest.raises(TemporaryError) as caught:
            workspace.sync()
    assert (caught.value.dependency, caught.value.kind) == ("git", "timeout")
    assert str(caught.value).startswith("git: the remote did not answer within "), caught.value
    assert str(caught.value).endswith(" s (git fetch)"), caught.value


def test_llm_that_never_answers_degrades_and_is_skipped_once_its_budget_is_spent() -> None:
    prompt = Prompt(purpose="explain", system="You explain Kubernetes failures.", user="OOMKilled at 512Mi")
    with SilentServer() as silent:
        advisor = OpenAIAdvisor("sk-test", base_url=f"{silent.url}/v1", model="gpt-4o-mini", timeout=1.0,
                                max_retries=0)
        with deadlines.running(deadlines.Deadline(120, attempts=1)):
            with pytest.raises(AdvisorError) as first:
                advisor.explain(prompt)
            with pytest.raises(AdvisorError) as second:
                advisor.explain(prompt)
    assert str(first.value) == "llm: timed out after 1 s" and first.value.code == "llm_timeout"
    assert str(second.value) == "llm: skipped: the model failed too often in this job (explain)"
    assert silent.accepted == 1, "the second call never connected"
