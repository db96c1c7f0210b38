"""Logging for every entry point: JSON lines or text, at a level from the environment, secrets redacted.

``LOG_FORMAT=json`` (the chart's default) writes one JSON object per line: ``timestamp``, ``level``, ``logger``,
``message`` and every field the code passes with ``extra=`` (``job_id``, ``outcome``, ...), plus ``exc_info`` with
the traceback. ``LOG_FORMAT=text`` (the default, for terminals) writes the message followed by those same fields
as ``key=value``: nothing a JSON line carries is dropped. Both redact like everything else that leaves the process
(app/redact.py): the message, each field's value (a field named like a secret is masked whole) and tracebacks,
the last net under stderr for an exception that echoes its input.

``LOG_LEVEL`` sets the level (``serve`` defaults to INFO, one-shot commands to WARNING); each ``-v`` lowers it one
step. uvicorn's loggers have no handler of their own (``log_config=None``, app/main.py): they reach the root
handler installed here, so its access and error lines come out in the same format.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

from app import redact
from app.errors import ConfigError

FORMATS = ("text", "json")
LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that log every HTTP call at INFO (with its URL): kept at WARNING unless DEBUG is asked for.
CHATTY = ("httpx", "httpcore", "urllib3", "alembic")
# Attributes every LogRecord has: what is left on a record are the ``extra=`` fields. uvicorn adds color_message
# (the same message with ANSI colours) to some of its lines: not a field anyone wants in a log store.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record, in the order they were passed."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES and not k.startswith("_")}


def _redacted(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return redact.MASK if value and redact.secret_name(key) else redact.text(value)
    if isinstance(value, Mapping):
        return {str(k): _redacted(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(key, v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _redacted(key, str(value))  # a path, an exception, a model: its text, redacted


class JsonLines(JsonFormatter):
    """One JSON object per line with every ``extra=`` field; each value redacted before it is serialised (a
    redaction of the serialised line could eat a closing quote and break the JSON)."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s", timestamp="timestamp",
                         rename_fields={"levelname": "level", "name": "logger"},
                         reserved_attrs=sorted(_RECORD_ATTRIBUTES), json_ensure_ascii=False)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # timestamp first: a human reading the raw line sees when before what.
        ordered = {"timestamp": log_data.pop("timestamp", None)}
        ordered.update((key, _redacted(key, value)) for key, value in log_data.items())
        return ordered


class TextLines(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` (strings with spaces or quotes JSON-quoted), redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        fields = " ".join(f"{key}={_text_value(_redacted(key, value))}" for key, value in extras(record).items())
        return super().formatMessage(record) + (" " + fields if fields else "")

    def format(self, record: logging.LogRecord) -> str:
        return redact.text(super().format(record))  # the traceback too


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(c.isspace() or c in "\"'=" for c in value) else json.dumps(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def level_of(name: str | None, *, default: int) -> int:
    """``LOG_LEVEL``'s value as a level (case-insensitive), or ``default`` when unset; ConfigError when unknown."""
    if name is None or not name.strip():
        return default
    try:
        return LEVELS[name.strip().upper()]
    except KeyError:
        raise ConfigError(f"LOG_LEVEL={name!r} is not a level: use one of {', '.join(LEVELS)}") from None


def format_of(name: str | None) -> str:
    value = (name or "text").strip().lower()
    if value not in FORMATS:
        raise ConfigError(f"LOG_FORMAT={name!r} is not a log format: use json or text")
    return value


def from_env(env: Mapping[str, str], *, service: bool, verbose: int = 0,
             stream: IO[str] | None = None) -> logging.Handler:
    """configure() from ``LOG_LEVEL`` and ``LOG_FORMAT``: the service at INFO by default, a one-shot command at
    WARNING; each ``-v`` one step more."""
    base = level_of(env.get("LOG_LEVEL"), default=logging.INFO if service else logging.WARNING)
    return configure(max(logging.DEBUG, base - 10 * verbose), format_of(env.get("LOG_FORMAT")), stream=stream)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours (the next configure() replaces it). Without a stream of its own it writes to whatever sys.stderr is
    when a line is written: a test's capture replaces it, then closes it."""

    def __init__(self, stream: IO[str] | None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure(level: int, fmt: str = "text", *, stream: IO[str] | None = None) -> logging.Handler:
    """Install one handler on the root logger (replacing the one an earlier call installed; handlers others put
    there, pytest's, stay) writing ``fmt`` lines to ``stream`` (stderr); returns it."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream)
    handler.setFormatter(JsonLines() if format_of(fmt) == "json" else TextLines())
    root.addHandler(handler)
    root.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET if level <= logging.DEBUG else max(level, logging.WARNING))
    _through_root("mlflow")
    return handler


def _through_root(name: str) -> None:
    """MLflow installs a handler and format of its own when imported (later, lazily, in the exporter's thread)
    unless told not to: its lines would break the JSON stream. Already imported: undo it."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    if name in sys.modules:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
