"""A container's own log, read line by line: when each line was written, whether it reports an error, how far
a counted piece of work got ("Loaded 1200 of 5000 ads", "Running migration 12/40", "warming cache 45%"),
and the HTTP requests it answered (its access log). Pure: text in, values out.

Lines come as the application writes them: plain text with a timestamp near its start (ISO 8601, Go's
``2006/01/02 15:04:05``, ``2006.01.02 15:04:05``, Apache's ``[02/Jan/2006:15:04:05 -0700]``), logfmt, or a
JSON object (``time``/``timestamp``/``ts``, ``message``/``msg``, ``level``/``severity``). A time without a zone
is read as UTC: only differences between lines of one log are used, never a comparison with the cluster's clock.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

_ISO = re.compile(r"(\d{4})[-/.](\d{2})[-/.](\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s?(Z|[+-]\d{2}:?\d{2})?")
_APACHE = re.compile(r"\[(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\]")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                        "Dec"), start=1)}
STAMP_WINDOW = 64  # a line's own timestamp is near its start; a date further on is part of the message
_TIME_KEYS = ("time", "timestamp", "ts", "@timestamp", "t", "date", "datetime")
_MESSAGE_KEYS = ("message", "msg", "log", "event")
_LEVEL_KEYS = ("level", "severity", "lvl", "log.level", "levelname")
_ERROR_LEVELS = frozenset({"error", "err", "fatal", "critical", "crit", "panic", "alert", "emerg", "emergency",
                           "severe", "50", "60"})
# Error lines of plain-text logs: a level word in capitals, logfmt's level, a traceback, a Java/Python exception.
_ERROR = re.compile(r"\b(?:ERROR|FATAL|CRITICAL|SEVERE|PANIC)\b|\blevel=\"?(?:error|fatal|panic|crit)|"
                    r"Traceback \(most recent call last\)|^panic: |^\s*Caused by: |\b\w+(?:Exception|Error): |"
                    r"^\s+at [\w$.]+\(")
# A process that was told to stop says so; what it logs after that is its shutdown, not its start.
_SHUTDOWN = re.compile(r"(?i)\b(SIGTERM|signal terminated|received signal|shutting down|shutdown (?:hook|initiated|"
                       r"requested)|graceful(?:ly)? shut|commencing graceful|stopping (?:server|application|service))\b")
# A process waiting on something else counts its attempts, not its progress ("retrying (3/10)").
_WAITING = re.compile(r"(?i)\b(retry|retrying|retries|attempt|waiting for|wait for|unable|failed|refused|timed? ?out|"
                      r"unavailable|unreachable|back-?off|not ready|not yet)\b")
_NUMBER = r"\d[\d,]*(?:\.\d+)?"
# "1200 of 5000", "12/40", "12 out of 40": not a date (23/11/2026), a version (1.2/3) or a path (/v1/12/40).
_FRACTION = re.compile(rf"(?<![\w.:/-])({_NUMBER})\s*(?:/|of|out of)\s*({_NUMBER})(?![\w:/-]|\.\d)")
_PERCENT = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d+)?)\s?%")
# Access-log requests: combined/common log format ('"GET /healthz HTTP/1.1" 200'), uvicorn and morgan
# ('GET /healthz 200 1.2 ms'); JSON access logs are read from their fields.
_REQUEST = re.compile(r"\"?\b(GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS) (/\S*?)(?: HTTP/[\d.]+)?\"? ([1-5]\d\d)\b")
_DIGITS = re.compile(r"\d+")
_LOGFMT = re.compile(r'(?:^|\s)([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|\S*)')


@dataclass(frozen=True)
class Line:
    at: datetime | None
    text: str  # the message: the line without its timestamp, or a JSON line's message field
    error: bool
    fields: dict[str, Any] = field(default_factory=dict)  # a JSON line's fields, nested keys joined with "."


@dataclass(frozen=True)
class Reading:
    """One report of a count towards a total."""

    at: datetime
    done: float
    total: float
    series: str  # the message with its numbers taken out: the readings of one counter share it
    text: str


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int
    text: str


def parse(log: str) -> list[Line]:
    return [line for raw in log.splitlines() if raw.strip() and (line := _line(raw)) is not None]


def _line(raw: str) -> Line | None:
    stripped = raw.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict):
            return _json_line(data)
    at, text = _stamp(raw)
    return Line(at=at, text=text.strip(), error=bool(_ERROR.search(text)))


def _json_line(data: dict[str, Any]) -> Line:
    flat = _flatten(data)
    at = next((t for k in _TIME_KEYS if (t := _time_value(flat.get(k))) is not None), None)
    message = next((str(flat[k]) for k in _MESSAGE_KEYS if isinstance(flat.get(k), str)), "")
    level = next((str(flat[k]).lower() for k in _LEVEL_KEYS if flat.get(k) is not None), "")
    return Line(at=at, text=message, error=level in _ERROR_LEVELS or bool(_ERROR.search(message)), fields=flat)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _time_value(value: Any) -> datetime | None:
    if isinstance(value, str):
        return _stamp(value)[0]
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 1e9:
        seconds = value / 1000 if value > 1e11 else value  # epoch milliseconds or seconds
        return datetime.fromtimestamp(seconds, tz=UTC)
    return None


def _stamp(raw: str) -> tuple[datetime | None, str]:
    """The line's timestamp (near its start) and the line without it."""
    head = raw[:STAMP_WINDOW]
    if m := _ISO.search(head):
        year, month, day, hour, minute, second, fraction, zone = m.groups()
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        try:
            at = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=UTC)
        except ValueError:
            return None, raw
        return at - _offset(zone), raw[:m.start()] + raw[m.end():]
    if m := _APACHE.search(head):
        day, mon, year, hour, minute, second, zone = m.groups()
        if mon not in _MONTHS:
            return None, raw
        at = datetime(int(year), _MONTHS[mon], int(day), int(hour), int(minute), int(second), tzinfo=UTC)
        return at - _offset(zone), raw[:m.start()] + raw[m.end():]
    return None, raw


def _offset(zone: str | None) -> timedelta:
    if not zone or zone == "Z":
        return timedelta(0)
    digits = zone[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    return delta if zone[0] == "+" else -delta


# ---------------------------------------------------------------- a start's progress


def until_shutdown(lines: list[Line]) -> list[Line]:
    """The lines before the process was told to stop (a kill's SIGTERM makes many applications say so)."""
    for i, line in enumerate(lines):
        if _SHUTDOWN.search(line.text):
            return lines[:i]
    return lines


def readings(lines: list[Line]) -> list[Reading]:
    """Every count towards a total in timestamped lines that are not errors or HTTP requests."""
    out: list[Reading] = []
    for line in lines:
        if line.at is None or line.error or waiting(line) or request(line) is not None:
            continue
        if (found := _count(line.text)) is not None:
            done, total = found
            series = " ".join(_DIGITS.sub("#", line.text).split()) + f" |{total:g}"
            out.append(Reading(at=line.at, done=done, total=total, series=series, text=line.text))
    return out


def _count(text: str) -> tuple[float, float] | None:
    for m in _FRACTION.finditer(text):
        done, total = float(m.group(1).replace(",", "")), float(m.group(2).replace(",", ""))
        if 0 <= done <= total and total > 1:
            return done, total
    percent = _PERCENT.search(text)
    if percent is not None and float(percent.group(1)) <= 100:
        return float(percent.group(1)), 100.0
    return None


@dataclass(frozen=True)
class Pace:
    """How fast the counter that was running when the process stopped was going, and where it would end."""

    first: Reading
    last: Reading
    readings: int
    rate: float  # units per second
    elapsed: float  # seconds from the start to the last reading
    remaining: float  # seconds the counter needed at that rate to reach its total

    @property
    def ready_after(self) -> float:
        """Seconds from the start until the counter would have reached its total."""
        return self.elapsed + self.remaining

    @property
    def step(self) -> float:
        """Mean seconds between two readings."""
        return (self.last.at - self.first.at).total_seconds() / (self.readings - 1)


def pace(lines: list[Line], *, start: datetime | None = None) -> Pace | None:
    """The pace of the last counter of the start, None when it cannot be measured: fewer than two readings,
    no time or progress between them, a count going back, or a counter that had already reached its total.
    Times count from ``start`` (the container's start), else from the first timestamped line."""
    found = readings(lines)
    start = start or next((line.at for line in lines if line.at is not None), None)
    if not found or start is None:
        return None
    series = [r for r in found if r.series == found[-1].series]
    first, last = series[0], series[-1]
    seconds = (last.at - first.at).total_seconds()
    going_back = any(b.done < a.done for a, b in zip(series, series[1:], strict=False))
    if len(series) < 2 or seconds <= 0 or last.done <= first.done or going_back or last.done >= last.total:
        return None
    rate = (last.done - first.done) / seconds
    return Pace(first=first, last=last, readings=len(series), rate=rate,
                elapsed=(last.at - start).total_seconds(), remaining=(last.total - last.done) / rate)


def waiting(line: Line) -> bool:
    """Whether the line says the process waits on something else (a dependency, a retry): not progress."""
    return bool(_WAITING.search(line.text))


def errors(lines: list[Line]) -> list[str]:
    return [line.text for line in lines if line.error]


# ---------------------------------------------------------------- the access log


def request(line: Line) -> Request | None:
    """The HTTP request an access-log line reports (None for any other line)."""
    if line.fields:
        return _json_request(line)
    m = _REQUEST.search(line.text)
    if m:
        return Request(method=m.group(1), path=m.group(2), status=int(m.group(3)), text=line.text)
    fields = {k.lower(): v.strip('"') for k, v in _LOGFMT.findall(line.text)}
    if "method" in fields and "status" in fields and ("path" in fields or "uri" in fields):
        # logfmt, as Grafana's router logs: method=GET path=/api/health status=200
        return _json_request(Line(at=line.at, text=line.text, error=line.error, fields=fields))
    return None


def _json_request(line: Line) -> Request | None:
    def pick(suffixes: tuple[str, ...]) -> tuple[str, Any]:
        return next(((k, v) for k, v in line.fields.items() if k.lower().endswith(suffixes)), ("", None))

    (path_key, path), (status_key, status) = pick(("path", "uri", "url")), pick(("status", "status_code"))
    method = pick(("method",))[1]
    if not (isinstance(path, str) and path.startswith("/")) or not str(status).isdigit():
        return None
    return Request(method=str(method or "GET"), path=path.split("?")[0], status=int(status),
                   text=f"{line.text} ({path_key}={path} {status_key}={status})".strip())


def requests(log: str) -> list[Request]:
    return [r for line in parse(log) if (r := request(line)) is not None]
