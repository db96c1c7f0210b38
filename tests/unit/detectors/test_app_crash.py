"""application_error: a container exits non-zero with an exception in its log; reported with the quote and
the revision that introduced it, never fixed from git."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.detectors import app_crash
from app.models.causes import Cause
from tests.unit.detectors.support import ev_of, varied


@pytest.mark.parametrize(("log", "quote"), [
    ('Traceback (most recent call last):\n  File "/app/main.py", line 3, in <module>\n    connect()\n'
     'psycopg2.OperationalError: connection to server at "db" failed\n',
     'psycopg2.OperationalError: connection to server at "db" failed'),
    ("panic: runtime error: invalid memory address or nil pointer dereference\n[signal SIGSEGV: segmentation "
     "violation code=0x1 addr=0x0 pc=0x5c3a1f]\n\ngoroutine 1 [running]:\nmain.main()\n",
     "panic: runtime error: invalid memory address or nil pointer dereference"),
    ("2026-11-23T15:00:01.000Z ERROR 1 --- [main] o.s.boot.SpringApplication : Application run failed\n"
     "org.springframework.beans.factory.BeanCreationException: Error creating bean with name 'dataSource'\n"
     "\tat org.springframework.beans...\nCaused by: java.net.UnknownHostException: ledger-db\n",
     "java.net.UnknownHostException: ledger-db"),
    ("/app/server.js:12\n    throw new Error('PORT is not a number');\n    ^\n\nError: PORT is not a number\n"
     "    at Object.<anonymous> (/app/server.js:12:11)\n", "Error: PORT is not a number"),
    ('{"level":"fatal","ts":1763910000.1,"msg":"cannot load config: open /etc/app/config.yaml: no such file"}\n',
     '{"level":"fatal","ts":1763910000.1,"msg":"cannot load config: open /etc/app/config.yaml: no such file"}'),
    ("listening on :8080\nshutting down\n", None),
], ids=["python", "go-panic", "java-caused-by", "node", "json-fatal", "nothing"])
def test_read_crash(log: str, quote: str | None) -> None:
    assert app_crash.read_crash(log)[0] == quote


def test_application_crash_quotes_the_exception_and_the_revision() -> None:
    d = app_crash.detect(ev_of("application-crash"))
    assert d is not None and not d.fixable and d.cause == Cause.APPLICATION_ERROR
    assert "psycopg2.OperationalError" in d.finding.root_cause
    assert "Introduced by revision 5" in str(d.no_fix_reason)
    assert any("Traceback" in line for line in d.finding.evidence)


@pytest.mark.parametrize("scenario", ["probe-wrong-port", "slow-start", "wrong-command", "oom-deployment"])
def test_application_crash_does_not_claim_other_causes(scenario: str) -> None:
    assert app_crash.detect(ev_of(scenario)) is None


def test_application_crash_says_when_the_previous_revision_ran_fine() -> None:
    def change(data: dict[str, Any]) -> None:
        old = copy.deepcopy(data["replicasets"][0])
        old["metadata"].update(name="orders-api-6c9d8b7f5", uid="0b0e7c4e-2f43-4c1e-9d1c-3a3f1ce0aa11")
        old["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "4"
        old["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/acme/orders-api:3.10.2"
        old["status"].update(readyReplicas=2, availableReplicas=2)
        data["replicasets"].append(old)
    d = app_crash.detect(varied("application-crash", change))
    assert d is not None
    assert "previous revision 4 ran fine with image ghcr.io/acme/orders-api:3.10.2" in str(d.no_fix_reason)
