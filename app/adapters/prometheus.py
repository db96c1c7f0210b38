"""A Prometheus-compatible HTTP API (Prometheus, Thanos Query, Mimir, VictoriaMetrics) through httpx: the only
module that talks HTTP to it (the MetricsReader port).

Read-only and small: ``GET /api/v1/query`` and ``GET /api/v1/query_range``, nothing else, with the optional
bearer token (AUTOFIX_PROMETHEUS_TOKEN), CA file and extra headers (a Mimir tenant). Every request is bounded by
the job's budget (app.deadlines): its connect and read timeouts never exceed what is left, and the whole answer
must arrive within connect + read seconds (and the budget) (a server that trickles its body is cut there); the body is read up to
``MAX_BODY_BYTES``.

Every failure is a TemporaryError naming the dependency ("prometheus: ...") and how it failed
(app.dependencies: timeout, refused, unreachable, http_4xx, http_5xx, rate_limited, invalid_response), reported
to the job's health observer. Prometheus' error bodies (``{"status":"error","errorType":"bad_data","error":...}``)
become the message. The evidence stage turns any of them into Metrics(status="unavailable"): a missing curve
never fails or requeues a job.
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app import deadlines, dependencies
from app.errors import TemporaryError
from app.ports import RawSeries

log = logging.getLogger(__name__)

PROMETHEUS = dependencies.PROMETHEUS
QUERY = "/api/v1/query"
QUERY_RANGE = "/api/v1/query_range"
DEFAULT_TIMEOUT = (3.0, 10.0)  # (connect, read) seconds for one request
MAX_BODY_BYTES = 32 * 1024 * 1024
RETRY_DELAY = 30.0
_MESSAGE_CHARS = 300


class PrometheusReader:
    """MetricsReader over a Prometheus-compatible HTTP API. Sends GET requests only; safe from any thread."""

    def __init__(self, url: str, *, token: str | None = None, ca_file: Path | None = None,
                 headers: Mapping[str, str] | None = None,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        import httpx  # lazy: `autofix --help` does not pay for it

        self._httpx = httpx
        self._base = url.rstrip("/")
        self._timeout = timeout
        sent = {"Accept": "application/json", "User-Agent": "gitops-autofix"}
        sent.update(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        # trust_env=False: no proxy or netrc from the environment between the bot and its in-cluster Prometheus.
        self._client = httpx.Client(headers=sent, verify=verify, follow_redirects=False, trust_env=False)

    @property
    def source(self) -> str:
        """The base URL without credentials (what the PR and the run record may show)."""
        parts = urlsplit(self._base)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def close(self) -> None:
        self._client.close()

    def query_range(self, promql: str, *, start: float, end: float, step: float) -> list[RawSeries]:
        data = self._get(QUERY_RANGE, {"query": promql, "start": _stamp(start), "end": _stamp(end),
                                       "step": f"{step:g}"})
        return _series(data, QUERY_RANGE)

    def query(self, promql: str, *, at: float) -> list[RawSeries]:
        return _series(self._get(QUERY, {"query": promql, "time": _stamp(at)}), QUERY)

    # ---- one request --------------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """One GET; the ``data`` of a success, else a TemporaryError (reported to the job's health observer)."""
        httpx = self._httpx
        connect, read = deadlines.timeout(self._timeout[0]), deadlines.timeout(self._timeout[1])
        whole = deadlines.timeout(self._timeout[0] + self._timeout[1])  # the answer's last byte, at the latest
        call = f"GET {path}"
        started = time.monotonic()
        try:
            with deadlines.calling(PROMETHEUS, call), self._client.stream(
                    "GET", self._base + path, params=params,
                    timeout=httpx.Timeout(connect=connect, read=read, write=read, pool=connect)) as response:
                body = _read(response, until=started + whole, call=call, seconds=whole)
                status = response.status_code
                retry_after = response.headers.get("Retry-After")
        except httpx.TimeoutException as err:
            waited = connect if isinstance(err, httpx.ConnectTimeout | httpx.PoolTimeout) else read
            raise deadlines.failed(_error(f"no answer within {deadlines.shown(waited)} s ({call})", dependencies.TIMEOUT)) from err
        except httpx.HTTPError as err:  # connect refused, DNS, TLS, reset, protocol errors
            kind = dependencies.kind_of(err)
            what = "connection refused" if kind == dependencies.REFUSED else f"unreachable: {_first_line(err)}"
            log.warning("prometheus request failed", extra={"call": call, "error": type(err).__name__})
            raise deadlines.failed(_error(f"{what} ({call})", kind)) from err
        answer = _json(body)
        if not 200 <= status < 300 or (isinstance(answer, dict) and answer.get("status") == "error"):
            raise deadlines.failed(_http_error(status, answer, body, call=call, retry_after=retry_after))
        if not isinstance(answer, dict) or answer.get("status") != "success" or not isinstance(answer.get("data"),
                                                                                                dict):
            raise deadlines.failed(_error(f"not a Prometheus API answer ({call}): {_snippet(body)}",
                                          dependencies.INVALID_RESPONSE))
        if answer.get("warnings"):  # Thanos partial responses, Mimir limits: the answer is used as it is
            log.info("prometheus answered with warnings", extra={"call": call, "warnings": str(answer["warnings"])[:300]})
        deadlines.answered(PROMETHEUS)
        return dict(answer["data"])


def _read(response: Any, *, until: float, call: str, seconds: float) -> bytes:
    """The body, at most MAX_BODY_BYTES, all of it before ``until`` (monotonic): a trickle is a timeout."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise deadlines.failed(_error(f"answer larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB ({call})",
                                          dependencies.INVALID_RESPONSE))
        chunks.append(chunk)
        if time.monotonic() > until:
            raise deadlines.failed(_error(f"no complete answer within {deadlines.shown(seconds)} s ({call})",
                                          dependencies.TIMEOUT))
    return b"".join(chunks)


def _error(message: str, kind: str, *, delay: float = RETRY_DELAY) -> TemporaryError:
    return TemporaryError(message, code="prometheus_unavailable", delay=delay, dependency=PROMETHEUS, kind=kind)


def _http_error(status: int, answer: Any, body: bytes, *, call: str, retry_after: str | None) -> TemporaryError:
    """Prometheus' error body ({"status":"error","errorType":...,"error":...}) or the status alone."""
    kind = dependencies.http_kind(status) if status >= 400 else dependencies.INVALID_RESPONSE
    if isinstance(answer, dict) and answer.get("status") == "error":
        detail = f"{answer.get('errorType') or 'error'}: {answer.get('error') or ''}".strip()
    else:
        detail = _snippet(body)
    hint = ""
    if status in (401, 403):
        hint = " (check AUTOFIX_PROMETHEUS_TOKEN and AUTOFIX_PROMETHEUS_HEADERS)"
    elif status == 404:
        hint = " (is AUTOFIX_PROMETHEUS_URL the API's base URL? Mimir's is <gateway>/prometheus)"
    return _error(f"HTTP {status} {_flat(detail)}{hint} ({call})", kind, delay=_retry_after(retry_after))


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (delta-seconds), bounded to an hour; else the default delay."""
    try:
        return min(max(float(value), 0.0), 3600.0) if value is not None else RETRY_DELAY
    except ValueError:
        return RETRY_DELAY


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _series(data: dict[str, Any], call: str) -> list[RawSeries]:
    """RawSeries of a matrix, vector or scalar answer; non-finite samples (NaN of 0/0, +Inf) are kept as sent."""
    kind = data.get("resultType")
    result = data.get("result")
    try:
        if kind == "matrix":
            return [RawSeries(labels=_labels(s), points=[_point(p) for p in s.get("values") or []])
                    for s in result or []]
        if kind == "vector":
            return [RawSeries(labels=_labels(s), points=[_point(s["value"])]) for s in result or []]
        if kind == "scalar":
            return [RawSeries(labels={}, points=[_point(result)])]
    except (TypeError, KeyError, ValueError, AttributeError, IndexError) as err:
        raise deadlines.failed(_error(f"unreadable {kind} answer (GET {call})",
                                      dependencies.INVALID_RESPONSE)) from err
    raise deadlines.failed(_error(f"unexpected resultType {str(kind)[:40]!r} (GET {call})",
                                  dependencies.INVALID_RESPONSE))


def _labels(series: Any) -> dict[str, str]:
    metric = series.get("metric") or {}
    return {str(k): str(v) for k, v in metric.items()}


def _point(pair: Any) -> tuple[float, float]:
    t, v = pair
    return float(t), float(v)


def _stamp(seconds: float) -> str:
    if not math.isfinite(seconds):
        raise ValueError("a query time must be finite")
    return f"{seconds:.3f}"


def _snippet(body: bytes) -> str:
    return _flat(body[:_MESSAGE_CHARS].decode("utf-8", errors="replace")) or "empty body"


def _flat(text: str) -> str:
    return " ".join(text.split())[:_MESSAGE_CHARS]


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return _flat(text.splitlines()[0]) if text else type(err).__name__
