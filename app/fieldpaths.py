"""Field paths of Kubernetes objects as strings, e.g. ``spec.template.spec.containers[name=app].image``.

A path is a dot-separated list of mapping keys; list items are selected by ``[name=value]`` (any
``[key=value]``) or by index ``[0]``. Keys that contain ``.``, ``[`` or ``]`` (annotation keys such as
``prometheus.io/scrape``) are written in brackets with double quotes: ``metadata.annotations["a.b/c"]``.

Selectors name list items by what they are rather than where they are, so a plan stays valid when a team
reorders containers; :func:`resolve` turns them into indices for one concrete object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class Selector:
    """A list item whose mapping has ``key`` equal to ``value`` (compared as text)."""

    key: str
    value: str


Segment = str | int | Selector

_PLAIN_KEY = re.compile(r"[^.\[\]]+")
_NEEDS_QUOTES = re.compile(r"[.\[\]\"]")


def parse(path: str) -> tuple[Segment, ...]:
    """Split a path into segments; raises ValueError on malformed paths (empty keys, unclosed brackets)."""
    segs: list[Segment] = []
    pos, n = 0, len(path)
    if not path:
        raise ValueError("empty field path")
    expect_key = True  # at the start and after a dot a key must follow
    while pos < n:
        ch = path[pos]
        if ch == "[":
            seg, pos = _parse_bracket(path, pos)
            segs.append(seg)
            expect_key = False
        elif ch == ".":
            if expect_key:
                raise ValueError(f"empty key in field path {path!r}")
            pos += 1
            expect_key = True
            if pos == n:
                raise ValueError(f"field path ends with a dot: {path!r}")
        else:
            if not expect_key:
                raise ValueError(f"missing dot before {path[pos:]!r} in {path!r}")
            m = _PLAIN_KEY.match(path, pos)
            if m is None:  # pragma: no cover - the branches above handle every other character
                raise ValueError(f"bad field path {path!r}")
            segs.append(m.group(0))
            pos = m.end()
            expect_key = False
    return tuple(segs)


def _parse_bracket(path: str, pos: int) -> tuple[Segment, int]:
    if path.startswith('["', pos):  # quoted key: JSON string syntax, so any character can be escaped
        decoder = json.JSONDecoder()
        try:
            key, end = decoder.raw_decode(path, pos + 1)
        except json.JSONDecodeError as err:
            raise ValueError(f"bad quoted key in {path!r}") from err
        if not path.startswith("]", end):
            raise ValueError(f"unclosed bracket in {path!r}")
        return str(key), end + 1
    end = path.find("]", pos)
    if end < 0:
        raise ValueError(f"unclosed bracket in {path!r}")
    inner = path[pos + 1 : end]
    if "=" in inner:
        key, _, value = inner.partition("=")
        if not key:
            raise ValueError(f"selector without key in {path!r}")
        return Selector(key, value), end + 1
    if inner.isdigit():
        return int(inner), end + 1
    raise ValueError(f"bad list selector [{inner}] in {path!r}")


def format(segs: Iterable[Segment]) -> str:  # shadows the builtin on purpose: mirrors parse()
    """The canonical text of a path; ``format(parse(p))`` normalises ``p``."""
    out: list[str] = []
    for seg in segs:
        if isinstance(seg, Selector):
            out.append(f"[{seg.key}={seg.value}]")
        elif isinstance(seg, int):
            out.append(f"[{seg}]")
        elif _NEEDS_QUOTES.search(seg) or not seg:
            out.append(f"[{json.dumps(seg)}]")
        else:
            out.append(f".{seg}" if out else seg)
    return "".join(out)


def _segments(path: str | Sequence[Segment]) -> tuple[Segment, ...]:
    return parse(path) if isinstance(path, str) else tuple(path)


def _select(items: Sequence[Any], sel: Selector) -> int:
    for index, item in enumerate(items):
        if isinstance(item, Mapping) and sel.key in item and _text(item[sel.key]) == sel.value:
            return index
    raise KeyError(f"no list item with {sel.key}={sel.value}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _step(node: Any, seg: Segment) -> tuple[Any, str | int]:
    """The child of ``node`` named by ``seg`` and its concrete key; KeyError when absent."""
    if isinstance(seg, str):
        if isinstance(node, Mapping) and seg in node:
            return node[seg], seg
        raise KeyError(seg)
    if not isinstance(node, Sequence) or isinstance(node, str):
        raise KeyError(format([seg]))
    index = _select(node, seg) if isinstance(seg, Selector) else seg
    if index >= len(node):
        raise KeyError(format([seg]))
    return node[index], index


def get(obj: Any, path: str | Sequence[Segment]) -> Any:
    """The value at ``path``; raises KeyError when any segment is absent."""
    node = obj
    for seg in _segments(path):
        node, _ = _step(node, seg)
    return node


def resolve(obj: Any, path: str | Sequence[Segment]) -> tuple[str | int, ...]:
    """``path`` with selectors turned into indices for ``obj``.

    Trailing mapping keys need not exist (an edit may create them); a selector or index below a missing
    key cannot be resolved and raises KeyError.
    """
    node: Any = obj
    out: list[str | int] = []
    missing = False
    for seg in _segments(path):
        if missing:
            if not isinstance(seg, str):
                raise KeyError(f"cannot select {format([seg])} below a missing key")
            out.append(seg)
            continue
        if isinstance(seg, str) and isinstance(node, Mapping) and seg not in node:
            missing = True
            out.append(seg)
            continue
        node, concrete = _step(node, seg)
        out.append(concrete)
    return tuple(out)


def matches(path: str, glob: str) -> bool:
    """Whether ``path`` matches an allow-list glob.

    ``*`` matches any text (dots included, so ``resources.*`` covers every field below resources), ``?``
    one character, and ``[*]`` any single list selector or index. Both sides are normalised first.
    """
    return _glob_regex(glob).fullmatch(format(parse(path))) is not None


@lru_cache(maxsize=256)
def _glob_regex(glob: str) -> re.Pattern[str]:
    parts: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("[*]", i):
            parts.append(r"\[[^\]]*\]")
            i += 3
        elif glob[i] == "*":
            parts.append(".*")
            i += 1
        elif glob[i] == "?":
            parts.append(".")
            i += 1
        else:
            parts.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(parts))
