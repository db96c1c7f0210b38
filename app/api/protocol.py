"""uvicorn's HTTP protocol with read deadlines: a client that trickles its request cannot hold a connection.

uvicorn only times out idle keep-alive connections, and every byte received cancels that timer, so a client
that sends a header byte every 0.4 s (or a body byte, once the headers are in) keeps its connection, and the
request's task, open forever. Here each request must deliver its headers within ``header_seconds`` of its
first byte, and its whole body within ``body_seconds`` of its headers (settings
AUTOFIX_HTTP_HEADER_SECONDS, AUTOFIX_HTTP_BODY_SECONDS); past either the connection is answered
408 when nothing was answered yet, and closed. The ASGI app then sees a disconnect, never a partial body.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                     b"content-length: 16\r\nconnection: close\r\n\r\nrequest timeout\n")


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus the header and body deadlines described in the module docstring."""

    header_seconds = 10.0
    body_seconds = 30.0
    _read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_seconds)  # the first request's bytes may never come: the same bound applies

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._read_deadline is None:
            self._arm(self.header_seconds)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_seconds)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(seconds, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        log.info("http request read timed out, connection closed", extra={"client": _client(self.client)})
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def with_deadlines(*, header_seconds: float, body_seconds: float) -> type[DeadlineHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, with these deadlines."""
    return type("ConfiguredDeadlineHttpToolsProtocol", (DeadlineHttpToolsProtocol,),
                {"header_seconds": header_seconds, "body_seconds": body_seconds})


def _client(address: tuple[str, int] | None) -> str:
    return f"{address[0]}:{address[1]}" if address else "unknown"
