"""Hostile input: the HTTP edge fuzzed from its own OpenAPI spec, payloads built to hurt, content that reaches
a PR body, and tokens sent the wrong way. The service must answer a clear 4xx, stay up, store nothing it
refused, and never let untrusted text ping people, close issues, inject HTML or break the PR's layout.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from app import settings as settings_mod
from app.adapters.store import JobStore
from app.demo import seed_bare_repo
from app.main import create_app
from app.models.alertmanager import WebhookPayload
from app.settings import Settings
from app.wiring import build_pipeline
from app.worker import run_next
from tests.conftest import EXAMPLES
from tests.edges.test_api import TOKEN, RecordingHandler, post, reference, serve, stored_jobs
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake

DEMO = EXAMPLES / "demo"
GH_TOKEN = "ghs_hostile_token_0123456789abcdefghij"


# ---- schemathesis against the service's own OpenAPI spec -------------------------------------------


@pytest.mark.e2e  # runs the service or servers for real: the slow part
def test_fuzzed_requests_get_a_clear_answer_never_a_5xx(tmp_path: Path) -> None:
    """Every operation of /openapi.json, with and without the token, a bounded number of generated cases."""
    app = create_app(Settings(data_dir=tmp_path, workers=1, lease_seconds=30, webhook_token=TOKEN),
                     pipeline=RecordingHandler())
    pool = app.state.services.pool
    pool.start()  # readiness needs live workers; the ASGI transport does not run the lifespan
    try:
        operations = [result.ok() for result in schemathesis.openapi.from_asgi("/openapi.json", app)
                      .get_all_operations()]
        assert {op.path for op in operations} >= {"/webhooks/alertmanager", "/jobs/{job_id}", "/healthz"}
        for operation in operations:
            _fuzz(operation)
    finally:
        pool.stop(10)


def _fuzz(operation: Any) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def check(case: Any) -> None:
        for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
            response = case.call(headers=headers)
            assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text}"
            if response.status_code >= 400:
                assert "detail" in response.json(), response.text  # a reason, not a bare status
                assert "Traceback" not in response.text

    check()


# ---- payloads built to hurt, against the real server ------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    with serve(Settings(data_dir=tmp_path, workers=1, lease_seconds=30, webhook_token=TOKEN),
               RecordingHandler()) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        yield c


def _alert(**labels: str) -> dict[str, Any]:
    return {"status": "firing", "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", **labels},
            "annotations": {}, "startsAt": "2026-11-23T15:15:16.846575773Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": "d50960b227faa3f0"}


def _payload(alerts: list[dict[str, Any]], **extra: Any) -> bytes:
    base = json.loads(reference())
    return json.dumps({**base, "alerts": alerts, **extra}).encode()


HOSTILE = {
    "deep-nesting": (b"[" * 200_000 + b"]" * 200_000)[: 1024 * 1024 - 1],
    "deep-nesting-in-labels": b'{"version":"4","status":"firing","alerts":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    "invalid-utf8-in-a-string": reference().replace(b'"checkout"', b'"check\xff\xfeout"', 1),
    "lone-surrogate": reference().replace(b'"checkout"', b'"\\ud800"', 1),
    "100000-alerts": _payload([_alert(pod=f"p-{i}") for i in range(100_000)]),
    "1001-alerts": _payload([_alert(pod=f"p-{i}") for i in range(1001)]),
    "65-labels": _payload([_alert(**{f"l{i}": "x" for i in range(65)})]),
    "unknown-version": reference().replace(b'"version":"4"', b'"version":"5"'),
    "numbers-for-strings": _payload([{**_alert(), "labels": {"alertname": 1e308}}]),
    "null-body": b"null",
}


@pytest.mark.e2e  # runs the service or servers for real: the slow part
@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_payload_is_refused_with_a_4xx_and_the_service_stays_up(client: httpx.Client, body: bytes) -> None:
    response = post(client, body)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    assert len(response.content) < 20_000, "the answer is bounded, it does not echo the input"
    assert stored_jobs(client) == 0
    assert client.get("/healthz").status_code == 200
    assert post(client, reference()).status_code == 202, "still serving well-formed payloads"


def test_huge_label_value_within_the_body_limit_is_stored_bounded(client: httpx.Client) -> None:
    body = _payload([_alert(pod="checkout-7d9f8b6c5-abcde", description="A" * 900_000)])
    assert len(body) < 1024 * 1024
    assert post(client, body).status_code == 202
    assert post(client, _payload([_alert(description="A" * 1_100_000)])).status_code == 413
    assert client.get("/healthz").status_code == 200


# ---- tokens sent the wrong way --------------------------------------------------------------------------


@pytest.mark.e2e  # runs the service or servers for real: the slow part
@pytest.mark.parametrize(
    ("headers", "params"),
    [({}, {"token": TOKEN}), ({}, {"access_token": TOKEN}), ({"Authorization": f"Basic {TOKEN}"}, {}),
     ({"Authorization": TOKEN}, {}), ({"X-Auth-Token": TOKEN}, {})],
    ids=["query-token", "query-access-token", "basic-scheme", "no-scheme", "other-header"],
)
def test_token_anywhere_but_the_bearer_header_is_401_unstored_unlogged(
        client: httpx.Client, caplog: pytest.LogCaptureFixture, headers: dict[str, str],
        params: dict[str, str]) -> None:
    caplog.set_level(logging.DEBUG)
    del client.headers["Authorization"]
    response = client.post("/webhooks/alertmanager", content=reference(), params=params,
                           headers={"Content-Type": "application/json", **headers})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    assert stored_jobs(client) == 0
    for record in caplog.records:
        if not record.name.startswith(("httpx", "httpcore")):
            assert TOKEN not in record.getMessage() and TOKEN not in repr(record.__dict__), record.name


# ---- untrusted content that ends up in the PR -----------------------------------------------------------

NASTY = ("<img src=x onerror=alert(1)> <script>steal()</script> @acme/security-team @octocat please look; "
         "closes #42, Fixes acme/other#7, resolves #3 ``` </details> | a | b | [click](javascript:alert(1)) "
         "\n## Injected heading\n- [x] approved " + "A" * 5000)


def _hostile_snapshot(tmp_path: Path) -> Path:
    snapshot = json.loads((DEMO / "cluster.json").read_text())
    pod = next(o for o in snapshot["items"] if o["kind"] == "Pod")
    snapshot["items"].append({
        "apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "BackOff", "count": 3,
        "message": NASTY, "firstTimestamp": "2026-11-23T15:14:00Z", "lastTimestamp": "2026-11-23T15:14:59Z",
        "eventTime": None, "source": {"component": "kubelet", "host": "k8s-worker-01"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "namespace": "shop",
                           "uid": pod["metadata"]["uid"], "fieldPath": "spec.containers{checkout}"},
        "metadata": {"name": pod["metadata"]["name"] + ".hostile", "namespace": "shop", "uid": "hostile-1"}})
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(snapshot))
    return path


def _outside_code(body: str) -> str:
    """The PR body as GitHub interprets it: fenced blocks and inline code spans removed."""
    kept, fenced = [], False
    for line in body.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(re.sub(r"`[^`]*`", "", line))
    assert not fenced, "a fence was left open: the rest of the PR renders as code"
    return "\n".join(kept)


@pytest.mark.e2e  # a whole pipeline run
def test_untrusted_text_in_the_pr_body_is_neutralised_and_bounded(tmp_path: Path, mlflow_uri: str) -> None:
    bare = tmp_path / "gitops.git"
    seed_bare_repo(DEMO / "repo", bare)
    payload = json.loads((DEMO / "alert.json").read_text())
    payload["alerts"] = payload["alerts"][:1]
    # The alert's own text is untrusted too (a templated annotation can carry anything): the Alert section.
    payload["alerts"][0]["annotations"].update(
        summary="## Injected heading\n- [x] approved @team closes #1 <img src=x onerror=alert(1)>",
        runbook_url="http://evil.example/x) [approve](http://evil.example/y")
    with FakeGitHub("acme/gitops", token=GH_TOKEN) as gh, \
            KubeApiFake.from_snapshot(_hostile_snapshot(tmp_path)) as kube:
        cfg = settings_mod.load(
            AUTOFIX_GIT_URL=str(bare), AUTOFIX_GITHUB_REPO="acme/gitops", GITHUB_TOKEN=GH_TOKEN,
            AUTOFIX_GITHUB_API_URL=gh.api_url, AUTOFIX_DATA_DIR=tmp_path / "data", MLFLOW_TRACKING_URI=mlflow_uri,
            KUBECONFIG=str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
        store = JobStore(tmp_path / "jobs.sqlite3")
        store.enqueue(WebhookPayload.model_validate(payload))
        job = run_next(store, build_pipeline(cfg))
        store.close()
    assert job is not None and job.result is not None and job.result["outcome"] == "pr_opened", job
    [request] = gh.requests_to("POST", "/pulls")
    body = str(request.body["body"])
    assert "onerror=alert" in body, "the hostile event is in the evidence shown (inside code)"
    outside = _outside_code(body)
    # A backslash-escaped "<" is text to GitHub's Markdown (tests/unit/test_render.py parses it to be sure).
    assert not re.search(r"(?<!\\)<(img|script|a|iframe)\b", outside, re.I), "no raw HTML outside code"
    assert not re.search(r"(?<![\w`])@[A-Za-z0-9]", outside), "no @mention that pings"
    assert not re.search(r"(?i)\b(close[sd]?|fix(e[sd])?|resolve[sd]?)\s+([\w.-]+/[\w.-]+)?#\d", outside)
    assert "## Injected heading" not in outside and "- [x] approved" not in outside
    assert [h for h in outside.splitlines() if h.startswith("## ")][:4] == [
        "## Root cause", "## Alert", "## Evidence", "## Change"], "the layout is ours, not the attacker's"
    assert "[approve](" not in outside and "Runbook: `" in body, "a runbook that is no plain URL is code, not a link"
    assert max(len(line) for line in body.splitlines()) <= 400, "every untrusted line is bounded"
    assert len(body) < 65_536, "within GitHub's PR body limit"
