"""Log lines an operator can use (app/logs.py): JSON or text with every ``extra=`` field, redacted; the level from
LOG_LEVEL and -v (before or after the sub-command); the worker's "job decided" line and the HTTP edge's
"webhook rejected" line, read back from the configured handler as production writes them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import cli, logs
from app.adapters.store import JobStore
from app.errors import ConfigError, PermanentError
from app.models.alertmanager import WebhookPayload
from app.models.incident import Incident
from app.models.outcome import Outcome, StageRecord
from app.settings import Settings
from app.worker import Finished, run_job
from tests.edges.test_api import FIRING, RecordingHandler, reference, serve

GITHUB_TOKEN = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"  # a classic PAT's shape: the redaction knows it
WEBHOOK_TOKEN = "logs-webhook-token-5c2e9d"
WRONG_TOKEN = "wrong-token-8f3b1a7c2d"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Where configure() writes in these tests; the root logger is put back as it was after each."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    out = io.StringIO()
    try:
        yield out
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


def json_lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_every_extra_field_redacted(stream: io.StringIO) -> None:
    logs.configure(logging.INFO, "json", stream=stream)
    log = logging.getLogger("app.test")
    log.info("job decided", extra={"job_id": 7, "pr_url": "https://github.com/acme/gitops/pull/3", "risk": 0.25,
                                   "labels": {"namespace": "shop"}, "path": Path("/data/jobs.sqlite3"),
                                   "error": f"git push failed: Authorization: token {GITHUB_TOKEN}",
                                   "api_token": "anything"})
    try:
        raise RuntimeError(f"parser echoed {GITHUB_TOKEN}")
    except RuntimeError:
        log.exception("job failed", extra={"job_id": 8})
    log.debug("below the level")
    decided, failed = json_lines(stream)
    assert decided == {"timestamp": decided["timestamp"], "level": "INFO", "logger": "app.test",
                       "message": "job decided", "job_id": 7, "pr_url": "https://github.com/acme/gitops/pull/3",
                       "risk": 0.25, "labels": {"namespace": "shop"}, "path": "/data/jobs.sqlite3",
                       "error": "git push failed: Authorization: token [REDACTED]", "api_token": "[REDACTED]"}
    assert decided["timestamp"].endswith("+00:00")
    assert failed["level"] == "ERROR" and failed["job_id"] == 8
    assert "RuntimeError: parser echoed [REDACTED]" in failed["exc_info"]
    assert GITHUB_TOKEN not in stream.getvalue()


def test_text_lines_keep_the_extra_fields_as_key_value(stream: io.StringIO) -> None:
    logs.configure(logging.WARNING, "text", stream=stream)
    logging.getLogger("app.test").warning("webhook rejected", extra={
        "reason": "auth", "status": 401, "detail": "wrong bearer token", "secret": "hunter2hunter2"})
    [line] = stream.getvalue().splitlines()
    assert line.endswith(' WARNING app.test: webhook rejected reason=auth status=401 detail="wrong bearer token" '
                         'secret=[REDACTED]'), line


@pytest.mark.parametrize(("env", "service", "verbose", "level"), [
    ({}, True, 0, logging.INFO),
    ({}, False, 0, logging.WARNING),
    ({}, False, 1, logging.INFO),
    ({}, True, 1, logging.DEBUG),
    ({}, True, 5, logging.DEBUG),
    ({"LOG_LEVEL": "debug"}, False, 0, logging.DEBUG),
    ({"LOG_LEVEL": "WARNING"}, True, 0, logging.WARNING),
    ({"LOG_LEVEL": "ERROR"}, True, 1, logging.WARNING),
])
def test_level_from_log_level_and_each_v(stream: io.StringIO, env: dict[str, str], service: bool, verbose: int,
                                         level: int) -> None:
    logs.from_env(env, service=service, verbose=verbose, stream=stream)
    assert logging.getLogger().level == level


@pytest.mark.parametrize("env", [{"LOG_LEVEL": "verbose"}, {"LOG_FORMAT": "xml"}])
def test_a_wrong_log_setting_is_a_configuration_error(stream: io.StringIO, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=next(iter(env))):
        logs.from_env(env, service=True, stream=stream)


def test_cli_exits_1_naming_a_wrong_log_format(stream: io.StringIO, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LOG_FORMAT", "logfmt")
    assert cli.main(["policy", "check", "policies"]) == 1
    assert capsys.readouterr().err == ("autofix: LOG_FORMAT='logfmt' is not a log format: use json or text\n")


@pytest.mark.parametrize(("argv", "verbose"), [
    (["serve"], 0), (["serve", "-v"], 1), (["-v", "serve"], 1), (["-v", "handle", "x.json"], 1),
    (["handle", "x.json", "--verbose"], 1), (["handle", "x.json", "-vv"], 2), (["policy", "check", "d", "-v"], 1),
    (["dashboard", "sync", "-v"], 1),
])
def test_v_is_accepted_before_and_after_the_sub_command(argv: list[str], verbose: int) -> None:
    assert cli._parser().parse_args(argv).verbose == verbose


class Decided:
    """A handler that ends as the pipeline does for a PR (or raises a permanent error)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail

    def handle(self, incident: Incident) -> Outcome:
        if self.fail:
            raise PermanentError("the manifest is not valid YAML")
        return Outcome(alertname=incident.alertname, fingerprint=incident.fingerprint, outcome="pr_opened",
                       reason="Raise memory limit of shop/checkout to 768Mi after OOMKilled",
                       pr_url="https://github.com/acme/gitops/pull/12", workload="Deployment/shop/checkout",
                       cause="oom_killed", stages=[StageRecord(stage="publish", seconds=0.01, decision="opened")])


@pytest.mark.parametrize("fail", [False, True])
def test_one_job_decided_line_per_job_with_its_fields(stream: io.StringIO, tmp_path: Path, fail: bool) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.enqueue(WebhookPayload.model_validate_json(reference(FIRING)))
    job = store.lease("w1", ttl=30)
    assert job is not None
    logs.configure(logging.INFO, "json", stream=stream)
    finished: list[Finished] = []
    run_job(store, Decided(fail=fail), job, worker="w1", lease_seconds=30, on_outcome=finished.append)
    store.close()
    [decided] = [line for line in json_lines(stream) if line["message"] == "job decided"]
    labels = job.alert["alert"]["labels"]
    common = {"job_id": job.id, "attempt": 1, "fingerprint": job.fingerprint, "alertname": job.alertname}
    if fail:
        assert decided == {**decided, **common, "namespace": labels.get("namespace"), "workload": None,
                           "cause": None, "outcome": "failed", "pr_url": None,
                           "reason": "permanent: the manifest is not valid YAML"}
        assert finished == [Finished(state="failed", seconds=finished[0].seconds)]
    else:
        assert decided == {**decided, **common, "namespace": "shop", "workload": "Deployment/shop/checkout",
                           "cause": "oom_killed", "outcome": "pr_opened",
                           "pr_url": "https://github.com/acme/gitops/pull/12"}
        assert finished == [Finished(state="done", outcome="pr_opened", cause="oom_killed",
                                     seconds=finished[0].seconds)]
    assert decided["level"] == "INFO" and isinstance(decided["duration_seconds"], float)


@pytest.mark.e2e  # a real uvicorn
@pytest.mark.timeout(60)
def test_a_rejected_webhook_logs_one_warning_without_the_token(stream: io.StringIO, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, workers=1, lease_seconds=30, webhook_token=WEBHOOK_TOKEN)
    with serve(settings, RecordingHandler()) as client:
        logs.configure(logging.INFO, "json", stream=stream)
        body = reference()
        refused = client.post("/webhooks/alertmanager", content=body,
                              headers={"Authorization": f"Bearer {WRONG_TOKEN}"})
        missing = client.post("/webhooks/alertmanager", content=body)
        too_big = client.post("/webhooks/alertmanager", content=b"x" * (1024 * 1024 + 1),
                              headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"})
        not_json = client.post("/webhooks/alertmanager", content=b'{"alerts": 1}',
                               headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"})
        scraped = client.get("/metrics").text
    assert [r.status_code for r in (refused, missing, too_big, not_json)] == [401, 401, 413, 422]
    text = stream.getvalue()
    assert WRONG_TOKEN not in text and WEBHOOK_TOKEN not in text
    rejected = [line for line in json_lines(stream) if line["message"] == "webhook rejected"]
    assert [(r["level"], r["reason"], r["status"], r["content_length"]) for r in rejected] == [
        ("WARNING", "auth", 401, len(body)), ("WARNING", "auth", 401, len(body)),
        ("WARNING", "size", 413, 1024 * 1024 + 1), ("WARNING", "payload", 422, 13)]
    assert [r["detail"] for r in rejected[:3]] == ["wrong bearer token", "no Authorization header",
                                                  "body larger than 1048576 bytes"]
    assert rejected[3]["detail"][0]["loc"] == ["version"]
    assert all(r["remote_addr"].startswith("127.0.0.1:") for r in rejected)
    assert 'autofix_webhook_rejected_total{reason="auth"} 2.0' in scraped
    assert 'autofix_webhook_rejected_total{reason="size"} 1.0' in scraped
    assert 'autofix_webhook_rejected_total{reason="payload"} 1.0' in scraped
