"""Reading a container's own log: timestamps in the formats applications write, errors, counters towards a
total and their pace, and access-log requests."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from app.detectors import loglines


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("line", "expected"), [
    ("2026-11-23T15:08:20.123Z  INFO 1 --- [main] c.a.l.LedgerApplication : Starting", "2026-11-23T15:08:20.123"),
    ("2026-11-23 15:08:20,123 INFO  [org.keycloak.services] (main) KC-SERVICES0050", "2026-11-23T15:08:20.123"),
    ("2026-11-23T16:08:20+01:00 INFO starting", "2026-11-23T15:08:20"),
    ("2026/11/23 15:08:20 models/migrations/migrations.go:606:Migrate() [I] Migration[270]", "2026-11-23T15:08:20"),
    ("2026.11.23 15:08:20 INFO  web[][DbMigrations] Executing DB migrations...", "2026-11-23T15:08:20"),
    ('10.244.0.1 - - [23/Nov/2026:16:13:06 +0100] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.35"',
     "2026-11-23T15:13:06"),
    ('logger=migrator t=2026-11-23T15:08:20.12Z level=info msg="Executing migration" id="add index"',
     "2026-11-23T15:08:20.120"),
    ('{"level":"INFO","message":"AdService starting.","time":"2026-11-23T15:08:20.812Z"}', "2026-11-23T15:08:20.812"),
    ('{"level":"info","ts":1795446500.5,"msg":"loading"}', "2026-11-23T15:08:20.500"),
    ('{"level":"info","timestamp":1795446500500,"msg":"loading"}', "2026-11-23T15:08:20.500"),
], ids=["iso-z", "comma-millis", "offset", "go-slashes", "dots", "apache", "logfmt", "json-time", "json-epoch-s",
        "json-epoch-ms"])
def test_timestamps(line: str, expected: str) -> None:
    [parsed] = loglines.parse(line)
    assert parsed.at == _at(expected)


def test_a_date_far_into_the_message_is_not_the_lines_timestamp() -> None:
    [parsed] = loglines.parse("INFO booting the service; the licence expires on " + " " * 60 + "2027-01-01 00:00:00")
    assert parsed.at is None


@pytest.mark.parametrize(("text", "error"), [
    ("2026-11-23T15:08:20Z ERROR 1 --- [main] o.s.boot.SpringApplication : Application run failed", True),
    ('2026-11-23T15:08:20Z level=error msg="migration failed"', True),
    ("Traceback (most recent call last):", True),
    ("psycopg2.OperationalError: connection refused", True),
    ("\tat org.flywaydb.core.Flyway.migrate(Flyway.java:171)", True),
    ('{"level":"error","msg":"boom","time":"2026-11-23T15:08:20Z"}', True),
    ('{"severity":"debug","message":"request complete","timestamp":"2026-11-23T15:08:20Z"}', False),
    ("2026-11-23T15:08:20Z INFO 0 errors in 12 files", False),
    ("2026-11-23T15:08:20Z WARN cache miss ratio high", False),
])
def test_error_lines(text: str, error: bool) -> None:
    assert bool(loglines.errors(loglines.parse(text))) is error


@pytest.mark.parametrize(("message", "count"), [
    ("Indexed 800 of 9600 ads", (800, 9600)),
    ("Running migration 12/40", (12, 40)),
    ("[12/40] applying 20231101_add_index", (12, 40)),
    ("Warmed 1,200 of 48,000 federated users", (1200, 48000)),
    ("Loaded 3 out of 5 plugins", (3, 5)),
    ("Warming account cache: 45%", (45, 100)),
    ("Completed load of log orders-3 in 12ms (12/40 completed in /bitnami/kafka/data)", (12, 40)),
    ("Report for 23/11/2026 ready", None),
    ('GET /api/v1/12/40 HTTP/1.1" 200', None),
    ("Connecting to database, retrying (3/10)", None),
    ("Attempt 2 of 5 to reach keycloak-postgresql:5432", None),
    ("12 of 12 is not progress towards a total of one", (12, 12)),
])
def test_counts(message: str, count: tuple[float, float] | None) -> None:
    found = loglines.readings(loglines.parse(f"2026-11-23T15:08:20Z INFO {message}"))
    assert ((found[0].done, found[0].total) if found else None) == count


def _log(*lines: tuple[float, str]) -> list[loglines.Line]:
    return loglines.parse("\n".join(f"2026-11-23T15:08:{20 + s:06.3f}Z INFO {text}" if s < 40 else
                                    f"2026-11-23T15:09:{s - 40:06.3f}Z INFO {text}" for s, text in lines))


def test_pace_of_the_last_counter() -> None:
    lines = _log((0, "starting"), (2, "Running migration 1/40"), (4, "Running migration 5/40"),
                 (6, "Running migration 9/40"), (10, "Loaded 100 of 1000 products"), (20, "Loaded 300 of 1000 products"),
                 (30, "Loaded 500 of 1000 products"))
    pace = loglines.pace(lines)
    assert pace is not None
    assert (pace.first.done, pace.last.done, pace.readings) == (100, 500, 3)
    assert pace.rate == pytest.approx(20.0)
    assert (pace.elapsed, pace.remaining, pace.ready_after, pace.step) == (30.0, 25.0, 55.0, 10.0)


def test_pace_counts_from_the_given_start() -> None:
    lines = _log((10, "Loaded 100 of 1000 products"), (20, "Loaded 300 of 1000 products"))
    pace = loglines.pace(lines, start=_at("2026-11-23T15:08:20"))
    assert pace is not None and (pace.elapsed, pace.remaining, pace.ready_after) == (20.0, 35.0, 55.0)
    assert loglines.pace(lines) is not None and loglines.pace(lines).elapsed == 10.0  # type: ignore[union-attr]


@pytest.mark.parametrize("lines", [
    [(0, "Loaded 100 of 1000 products")],
    [(0, "Loaded 100 of 1000 products"), (10, "Loaded 100 of 1000 products")],
    [(0, "Loaded 500 of 1000 products"), (10, "Loaded 300 of 1000 products"), (20, "Loaded 600 of 1000 products")],
    [(0, "Running migration 30/40"), (10, "Running migration 40/40")],
    [(0, "Loaded 100 of 1000 products"), (5, "Running migration 1/40")],
], ids=["one-reading", "no-progress", "going-back", "finished", "new-counter-just-begun"])
def test_no_pace(lines: list[tuple[float, str]]) -> None:
    assert loglines.pace(_log(*lines)) is None


def test_lines_after_the_process_was_told_to_stop_are_its_shutdown() -> None:
    lines = loglines.parse("2026-11-23T15:08:20Z INFO Loaded 1 of 9\n"
                           "2026-11-23T15:08:30Z INFO Commencing graceful shutdown. Waiting for active requests\n"
                           "2026-11-23T15:08:31Z ERROR interrupted while loading\n")
    assert [line.text for line in loglines.until_shutdown(lines)] == ["INFO Loaded 1 of 9"]


@pytest.mark.parametrize(("line", "expected"), [
    ('10.244.0.1 - - [23/Nov/2026:15:13:06 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.35"',
     ("GET", "/healthz", 200)),
    ('INFO:     10.244.0.1:52346 - "GET /readyz HTTP/1.1" 404 Not Found', ("GET", "/readyz", 404)),
    ("GET /health 200 1.234 ms - 2", ("GET", "/health", 200)),
    ('{"http.req.id":"4f1c","http.req.method":"GET","http.req.path":"/_healthz","http.resp.bytes":2,'
     '"http.resp.status":200,"http.resp.took_ms":0,"message":"request complete","session":"x-liveness-probe",'
     '"severity":"debug","timestamp":"2026-11-23T15:13:06.41Z"}', ("GET", "/_healthz", 200)),
    ('{"level":"info","msg":"served","req":{"method":"HEAD","url":"/ping?x=1"},"res":{"status_code":204}}',
     ("HEAD", "/ping", 204)),
    ('logger=context userId=0 orgId=0 uname= t=2026-11-23T10:01:12.52Z level=info msg="Request Completed" '
     'method=GET path=/api/health status=200 remote_addr=10.244.0.1 time_ms=0 duration=412.9µs size=70 referer= '
     'handler=/api/health status_source=server', ("GET", "/api/health", 200)),
    ('logger=http.server t=2026-11-23T09:59:51.40Z level=info msg="HTTP Server Listen" address=[::]:3000 '
     'protocol=http subUrl= socket=', None),
    ("2026-11-23T15:13:06Z INFO Indexed 800 of 9600 ads", None),
    ('{"message":"request started","http.req.path":"/_healthz","http.req.method":"GET"}', None),
])
def test_access_log_requests(line: str, expected: tuple[str, str, int] | None) -> None:
    found = loglines.requests(line)
    assert ((found[0].method, found[0].path, found[0].status) if found else None) == expected


def test_json_lines_keep_their_fields() -> None:
    [line] = loglines.parse(json.dumps({"time": "2026-11-23T15:13:06Z", "msg": "Indexed 8 of 96 ads",
                                        "ctx": {"component": "catalog"}}))
    assert line.text == "Indexed 8 of 96 ads" and line.fields["ctx.component"] == "catalog"
