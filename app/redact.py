"""Redaction of secret-looking text, and size bounds, applied to evidence before it is stored or shown.

Evidence is untrusted input: a log line can hold a password, a token or a private key. Everything the
cluster says passes through here before it reaches a log, MLflow, the LLM or a pull request.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "[REDACTED]"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # PEM private keys, whole block.
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S), MASK),
    # Authorization headers and bearer/basic credentials.
    (re.compile(r"(?i)(authorization\s*[:=]\s*)((bearer|basic|token)\s+)?[^\s,;\"']+"), r"\1" + MASK),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MASK),
    # Credentials inside URLs: scheme://user:password@host
    (re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@"), r"\1" + MASK + "@"),
    # key=value / key: value pairs whose key says secret.
    (re.compile(
        r"(?i)\b([\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
        r"|client[_-]?secret|credentials?|auth)[\w.-]*)(\"?\s*[:=]\s*\"?)([^\s\"',;&}]+)"),
     r"\1\2" + MASK),
    # Well-known token shapes.
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"), MASK),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}\b"), MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}\b"), MASK),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"), MASK),  # JWT
]


def text(value: str) -> str:
    for pattern, repl in _PATTERNS:
        value = pattern.sub(repl, value)
    return value


def bounded(value: str, *, max_chars: int) -> str:
    """Keep the tail (the end of a log is where the crash is), marking the cut."""
    if len(value) <= max_chars:
        return value
    return "[... truncated ...]\n" + value[-max_chars:]


_SECRET_KEYS = re.compile(r"(?i)(password|passwd|secret|token|apikey|api_key|credential|private)")


def obj(value: Any) -> Any:
    """Redact a Kubernetes object: env values whose name looks secret, and every string's secrets."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "value" and isinstance(value.get("name"), str) and _SECRET_KEYS.search(value["name"]):
                out[key] = MASK
            else:
                out[key] = obj(item)
        return out
    if isinstance(value, list):
        return [obj(item) for item in value]
    if isinstance(value, str):
        return text(value)
    return value
