"""A loopback OpenAI-compatible server for the real openai client: POST /v1/chat/completions, GET /v1/models.

Scripted per test: queue replies with ``reply_json`` (structured output, checked against the JSON schema the
client sent in ``response_format``), ``reply_refusal``, ``reply_content`` (any text, e.g. invalid JSON),
``reply_status`` (an API error such as 500) and ``delay`` on any of them (a slow answer, for timeouts).
Every request is recorded in ``.requests`` (path, headers, JSON body). With an empty queue it answers 500,
so an unexpected call shows up as a fallback, never as a silent success.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.http_base import LoopbackServer


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def schema_name(self) -> str:
        return str(((self.body or {}).get("response_format") or {}).get("json_schema", {}).get("name", ""))

    def text(self) -> str:
        """Everything the model was sent, as one string (for "the prompt holds no secret" checks)."""
        return "\n".join(str(m.get("content", "")) for m in (self.body or {}).get("messages", []))


@dataclass
class Reply:
    status: int = 200
    content: str | None = None
    refusal: str | None = None
    finish_reason: str = "stop"
    delay: float = 0.0
    check_schema: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int = 0
    error: dict[str, Any] = field(default_factory=dict)


class _Handler(http.server.BaseHTTPRequestHandler):
    owner: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures, not traffic
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{time.monotonic_ns()}")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client timed out and went away
            self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.owner.api_key}":
            return True
        self._send(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                   "param": None, "code": "invalid_api_key"}})
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.owner.requests.append(Recorded("GET", self.path, _lower(self.headers), None))
        if not self._authorised():
            return
        if self.path.rstrip("/").endswith("/v1/models"):
            self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 1715367049,
                                                         "owned_by": "system"} for m in self.owner.models]})
        else:
            self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        self.owner.requests.append(Recorded("POST", self.path, _lower(self.headers), body))
        if not self._authorised():
            return
        if not self.path.rstrip("/").endswith("/v1/chat/completions"):
            self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        reply = self.owner._next()
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status != 200:
            self._send(reply.status, reply.error)
            return
        problem = _schema_problem(body, reply.content or "") if reply.check_schema else None
        if problem:
            self.owner.schema_errors.append(problem)
            self._send(500, {"error": {"message": f"fake: scripted reply breaks the schema: {problem}",
                                       "type": "server_error", "param": None, "code": None}})
            return
        self._send(200, _completion(body, reply))


class FakeOpenAI(LoopbackServer):
    """OpenAI-compatible fake; ``base_url`` ends in /v1 like the real API's."""

    handler_class = _Handler
    thread_name = "fake-openai"

    def __init__(self, *, api_key: str = "sk-test-fake-0123456789abcdefghijkl", models: tuple[str, ...] = ("gpt-4o-mini",)) -> None:
        self.api_key = api_key
        self.models = models
        self.requests: list[Recorded] = []
        self.schema_errors: list[str] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()

    # ---- lifecycle -----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    # ---- scripting -----------------------------------------------------------------------------------

    def reply_json(self, value: dict[str, Any], *, delay: float = 0.0, completion_tokens: int = 0) -> None:
        content = json.dumps(value)
        self._push(Reply(content=content, check_schema=True, delay=delay,
                         completion_tokens=completion_tokens or max(1, len(content) // 4)))

    def reply_content(self, content: str, *, finish_reason: str = "stop") -> None:
        self._push(Reply(content=content, finish_reason=finish_reason, completion_tokens=max(1, len(content) // 4)))

    def reply_refusal(self, text: str = "I'm sorry, I can't help with that request.") -> None:
        self._push(Reply(refusal=text, completion_tokens=12))

    def reply_status(self, status: int, message: str = "The server had an error while processing your request.",
                     *, delay: float = 0.0) -> None:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        self._push(Reply(status=status, delay=delay,
                         error={"error": {"message": message, "type": kind, "param": None, "code": None}}))

    def _push(self, reply: Reply) -> None:
        with self._lock:
            self._replies.append(reply)

    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # ---- serving -------------------------------------------------------------------------------------

    def _next(self) -> Reply:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        return Reply(status=500, error={"error": {"message": "fake: no scripted reply", "type": "server_error",
                                                  "param": None, "code": None}})


def _schema_problem(body: Any, content: str) -> str | None:
    """A scripted "valid" answer must match the strict schema the client asked for, as a real server's would."""
    import jsonschema

    fmt = (body or {}).get("response_format") or {}
    if fmt.get("type") != "json_schema" or (fmt.get("json_schema") or {}).get("strict") is not True:
        return f"the client asked for no strict json_schema: {fmt}"
    try:
        jsonschema.validate(json.loads(content), fmt["json_schema"]["schema"])
    except jsonschema.ValidationError as err:
        return err.message
    return None


def _completion(body: Any, reply: Reply) -> dict[str, Any]:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in (body or {}).get("messages", []))
    prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else max(1, prompt_chars // 4)
    message = {"role": "assistant", "content": reply.content, "refusal": reply.refusal, "annotations": []}
    return {
        "id": f"chatcmpl-fake{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str((body or {}).get("model", "")),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": reply.completion_tokens,
                  "total_tokens": prompt_tokens + reply.completion_tokens,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }


def _lower(headers: Any) -> dict[str, str]:
    """Header names in lower case: HTTP/1.1 names are case-insensitive and httpx2 sends them lowered."""
    return {str(k).lower(): str(v) for k, v in headers.items()}
