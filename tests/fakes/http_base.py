"""What the loopback fakes share: start/stop as a context manager, a ThreadingHTTPServer on 127.0.0.1 in a daemon
thread, the request record and injected fault of the forge fakes, and a handler that reads a JSON body, asks the
fake's ``handle(method, path, headers, body)`` and writes its ``(status, headers, payload)`` answer."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # as the fake routes it (GitHub: without the Enterprise prefix; GitLab: still encoded, without /api/v4)
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)  # arrival (monotonic clock): gaps between requests


@dataclass
class Fault:
    """An answer ``fail_next`` injects; with ``processed`` the request is carried out first, only its answer lost."""

    status: int
    headers: dict[str, str]
    body: Any
    method: str | None = None
    path: str | None = None
    processed: bool = False

    def matches(self, method: str, path: str) -> bool:
        return self.method in (None, method) and (self.path is None or path.endswith(self.path))


def fake_sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - a fake commit id, not security


class StartStop:
    """``with fake:`` starts it and stops it on the way out, whatever happened inside."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class LoopbackServer(StartStop):
    """A ThreadingHTTPServer on a free 127.0.0.1 port serving ``handler_class`` with ``owner`` set to this fake."""

    handler_class: ClassVar[type[http.server.BaseHTTPRequestHandler]]
    thread_name: ClassVar[str] = "fake-http"
    _server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        handler = type("Handler", (self.handler_class,), {"owner": self})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name=self.thread_name, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def root_url(self) -> str:
        assert self._server is not None, "start the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """Every method goes to ``owner.handle``; subclasses name the request-id header and how odd bodies read."""

    protocol_version = "HTTP/1.1"  # keep-alive, as requests expects
    disable_nagle_algorithm = True  # headers and body go out in two writes: avoid 40 ms delayed-ACK stalls
    owner: Any  # the fake: handle(method, path, headers, body) -> (status, headers, payload)
    request_id: ClassVar[tuple[str, str]] = ("X-Request-Id", "FAKE")
    json_type: ClassVar[str] = "application/json"

    def not_json(self, raw: bytes) -> Any:
        return raw.decode("utf-8", errors="replace")

    def encode(self, payload: Any) -> tuple[str, bytes]:
        """The Content-Type and bytes of an answer."""
        return self.json_type, b"" if payload is None else json.dumps(payload).encode()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = self.not_json(raw)
        status, headers, payload = self.owner.handle(self.command, self.path, dict(self.headers), body)
        content_type, data = self.encode(payload)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header(*self.request_id)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server API

    def log_message(self, *args: Any) -> None:
        pass
