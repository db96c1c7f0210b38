"""The HTTP edge served by a real uvicorn on 127.0.0.1, driven with httpx as Alertmanager would."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from app.adapters.store import JobStore, StoreUnavailable
from app.main import create_app, server_config
from app.models.incident import Incident
from app.models.outcome import Outcome, StageRecord
from app.settings import Settings
from tests.conftest import REFERENCE_DIR

pytestmark = pytest.mark.e2e  # every test here runs the service under a real uvicorn: the slow part

REFERENCE = REFERENCE_DIR
FIRING = "alertmanager-0.25-webhook-firing.json"
TOKEN = "s3cret-token"
WAIT_SECONDS = 10.0


def reference(name: str = FIRING) -> bytes:
    return (REFERENCE / name).read_bytes()


class RecordingHandler:
    """Counts the incidents it handles; answers no_fix with one stage."""

    def __init__(self) -> None:
        self.incidents: list[Incident] = []
        self._lock = threading.Lock()

    def handle(self, incident: Incident) -> Outcome:
        with self._lock:
            self.incidents.append(incident)
        return Outcome(alertname=incident.alertname, fingerprint=incident.fingerprint, outcome="no_fix",
                       reason="recorded", stages=[StageRecord(stage="record", seconds=0.0, decision="seen")])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(settings: Settings, handler: RecordingHandler, *,
          tweak: Callable[[FastAPI], None] | None = None) -> Iterator[httpx.Client]:
    """create_app under a real uvicorn (configured as in production) in a thread; always shuts down."""
    port = free_port()
    app = create_app(settings, pipeline=handler)
    if tweak is not None:
        tweak(app)
    config = server_config(app, host="127.0.0.1", port=port)
    config.log_config = None  # leave logging to pytest, so caplog sees everything
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_SECONDS) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=WAIT_SECONDS)


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def open_client(tmp_path: Path, handler: RecordingHandler) -> Iterator[httpx.Client]:
    with serve(Settings(data_dir=tmp_path, workers=2, lease_seconds=30), handler) as client:
        yield client


@pytest.fixture
def client(tmp_path: Path, handler: RecordingHandler) -> Iterator[httpx.Client]:
    settings = Settings(data_dir=tmp_path, workers=2, lease_seconds=30, webhook_token=TOKEN)
    with serve(settings, handler) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client


def post(client: httpx.Client, body: bytes, **kwargs: Any) -> httpx.Response:
    return client.post("/webhooks/alertmanager", content=body,
                       headers={"Content-Type": "application/json", "User-Agent": "Alertmanager/0.25.0"}, **kwargs)


def stored_jobs(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("autofix_jobs{"))


@pytest.mark.parametrize("name", sorted(p.name for p in REFERENCE.glob("*.json")))
def test_reference_payloads_are_accepted_and_handled(client: httpx.Client, handler: RecordingHandler,
                                                      name: str) -> None:
    alerts = json.loads(reference(name))["alerts"]
    response = post(client, reference(name))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["duplicates"] == 0 and len(body["jobs"]) == len(alerts)
    wait_until(lambda: len(handler.incidents) == len(alerts), "the handler")
    assert sorted(i.fingerprint for i in handler.incidents) == sorted(a["fingerprint"] for a in alerts)


def test_duplicate_delivery_is_processed_once(client: httpx.Client, handler: RecordingHandler) -> None:
    first = post(client, reference()).json()
    for job_id in first["jobs"]:
        wait_until(lambda j=job_id: client.get(f"/jobs/{j}").json()["state"] == "done", "the job")
    again = post(client, reference())
    assert again.status_code == 202
    assert again.json() == {"jobs": first["jobs"], "duplicates": 2}
    time.sleep(0.5)  # give a wrongly re-queued job the time to run
    assert len(handler.incidents) == 2
    assert "autofix_alert_duplicates_total 2.0" in client.get("/metrics").text


def test_job_shows_result_with_stages(client: httpx.Client) -> None:
    [job_id, _] = post(client, reference()).json()["jobs"]
    wait_until(lambda: client.get(f"/jobs/{job_id}").json()["state"] == "done", "the job")
    job = client.get(f"/jobs/{job_id}").json()
    assert job["attempts"] == 1 and job["fingerprint"] == "6f4aeb6ae5c7fa92"
    assert job["result"]["outcome"] == "no_fix"
    assert job["result"]["stages"] == [{"stage": "record", "seconds": 0.0, "decision": "seen"}]
    assert client.get("/jobs/999999").status_code == 404
    assert client.get("/jobs/not-a-number").status_code == 422


@pytest.mark.parametrize(
    ("headers", "params"),
    [({}, {}), ({"Authorization": "Bearer wrong"}, {}), ({"Authorization": f"Basic {TOKEN}"}, {}),
     ({}, {"token": TOKEN}), ({}, {"access_token": TOKEN})],
    ids=["no-token", "wrong-token", "wrong-scheme", "token-in-query", "access-token-in-query"],
)
def test_unauthorized_is_refused_and_nothing_stored(client: httpx.Client, handler: RecordingHandler,
                                                    headers: dict[str, str], params: dict[str, str]) -> None:
    del client.headers["Authorization"]
    response = client.post("/webhooks/alertmanager", content=reference(), headers=headers, params=params)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert TOKEN not in response.text
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    assert stored_jobs(client) == 0


def test_auth_is_checked_before_parsing(client: httpx.Client) -> None:
    del client.headers["Authorization"]
    assert post(client, b"{not json").status_code == 401


def test_no_token_configured_accepts_without_header(open_client: httpx.Client) -> None:
    assert post(open_client, reference()).status_code == 202


@pytest.mark.parametrize("token", [None, TOKEN], ids=["unset", "set"])
def test_start_warns_only_when_the_webhook_is_unauthenticated(tmp_path: Path, handler: RecordingHandler,
                                                              caplog: pytest.LogCaptureFixture,
                                                              token: str | None) -> None:
    with caplog.at_level(logging.WARNING, logger="app.main"):
        create_app(Settings(data_dir=tmp_path, webhook_token=token), pipeline=handler)
    warned = [r for r in caplog.records if "AUTOFIX_WEBHOOK_TOKEN is not set" in r.getMessage()]
    assert len(warned) == (1 if token is None else 0)


def test_body_over_one_mib_is_refused(client: httpx.Client) -> None:
    big = b" " * (1024 * 1024 + 1)
    assert post(client, big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bound is on what we read
        for _ in range(17):
            yield b" " * 65536

    assert post(client, chunks()).status_code == 413  # type: ignore[arg-type]
    assert stored_jobs(client) == 0


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b"{not json", "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
        (reference().replace(b'"version":"4"', b'"version":"3"'), "version"),
        (json.dumps({"version": "4", "status": "firing"}).encode(), "alerts"),
        (json.dumps({**json.loads(reference()), "alerts": [{"status": "firing"}]}).encode(), "fingerprint"),
        (b"[]", "model_type"),
    ],
    ids=["malformed", "not-utf8", "wrong-version", "missing-alerts", "alert-missing-fields", "not-an-object"],
)
def test_invalid_payload_is_422_and_nothing_stored(client: httpx.Client, body: bytes, mentions: str) -> None:
    response = post(client, body)
    assert response.status_code == 422
    assert mentions in response.text
    assert "Traceback" not in response.text
    assert stored_jobs(client) == 0


def test_health_ready_metrics_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"store": True, "workers": True, "jobs_within_budget": True,
                                      "dependencies": True}
    post(client, reference())
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'autofix_alerts_received_total{status="firing"} 2.0' in text
    assert 'autofix_webhook_requests_total{code="202"} 1.0' in text
    assert "autofix_webhook_duration_seconds_bucket" in text and "autofix_queue_depth" in text
    wait_until(lambda: 'autofix_jobs_finished_total{outcome="no_fix",state="done"} 2.0' in client.get("/metrics").text,
               "jobs metrics")
    assert client.get("/docs").status_code == 200
    assert "/webhooks/alertmanager" in client.get("/openapi.json").json()["paths"]


def test_readyz_is_503_without_workers(tmp_path: Path, handler: RecordingHandler) -> None:
    def stop_workers_after_start(app: FastAPI) -> None:
        app.state.services.pool.start = lambda: None  # the lifespan "starts" a pool that never runs

    with serve(Settings(data_dir=tmp_path), handler, tweak=stop_workers_after_start) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["workers"] is False


def test_store_failure_is_503_so_alertmanager_retries(tmp_path: Path, handler: RecordingHandler) -> None:
    def break_store(app: FastAPI) -> None:
        def locked(payload: object) -> None:
            raise StoreUnavailable("job store unavailable: database is locked")

        app.state.services.store.enqueue = locked

    with serve(Settings(data_dir=tmp_path), handler, tweak=break_store) as client:
        response = post(client, reference())
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert "locked" not in response.text


def test_token_never_reaches_the_logs(client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client.headers["Authorization"] = f"Bearer {TOKEN}-but-wrong"
    assert post(client, reference(), params={"token": TOKEN}).status_code == 401
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    assert post(client, reference(), params={"token": TOKEN}).status_code == 202
    assert caplog.records, "the request log should have recorded something"
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name == "uvicorn.access" for r in server_side)
    for record in server_side:
        assert TOKEN not in record.getMessage() and TOKEN not in repr(record.__dict__)


# --- slow and vanishing clients -------------------------------------------------------------------------


def _trickle(port: int, head: bytes, *, drip: bytes, every: float, budget: float) -> tuple[bytes, float]:
    """Send ``head``, then ``drip`` one byte every ``every`` s for at most ``budget`` s; return what the
    server answered and when it closed the connection (seconds after the first byte)."""
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=every) as sock:
        sock.sendall(head)
        for i in range(int(budget / every)):
            try:
                chunk = sock.recv(4096)
                if not chunk:
                    return answer, time.monotonic() - started
                answer += chunk
            except TimeoutError:
                pass
            except ConnectionResetError:  # closed with our unread bytes in its buffer: the 408 may be lost
                return answer, time.monotonic() - started
            try:
                sock.sendall(drip[i % len(drip): i % len(drip) + 1])
            except OSError:  # reset by the server: it closed the connection
                return answer, time.monotonic() - started
    return answer, -1.0


@pytest.fixture
def deadline_server(tmp_path: Path, handler: RecordingHandler) -> Iterator[int]:
    settings = Settings(data_dir=tmp_path, workers=1, lease_seconds=30, http_header_seconds=1.0,
                        http_body_seconds=1.0)
    with serve(settings, handler) as client:
        yield int(str(client.base_url).rsplit(":", 1)[1])


@pytest.mark.timeout(30)
def test_trickled_headers_are_cut_off_with_408(deadline_server: int) -> None:
    answer, closed_after = _trickle(deadline_server, b"POST /webhooks/alertmanager HTTP/1.1\r\nHost: x\r\n",
                                    drip=b"X-Slow-Header-Padding: aaaaaaaaaaaaaaaaaaaaaaaa", every=0.2, budget=10)
    assert closed_after > 0, "the server kept a trickling client's connection open for 10 s"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:60]


@pytest.mark.timeout(30)
def test_trickled_body_is_cut_off_and_nothing_is_stored(deadline_server: int, handler: RecordingHandler,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = reference()
    head = (b"POST /webhooks/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    answer, closed_after = _trickle(deadline_server, head, drip=body, every=0.2, budget=10)
    assert closed_after > 0, "the server kept a trickling body open for 10 s"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:60]
    assert handler.incidents == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.timeout(30)
def test_client_that_vanishes_mid_body_is_one_debug_line(deadline_server: int, handler: RecordingHandler,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    head = (b"POST /webhooks/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000\r\n\r\n{\"version\": \"4\", ")
    with socket.create_connection(("127.0.0.1", deadline_server), timeout=5) as sock:
        sock.sendall(head)
        time.sleep(0.2)
    wait_until(lambda: any("disconnected" in r.getMessage() for r in caplog.records), "the disconnect log line")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not any(r.exc_info for r in caplog.records if r.name.startswith(("app", "uvicorn")))
    assert handler.incidents == []


def test_readyz_reads_and_writes_the_store_and_names_corruption(tmp_path: Path, handler: RecordingHandler) -> None:
    from tests.edges.test_store import _damage_jobs_table, _many_alerts

    settings = Settings(data_dir=tmp_path, workers=1, lease_seconds=30)
    with serve(settings, handler) as client:
        assert client.get("/readyz").status_code == 200
        app_store = JobStore(settings.store_path)  # a second handle, as a second process would have
        _many_alerts(app_store, 200)
        app_store.close()
        _damage_jobs_table(settings.store_path)
        with sqlite3.connect(settings.store_path) as other:
            other.execute("CREATE TABLE IF NOT EXISTS touched (x)")
        other.close()
        answer = client.get("/readyz")
        assert client.get("/healthz").status_code == 200
    assert answer.status_code == 503
    assert answer.json()["checks"]["store"] is False
    assert "is corrupt" in answer.json()["reason"] and "\n" not in answer.json()["reason"]
