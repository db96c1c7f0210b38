"""The dependency health registry (app.dependencies) and each job's retry budget per dependency (app.deadlines).

Pure: a clock the test moves, exceptions built the way client libraries chain them.
"""

from __future__ import annotations

import socket
import threading

import pytest

from app import deadlines, dependencies
from app.dependencies import DependencyHealth
from app.errors import PermanentError, TemporaryError
from tests.fakes.health import HealthRecorder


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- the registry


def test_states_follow_the_last_call_and_counts_accumulate() -> None:
    clock = Clock()
    health = DependencyHealth(known=["forge", "mlflow"], clock=clock)
    assert [(s.name, s.state) for s in health.snapshot()] == [("forge", "unknown"), ("mlflow", "unknown")]

    health.ok("forge")
    health.error("forge", "timeout", "forge: GitHub did not answer within 15 s\n(GET /repos/acme/gitops/pulls)")
    forge = health.state("forge")
    assert forge.state == "down" and forge.required
    assert forge.errors == {"timeout": 1} and forge.oks == 1
    assert forge.last_error == "forge: GitHub did not answer within 15 s (GET /repos/acme/gitops/pulls)"

    health.error("forge", "http_4xx", "forge: GitHub 422 ...")  # it answered: up again, the error still counted
    health.ok("forge")
    assert health.state("forge").state == "up"
    assert health.state("forge").errors == {"timeout": 1, "http_4xx": 1}
    assert health.state("forge").last_error == "forge: GitHub 422 ..."


@pytest.mark.parametrize(("down", "expected"), [
    ((), (True, False, (), None)),
    (("mlflow",), (True, True, ("mlflow",), "mlflow down: mlflow: connection refused")),
    (("forge",), (False, False, ("forge",), "forge down: forge: connection refused")),
    (("cluster", "llm"), (False, True, ("cluster", "llm"),
                          "cluster down: cluster: connection refused; llm down: llm: connection refused")),
    (("git",), (False, False, ("git",), "git down: git: connection refused")),
], ids=["all-up", "mlflow-degraded", "forge-not-ready", "cluster-and-llm", "git-not-ready"])
def test_readiness_a_required_dependency_down_is_not_ready_an_optional_one_degrades(
        down: tuple[str, ...], expected: tuple[object, ...]) -> None:
    health = DependencyHealth(known=dependencies.NAMES)
    for name in dependencies.NAMES:
        health.ok(name)
    for name in down:
        health.error(name, "refused", f"{name}: connection refused")
    verdict = health.readiness()
    assert (verdict.ready, verdict.degraded, verdict.down, verdict.reason) == expected


def test_a_down_dependency_without_new_calls_is_unknown_after_down_for() -> None:
    """An idle service is not kept out of its Service's endpoints for good by one old failure."""
    clock = Clock()
    health = DependencyHealth(known=["cluster"], clock=clock, down_for=120)
    health.error("cluster", "timeout", "cluster: the Kubernetes API did not answer within 15 s")
    clock.now += 119
    assert not health.readiness().ready
    clock.now += 1
    assert health.readiness().ready
    state = health.state("cluster")
    assert state.state == "unknown" and state.last_error is not None and state.seconds_since_error == 120


def test_the_registry_is_safe_from_many_threads() -> None:
    health = DependencyHealth()

    def report() -> None:
        for _ in range(500):
            health.error("git", "timeout", "git: slow")
            health.ok("git")

    threads = [threading.Thread(target=report) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    state = health.state("git")
    assert state.errors == {"timeout": 4000} and state.oks == 4000 and state.state == "up"


def _chained(outer: type[Exception], inner: BaseException) -> Exception:
    """How a client library wraps a socket error: raise Outer(...) from inner."""
    try:
        try:
            raise inner
        except BaseException as err:
            raise outer("wrapped") from err
    except Exception as wrapped:
        return wrapped


class ReadTimeoutError(Exception):  # the names urllib3, requests, httpx and openai use
    pass


class MaxRetryError(Exception):
    def __init__(self, reason: Exception) -> None:
        super().__init__("max retries")
        self.reason = reason


@pytest.mark.parametrize(("err", "kind"), [
    (TimeoutError("timed out"), "timeout"),
    (_chained(OSError, TimeoutError()), "timeout"),
    (MaxRetryError(ReadTimeoutError("Read timed out. (read timeout=15)")), "timeout"),
    (Exception(MaxRetryError(_chained(OSError, ConnectionRefusedError(111, "Connection refused")))), "refused"),
    (_chained(OSError, socket.gaierror(-2, "Name or service not known")), "unreachable"),
    (ConnectionResetError(104, "Connection reset by peer"), "unreachable"),
], ids=["socket-timeout", "chained-timeout", "urllib3-read-timeout", "requests-refused", "dns", "reset"])
def test_kind_of_classifies_through_the_wrapped_chain(err: BaseException, kind: str) -> None:
    assert dependencies.kind_of(err) == kind


@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limited"), (502, "http_5xx"), (404, "http_4xx")])
def test_http_kind(status: int, kind: str) -> None:
    assert dependencies.http_kind(status) == kind


# ---------------------------------------------------------------- errors name the dependency


def test_an_error_with_a_dependency_starts_with_its_name_once() -> None:
    err = TemporaryError("GitHub did not answer within 15 s (GET /repos/acme/gitops/pulls)", dependency="forge",
                         kind="timeout")
    assert str(err) == "forge: GitHub did not answer within 15 s (GET /repos/acme/gitops/pulls)"
    assert (err.dependency, err.kind) == ("forge", "timeout")
    assert str(PermanentError("forge: already named", dependency="forge")) == "forge: already named"
    assert PermanentError("ours").dependency is None


# ---------------------------------------------------------------- the retry budget per job


def _timeout(dependency: str = "forge") -> TemporaryError:
    return TemporaryError("did not answer within 15 s (GET /x)", dependency=dependency, kind="timeout")


def test_repeated_timeouts_of_one_dependency_stop_the_job_early_naming_it() -> None:
    observer = HealthRecorder()
    deadline = deadlines.Deadline(3600, attempts=3, observer=observer)
    with deadlines.running(deadline):
        for _ in range(3):
            with deadlines.calling("forge", "open pull request"):
                deadlines.failed(_timeout())
        with deadlines.calling("cluster", "GET pods"):  # another dependency has its own budget
            deadlines.answered("cluster")
        with pytest.raises(deadlines.RetryBudgetSpent) as caught, deadlines.calling("forge", "open pull request"):
            pytest.fail("a spent budget must refuse the call before it is made")
    assert isinstance(caught.value, TemporaryError) and caught.value.dependency == "forge"
    assert str(caught.value) == "forge: gave up after 3 failed attempts in this job (3 timeout; budget 3 per job)"
    assert observer.calls == [("error", "forge", "timeout", "forge: did not answer within 15 s (GET /x)")] * 3 + [
        ("ok", "cluster")]


def test_answers_and_non_retryable_errors_do_not_spend_the_budget() -> None:
    deadline = deadlines.Deadline(3600, attempts=1)
    with deadlines.running(deadline):
        deadlines.failed(PermanentError("GitHub 422", dependency="forge", kind="http_4xx"))
        assert deadlines.retry_allowed("forge")
        deadlines.spend("forge", "http_5xx")  # a client library's own retry loop
        assert not deadlines.retry_allowed("forge")
    assert deadlines.retry_allowed("forge"), "outside a job nothing is counted"


def test_call_timeouts_never_exceed_what_is_left_of_the_budget() -> None:
    clock = Clock()
    deadline = deadlines.Deadline(10, clock=clock)
    assert deadlines.timeout(15) == 15  # no job: the configured timeout
    with deadlines.running(deadline):
        assert deadlines.timeout(5) == 5
        clock.now += 8
        assert deadlines.timeout(15) == 2
        clock.now += 2
        with pytest.raises(deadlines.BudgetExceeded, match="job exceeded 10 s in stage start"):
            deadlines.timeout(15)  # out of time: no call is started


def test_budget_running_out_while_waiting_for_a_dependency_names_it_and_is_temporary() -> None:
    clock = Clock()
    observer = HealthRecorder()
    deadline = deadlines.Deadline(3, clock=clock, observer=observer)
    with deadlines.running(deadline):
        deadlines.enter("publish")
        with deadlines.calling("forge", "open pull request"):
            clock.now += 3
            err = deadline.give_up()  # what the worker does when it stops waiting
            deadlines.failed(_timeout())  # the abandoned call's own late error is not reported twice
    assert isinstance(err, deadlines.DependencyTimeout) and isinstance(err, TemporaryError)
    assert str(err) == "forge: no answer within the job budget of 3 s (open pull request, stage publish)"
    assert observer.calls == [("error", "forge", "timeout", str(err))]
    assert deadline.abandoned and deadline.calling is None
    own = deadlines.Deadline(3, clock=clock)
    clock.now += 3
    assert isinstance(own.error(), deadlines.BudgetExceeded), "the job's own work out of time stays permanent"


def test_a_call_cut_by_the_budgets_last_millisecond_reads_as_the_budget() -> None:
    """deadlines.timeout() hands a call what is left of the budget, a hair under it: the message rounds it back."""
    from app.deadlines import shown

    assert [shown(s) for s in (0.999, 0.95, 0.92, 1.0, 1.0000001, 29.98, 30.0, 15.0, 2.5, 0.63, 0.25, 0.05)] == \
        ["1", "1", "1", "1", "1", "30", "30", "15", "2.5", "0.7", "0.25", "0.05"]
