"""Redaction of secret-looking text, and size bounds, applied to untrusted text before it is stored or shown.

Evidence is untrusted input: a log line can hold a password, a token or a private key. Everything the
cluster, an alert or a repository says passes through here before it reaches a log, MLflow, the LLM or a
pull request.

How it works:
- Every pattern runs on RE2 (google-re2), whose matching time is linear in the input: a hostile 1 MB
  event message costs milliseconds, never a backtracking blow-up. RE2 has no lookarounds and no
  backreferences; where a rule needs judgement (is this name a secret's name? is this run random?),
  the pattern finds candidates and a short Python check decides.
- One classifier, `secret_name`, decides whether a name (env variable, annotation key, JSON field,
  command-line flag, XML tag) holds a secret; the text rules, `obj` and `labels` all use it.
- Passes, in order: private-key blocks (PEM, PGP, OpenSSH, PuTTY, and a key body whose BEGIN line was cut
  off), credential headers (Authorization, Cookie, X-*-Token), credentials in URLs, `name: value` /
  `name=value` pairs whose name is a secret's (YAML lines, JSON, env, logfmt, query strings), env entries
  written out (`name: DB_PASS` / `value: x`), command-line flags, XML elements, .netrc, well-known token
  shapes (the public rule sets of gitleaks and detect-secrets), bearer tokens, then long random-looking
  base64 runs (mixed case and digits: never hex digests or SHAs).
- Text is processed as UTF-8 bytes with RE2 in Latin-1 mode (see _OPTIONS): encode once, decode once.
- `obj` also masks every literal env `value`, the value of any field or annotation whose name is a
  secret's, and the last-applied-configuration annotation (it repeats the whole spec, env values
  included); each string is capped (tail kept, marked) so one field cannot flood what is stored.

The canary corpus in tests/data/secret_canaries.yaml lists the shapes this must catch.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import re2
from re2 import _re2

MASK = "[REDACTED]"
TRUNCATED = "[... truncated ...]\n"
MAX_STRING = 8192  # characters kept of any one string of an object or a label (the tail)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_SCHEMA_FIELDS = frozenset({"sessionAffinity"})  # Kubernetes fields whose name reads like a secret's
_MARGIN = 8192  # redacted beyond the cap too, so a secret cut by the cap is still recognised
_MAX_NAME = 256

# ---------------------------------------------------------------- names that hold secrets

_SECRET_WORDS = frozenset({
    "password", "passwd", "passphrase", "pass", "pwd", "pw", "secret", "token", "credential", "credentials",
    "creds", "cred", "apikey", "privatekey", "accesskey", "secretkey", "authkey", "auth", "authorization",
    "cookie", "jwt", "bearer", "session", "sessionid", "jsessionid", "phpsessid", "sid", "sig", "signature",
    "dsn", "otp", "passcode", "pin",
})
_PASSWORD_WORDS = frozenset({"password", "passwd", "passphrase", "pass", "pwd", "pw"})
# Joined spellings without separators: DBPASSWORD, mysqlrootpassword, clientsecret, ...
_SECRET_JOINED = ("password", "passwd", "passphrase", "secret", "credential", "apikey", "accesskey",
                  "privatekey", "connectionstring", "authtoken", "accesstoken", "refreshtoken", "idtoken",
                  "sessiontoken", "apitoken", "bottoken", "bearertoken")
# `<word> key` names a secret (api-key, STRIPE_KEY, accountKey); these words in front do not.
_HARMLESS_KEY_PREFIX = frozenset({
    "public", "cache", "sort", "partition", "routing", "primary", "foreign", "idempotency", "lookup", "row",
    "group", "label", "map", "hash", "dedup", "dedupe", "object", "config", "configmap", "node", "match",
    "selector", "shard", "index", "unique", "composite", "range", "message", "metric", "field", "item",
})
# A name ending in one of these refers to a secret (a file, a Secret's name, a length) without holding it.
_REFERENCE_WORDS = frozenset({
    "ref", "refs", "name", "names", "file", "files", "path", "paths", "dir", "url", "uri", "endpoint",
    "length", "len", "size", "ttl", "expiry", "expires", "expiration", "timeout", "type", "kind", "count",
    "enabled", "disabled", "required", "policy", "format", "algorithm", "alg", "version", "mode", "source",
})


def _words(name: str) -> list[str]:
    """snake_case, kebab-case, dotted, slashed and camelCase names as lower-case words."""
    words: list[str] = []
    current = ""
    prev = ""
    for i, ch in enumerate(name):
        if not ch.isalnum() or not ch.isascii():
            if current:
                words.append(current)
            current, prev = "", ""
            continue
        nxt = name[i + 1] if i + 1 < len(name) else ""
        boundary = bool(current) and (
            (prev.islower() and ch.isupper())
            or (prev.isupper() and ch.isupper() and nxt.islower())  # DBPassword -> DB, Password
            or (prev.isdigit() != ch.isdigit())
        )
        if boundary:
            words.append(current)
            current = ""
        current += ch
        prev = ch
    if current:
        words.append(current)
    return [w.lower() for w in words]


def secret_name(name: str) -> bool:
    """True when a name (env variable, annotation key, field, flag, tag) says its value is a secret."""
    return _secret_name(name[:_MAX_NAME])


@functools.lru_cache(maxsize=4096)  # the same few names come back in every object and log line
def _secret_name(name: str) -> bool:
    words = _words(name)
    if not words or words[-1] in _REFERENCE_WORDS:
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    joined = "".join(words)
    if any(j in joined for j in _SECRET_JOINED):
        return True
    # `<word> key`: api-key, STRIPE_KEY, private_key_id, signing.key; not a bare `key`, nor a sort key.
    return any(w in ("key", "keys") and i > 0 and words[i - 1] not in _HARMLESS_KEY_PREFIX
               for i, w in enumerate(words))


# ---------------------------------------------------------------- patterns (RE2: linear time)


# Patterns run on the UTF-8 bytes of the text, RE2 reading them as Latin-1: every rule is about ASCII, a
# non-ASCII byte is simply "another character" (it never splits a UTF-8 sequence: ASCII classes do not match
# its bytes, negated classes match all of them). The search loop calls RE2's own binding (re2._re2, the one
# google-re2's Python layer wraps): that layer's per-match objects cost more than the match itself.
_OPTIONS = re2.Options()
_OPTIONS.encoding = re2.Options.Encoding.LATIN1
_OPTIONS.max_mem = 64 << 20  # room for the DFA of the larger alternations (else RE2 falls back to NFA)
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED


def _compile(pattern: str) -> Any:
    regexp = _re2.RE2(pattern.encode("ascii"), _OPTIONS)
    if not regexp.ok():
        raise ValueError(f"bad pattern {pattern!r}: {regexp.error()}")
    return regexp


class _Match:
    """A match's groups as str (Latin-1: one character per byte, so they encode back to the same bytes)."""

    __slots__ = ("_spans", "_data")

    def __init__(self, spans: list[tuple[int, int]], data: bytes) -> None:
        self._spans, self._data = spans, data

    def group(self, index: int = 0) -> str:
        start, end = self._spans[index]
        return "" if start < 0 else self._data[start:end].decode("latin-1")

    def has(self, index: int) -> bool:
        return self._spans[index][0] >= 0


_Repl = Callable[[_Match], str]


def _sub(regexp: Any, repl: _Repl, data: bytes) -> bytes:
    """Replace every non-overlapping match, left to right (re.sub semantics; no pattern matches empty)."""
    pieces: list[bytes] = []
    pos = last = 0
    end = len(data)
    while pos <= end:
        spans = regexp.Match(_UNANCHORED, data, pos, end)
        start, stop = spans[0]
        if start < 0:
            break
        pieces += [data[last:start], repl(_Match(spans, data)).encode("latin-1")]
        last = stop
        pos = stop if stop > start else stop + 1
    if not pieces:
        return data
    pieces.append(data[last:])
    return b"".join(pieces)


def _sub_str(pattern: Any, repl: _Repl, value: str) -> str:
    return _sub(pattern, repl, value.encode("latin-1")).decode("latin-1")


def _mask(_m: _Match) -> str:
    return MASK


_KEY_HEAD = r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"
_KEY_TAIL = r"-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"
_EOL = r"(?:\r?\n|\\r?\\n)"  # a real line break, or one escaped inside a JSON string
# A whole private-key block, or from BEGIN to the end of the text when END is missing.
_PRIVATE_KEY = _compile(r"(?s)" + _KEY_HEAD + r".*?(?:" + _KEY_TAIL + r"|\z)")
# The body of a key whose BEGIN line was cut off (a log tail): base64 and header lines, then END.
_KEY_BODY = _compile(
    r"(?:[A-Za-z0-9+/=]+|[A-Za-z-]+: [^\r\n\\]*)" + _EOL
    + r"(?:(?:[A-Za-z0-9+/=]*|[A-Za-z-]+: [^\r\n\\]*)" + _EOL + r")*" + _KEY_TAIL)
_PUTTY = _compile(r"(?s)Private-Lines: *\d+.*?(?:Private-(?:MAC|Hash): *[0-9A-Fa-f]+|\z)")

_QUOTED = (r'"(?:[^"\\\r\n]|\\[^\r\n])*"'  # "double quoted", escapes allowed
           r"|'[^'\r\n]*'"
           r"|`[^`\r\n]*`"
           r'|\\"(?:[^"\\\r\n]|\\[^"\r\n])*\\"')  # \"quoted inside a JSON string\"
# An unquoted value ends where a list, a query string, a struct or a tag goes on; it does not open a nested
# object (its fields are judged on their own); a mask already inside it (https://[REDACTED]@host) is kept.
_MASKED = r"\[REDACTED\]"
_BARE = r"[^\s\"'`,;&)}\]<>\\{\[](?:" + _MASKED + r"|[^\s\"'`,;&)}\]<>\\])*"
_NAME_WORD = r"(?i:pass|pwd|pw|secret|token|cred|auth|key|cookie|sess|sid|sig|dsn|jwt|bearer|otp|pin)"
_NAME = r"[\w.-]*" + _NAME_WORD + r"[\w.-]*"

# Credential headers: the value runs to the end of the line (or the closing quote).
_HEADER = _compile(
    r"(?i)\b((?:proxy-)?authorization|set-cookie|cookie|x-[\w-]*(?:token|api-key|apikey|auth|secret)[\w-]*)"
    r"(\\?[\"']?[ \t]*[:=][ \t]*)(" + _QUOTED + r"|[^\r\n\"'\\]+)")
_SCHEMES = frozenset({"bearer", "basic", "token", "digest", "negotiate", "bot", "aws4-hmac-sha256", "apikey"})
# scheme://user:password@host, the password may hold '/' or ':'; scheme://<long token>@host.
_URL_PASSWORD = _compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@\"'<>]*:)([^\s@\"'<>]+)@")
_URL_TOKEN_USER = _compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([A-Za-z0-9_.~-]{20,})@")
# YAML-ish lines `name: value with spaces` (the value runs to the end of the line).
_YAML_LINE = _compile(r"(?m)^([ \t]*(?:- )?[\"']?)(" + _NAME + r")([\"']?:[ \t]+)(" + _QUOTED + r"|[^\s{\[][^\r\n]*)")
# name=value, name: value, "name": "value", name => 'value', name := value; and `"name" : "value"`.
_PAIR = _compile(
    r"(" + _NAME + r")(?:(\\?[\"']?(?:[ \t]*(?:=>|:=|={1,3}|!=)|:)[ \t]*)(" + _QUOTED + r"|" + _BARE + r")"
    r"|(\\?[\"'][ \t]+:[ \t]*)(" + _QUOTED + r"))")
# --password hunter2, -token X, "--password", "hunter2" (an argv rendered as JSON).
_FLAG = _compile(r"(^|[\s\"'\[,(])(--?" + _NAME + r")([ \t]+|[\"'],[ \t]*[\"'])(" + _QUOTED + r"|[^\s\"'-][^\s\"']*)")
# An env entry written out: `name: DB_PASS` then `value: x` (YAML, same or next line) or {"name":..,"value":..}.
_ENV_ENTRY = _compile(
    r"(\bname\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?)(" + _NAME + r")(\\?[\"']?[ \t]*,?\s*\\?[\"']?value\\?[\"']?[ \t]*[:=][ \t]*)"
    r"(" + _QUOTED + r"|" + _BARE + r")")
_XML = _compile(r"(<(" + _NAME + r")(?:\s[^<>]*)?>)([^<]+)(</)")
_NETRC = _compile(r"(?i)(\blogin[ \t]+\S+[ \t]+password[ \t]+)(\S+)")
_BEARER = _compile(r"(?i)\b(bearer[ \t]+)([A-Za-z0-9._~+/-]{16,}=*)")

# Well-known token shapes (gitleaks config/gitleaks.toml, detect-secrets plugins): prefix and length.
_TOKEN_SHAPES = [
    r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",  # AWS access key id
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
    r"\bgithub_pat_[A-Za-z0-9_]{22,}",
    r"\bgl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas)-[A-Za-z0-9_-]{20,}",  # GitLab
    r"\bGR1348941[A-Za-z0-9_-]{20,}",
    r"\bxox[abposre]-[A-Za-z0-9-]{10,}",  # Slack
    r"\bxapp-\d-[A-Za-z0-9-]{10,}",
    r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,}",
    r"\b(?:sk|rk)_(?:test|live|prod)_[A-Za-z0-9]{10,}",  # Stripe
    r"\bwhsec_[A-Za-z0-9+/=]{20,}",
    r"\bsk-(?:proj|svcacct|admin|ant)-[A-Za-z0-9_-]{20,}",  # OpenAI, Anthropic
    r"\bsk-[A-Za-z0-9]{20,}",
    r"\bey[A-Za-z0-9_-]{10,}\.ey[A-Za-z0-9_-]{10,}\.?[A-Za-z0-9_-]*",  # JWT
    r"\bSK[0-9a-fA-F]{32}\b",  # Twilio API key
    r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",  # SendGrid
    r"\bnpm_[A-Za-z0-9]{36}",
    r"\bpypi-AgE[A-Za-z0-9_-]{50,}",
    r"\bAIza[0-9A-Za-z_-]{35}",  # Google API key
    r"\bGOCSPX-[A-Za-z0-9_-]{20,}",  # Google OAuth client secret
    r"\bya29\.[0-9A-Za-z_-]{20,}",  # Google OAuth access token
    r"[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34}",  # Azure AD client secret
    r"\bHRKU-AA[0-9A-Za-z_-]{58}",  # Heroku
    r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}",  # Vault
    r"\bdo[opr]_v1_[a-f0-9]{64}",  # DigitalOcean
    r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",  # Shopify
    r"\bkey-[0-9a-f]{32}\b",  # Mailgun
    r"\b[0-9a-f]{32}-us[0-9]{1,2}\b",  # Mailchimp
    r"\bdapi[a-f0-9]{32}(?:-\d)?",  # Databricks
    r"\bdp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,}",  # Doppler
    r"\bdt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}",  # Dynatrace
    r"\bglc_[A-Za-z0-9+/]{32,}={0,3}",  # Grafana
    r"\bglsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}",
    r"\beyJrIjoi[A-Za-z0-9]{40,}={0,3}",
    r"\blin_api_[A-Za-z0-9]{40}",  # Linear
    r"\bNR(?:AK|JS|II)-[A-Za-z0-9]{19,}",  # New Relic
    r"\bPMAK-[a-f0-9]{24}-[a-f0-9]{34}",  # Postman
    r"\bpul-[a-f0-9]{40}",  # Pulumi
    r"\b(?:EAAA|sq0atp-|sq0csp-)[A-Za-z0-9_-]{22,}",  # Square
    r"\bATATT3[A-Za-z0-9_=-]{50,}",  # Atlassian
    r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
    r"\bAKCp[A-Za-z0-9]{60,}",  # Artifactory
    r"\bhf_[A-Za-z]{34}",  # Hugging Face
    r"\bsntry[us]_[A-Za-z0-9+/=_]{40,}",  # Sentry
    r"\b(?:pat|sat)\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20}",  # Harness
    r"\bops_eyJ[A-Za-z0-9+/]{100,}={0,3}",  # 1Password service account
    r"\b[a-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}",  # Terraform Cloud
    r"\d{5,16}:A[A-Za-z0-9_-]{34}\b",  # Telegram bot (also inside a URL: /bot<id>:<secret>/)
    r"\b[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,}",  # Discord bot
    r"\bdckr_pat_[A-Za-z0-9_-]{27,}",  # Docker Hub
    r"\bAccountKey=[A-Za-z0-9+/]{86}==",  # Azure storage
]
_TOKENS = _compile("|".join(f"(?:{shape})" for shape in _TOKEN_SHAPES))
# Long base64 runs (detect-secrets' Base64HighEntropyString): judged by _random_looking.
_BASE64_RUN = _compile(r"[A-Za-z0-9+/_-]{32,}={0,3}")
_MIN_ENTROPY = 3.5  # bits per character; random base64 of 32+ characters scores 4 and more
_SHORTEST = 15  # the shortest token shape (xoxb-1234567890)
_TRIGGERS = frozenset(":=< \t\r\n")  # what a pair, header, URL, tag, flag or key block needs


# ---------------------------------------------------------------- replacements


def _inner_mask(value: str) -> str:
    """Mask a value, keeping the quotes around it (so JSON and YAML stay readable)."""
    for quote in ('\\"', '"', "'", "`"):
        if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
            return quote + MASK + quote if len(value) > 2 * len(quote) else value
    return MASK


def _header(m: _Match) -> str:
    name, sep, value = m.group(1), m.group(2), m.group(3)
    quote = value[:2] if value.startswith('\\"') else value[:1] if value[:1] in "\"'`" else ""
    inner = value[len(quote):len(value) - len(quote)] if quote else value
    scheme, _, rest = inner.partition(" ")
    if name.lower().endswith("authorization") and scheme.lower() in _SCHEMES and rest.strip():
        return f"{name}{sep}{quote}{scheme} {MASK}{quote}"
    return f"{name}{sep}{quote}{MASK}{quote}" if inner.strip() else m.group(0)


def _already(value: str) -> bool:
    """Masked by an earlier pass (`[REDACTED]`, `Bearer [REDACTED]`), or a scheme word alone."""
    inner = value.lstrip("\\\"'`")
    scheme, _, rest = inner.partition(" ")
    return inner.startswith(MASK[:-1]) or (scheme.lower() in _SCHEMES and (not rest or rest.startswith(MASK)))


def _yaml_line(m: _Match) -> str:
    if not secret_name(m.group(2)) or _already(m.group(4)):
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}{m.group(3)}{_inner_mask(m.group(4).rstrip())}"


def _pair(m: _Match, depth: int = 0) -> str:
    name = m.group(1)
    sep, value = (m.group(2), m.group(3)) if m.has(2) else (m.group(4), m.group(5))
    if _already(value):
        return m.group(0)
    if secret_name(name) and not _attribute_of(value, name) and not _error_chain(name, sep, value):
        return f"{name}{sep}{_inner_mask(value)}"
    # Not a secret's name, but the value may hold a pair itself (`args=--password=x`): look once more.
    nested = depth < 2 and ("=" in value or ":" in value)
    inner = _sub_str(_PAIR, lambda n: _pair(n, depth + 1), value) if nested else value
    return f"{name}{sep}{inner}"


def _error_chain(name: str, sep: str, value: str) -> bool:
    """`failed to fetch token: unexpected status ...` (Go wraps errors as `a: b: c`): a lower-case word after
    `name: ` is the next message, not a secret, unless the name is a password's."""
    return (sep[:1] == ":" and sep[1:2] in (" ", "\t") and name.isalpha() and name.islower()
            and name not in _PASSWORD_WORDS and value.isalpha() and value.islower())


def _attribute_of(value: str, name: str) -> bool:
    """`dsn=settings.dsn`, `password=self.password`: code in a traceback names a variable, not a secret."""
    return value.endswith("." + name) and all(part.isidentifier() for part in value.split("."))


def _named_value(m: _Match) -> str:
    """(context)(name)(separator)(value): mask the value when the name is a secret's."""
    if not secret_name(m.group(2)) or _already(m.group(4)):
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}{m.group(3)}{_inner_mask(m.group(4))}"


def _xml(m: _Match) -> str:
    if not secret_name(m.group(2)) or not m.group(3).strip():
        return m.group(0)
    return f"{m.group(1)}{MASK}{m.group(4)}"


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())


def _random_looking(run: str) -> bool:
    """Mixed case and digits, not repetitive: a key or a token, not hex (digests, SHAs) nor a word."""
    return (any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)
            and _entropy(run) >= min(_MIN_ENTROPY, 0.75 * math.log2(len(run))))


def _base64_run(m: _Match) -> str:
    run = m.group(0)
    body = run.rstrip("=")
    segments = body.replace("/", "_").replace("-", "_").split("_")
    if len(segments) >= 4:
        # A path or an identifier (/api/v2/orderItems/..., test_should_return_401_when_Unauthorized): random
        # base64 rarely has 3 separators in a row of 32-40 characters, so judge the segments instead.
        return MASK if any(len(s) >= 16 and _random_looking(s) for s in segments) else run
    return MASK if _random_looking(body) else run


_PASSES: list[tuple[Any, _Repl]] = [
    (_PRIVATE_KEY, _mask),
    (_PUTTY, _mask),
    (_KEY_BODY, _mask),
    (_HEADER, _header),
    (_URL_PASSWORD, lambda m: f"{m.group(1)}{MASK}@"),
    (_URL_TOKEN_USER, lambda m: f"{m.group(1)}{MASK}@"),
    (_YAML_LINE, _yaml_line),
    (_PAIR, _pair),
    (_ENV_ENTRY, _named_value),
    (_FLAG, _named_value),
    (_XML, _xml),
    (_NETRC, lambda m: f"{m.group(1)}{MASK}"),
    (_TOKENS, _mask),
    (_BEARER, lambda m: f"{m.group(1)}{MASK}"),
    (_BASE64_RUN, _base64_run),
]


# ---------------------------------------------------------------- public API


def text(value: str) -> str:
    """Mask every secret found in free text. Linear time in len(value) (RE2)."""
    if len(value) < _SHORTEST and _TRIGGERS.isdisjoint(value):
        return value  # names, numbers, reasons: no rule can match (each needs one of these, or 15+ characters)
    data = value.encode("utf-8", "surrogatepass")  # JSON may carry lone surrogates: keep them as they were
    for pattern, repl in _PASSES:
        data = _sub(pattern, repl, data)
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:  # not expected (matches start and end next to ASCII): never fail on it
        return data.decode("utf-8", "replace")


def bounded(value: str, *, max_chars: int) -> str:
    """Keep the tail (the end of a log is where the crash is), marking the cut. Idempotent."""
    if len(value) <= max_chars or (value.startswith(TRUNCATED) and len(value) <= max_chars + len(TRUNCATED)):
        return value
    return TRUNCATED + value[-max_chars:]


def capped(value: str, *, max_chars: int = MAX_STRING) -> str:
    """Redact one string and keep at most its last max_chars characters (marked when cut).

    Only the tail and a margin before it are redacted, so the cost is bounded whatever the input's size;
    the margin lets a secret that straddles the cut still be recognised whole.
    """
    if len(value) > max_chars + _MARGIN:
        window = value[-(max_chars + _MARGIN):]
        start = next((i for i, ch in enumerate(window[:_MARGIN]) if ch.isspace()), 0)
        value = window[start:]  # drop the partial word at the cut: it is no longer recognisable
    return bounded(text(value), max_chars=max_chars)


def labels(values: Mapping[str, str], *, max_chars: int = MAX_STRING) -> dict[str, str]:
    """Alert labels and annotations, or any name → free text map: values of secret names masked, the rest
    redacted and capped."""
    out: dict[str, str] = {}
    for key, value in values.items():
        value = str(value)
        out[capped(str(key), max_chars=max_chars)] = (
            MASK if value and secret_name(str(key)) else capped(value, max_chars=max_chars))
    return out


def obj(value: Any, *, max_chars: int = MAX_STRING) -> Any:
    """Redact a Kubernetes object (or any JSON-like value).

    Masks every literal env `value` (detectors read env names and valueFrom only), the string value of
    any field or annotation whose name is a secret's, the last-applied-configuration annotation, the
    argument after a secret flag in argv lists, and every string's secrets; caps every string.
    """
    if isinstance(value, dict):
        return {_key(key, max_chars): _field(key, item, max_chars) for key, item in value.items()}
    if isinstance(value, list):
        return _list(value, max_chars)
    if isinstance(value, str):
        return capped(value, max_chars=max_chars)
    return value


def _key(key: Any, max_chars: int) -> Any:
    # Names are short; only a long one can hold a token shape at all.
    return capped(key, max_chars=max_chars) if isinstance(key, str) and len(key) >= 20 else key


def _field(key: Any, item: Any, max_chars: int) -> Any:
    if key == LAST_APPLIED:
        return MASK
    if key == "env" and isinstance(item, list):
        return [_env_var(var, max_chars) for var in item]
    if isinstance(item, str) and item and isinstance(key, str) and key not in _SCHEMA_FIELDS and secret_name(key):
        return MASK
    return obj(item, max_chars=max_chars)


def _env_var(var: Any, max_chars: int) -> Any:
    if isinstance(var, dict) and isinstance(var.get("value"), str) and var["value"]:
        return {k: MASK if k == "value" else obj(v, max_chars=max_chars) for k, v in var.items()}
    return obj(var, max_chars=max_chars)


def _list(items: list[Any], max_chars: int) -> list[Any]:
    """An argv-like list masks the word after a secret flag (`["--password", "x"]`)."""
    out = [obj(item, max_chars=max_chars) for item in items]
    for i in range(len(items) - 1):
        flag = items[i]
        if (isinstance(flag, str) and flag.startswith("-") and "=" not in flag and len(flag) <= _MAX_NAME
                and isinstance(items[i + 1], str) and secret_name(flag)):
            out[i + 1] = MASK
    return out
