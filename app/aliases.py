"""YAML alias bounds: refuse a document whose aliases expand it far beyond what is written, before walking it.

A YAML alias (``*a``) refers to an anchored node (``&a``) instead of repeating it, so 500 bytes of nested
anchors ("billion laughs") parse in a millisecond into a graph that any walk over the *values* (diffing,
schema validation, rendering, JSON) sees as 9^9 leaves. Every parse of YAML from the GitOps repo or a
renderer goes through here: the composed node graph (linear in the text) is measured with one pass that
memoises each node's expanded size by identity, so the measure itself is linear in the document, and a
document over the bound is refused with ``YamlTooComplex`` naming its file before anything is built from it.

The bound: aliases may expand a document to ``max(FREE_EXPANSION, EXPANSION_RATIO x nodes written)``
nodes, never more than ``MAX_EXPANDED_NODES``; a document without aliases is never refused (its cost is its
size). A recursive alias is refused too. Texts without both ``&`` and ``*`` cannot alias and skip the pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from app import deadlines
from app.errors import PermanentError

FREE_EXPANSION = 10_000  # an expansion this small is cheap to walk whatever the ratio (9^4 leaves: ~7,400 nodes)
EXPANSION_RATIO = 4  # shared env lists and `<<: *defaults` merges stay well below this
MAX_EXPANDED_NODES = 1_000_000
_CHECK_EVERY = 4096  # nodes between deadline checks

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_IN_PROGRESS = -1


class YamlTooComplex(PermanentError):
    """A YAML document whose aliases expand beyond the bound (or refer to themselves)."""

    code = "yaml_too_complex"


def allowed(written: int) -> int:
    """How many nodes aliases may expand a document of ``written`` nodes to."""
    return min(MAX_EXPANDED_NODES, max(FREE_EXPANSION, EXPANSION_RATIO * written))


def may_alias(text: str | bytes) -> bool:
    """False when the text cannot hold an alias (no anchor or no alias indicator): nothing to measure."""
    if isinstance(text, bytes):
        return b"&" in text and b"*" in text
    return "&" in text and "*" in text


def check(node: Any, *, source: str | None = None, document: int = 0) -> None:
    """Refuse a composed document (PyYAML or ruamel.yaml nodes) whose aliases expand beyond the bound."""
    if node is None:
        return
    expanded, written = _measure(node, source=source, document=document)
    if expanded > written and expanded > allowed(written):
        raise _too_complex(source, document, expanded, written)


def check_text(text: str | bytes, *, source: str | None = None) -> None:
    """Compose every document of ``text`` (C parser, linear) and check it; yaml.YAMLError when it does not parse."""
    if not may_alias(text):
        return
    for index, node in enumerate(yaml.compose_all(text, Loader=_Loader)):
        check(node, source=source, document=index)


def load_all(text: str | bytes, *, source: str | None = None) -> list[Any]:
    """Every document of ``text`` as plain Python values (safe loader), each checked before it is built."""
    measure = may_alias(text)
    loader = _Loader(text)
    try:
        docs: list[Any] = []
        while loader.check_node():
            node = loader.get_node()
            if measure:
                check(node, source=source, document=len(docs))
            docs.append(loader.construct_document(node))
        return docs
    finally:
        loader.dispose()


def load(text: str | bytes, *, source: str | None = None) -> Any:
    """The single document of ``text`` (None when empty), checked before it is built."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if may_alias(text):
            check(node, source=source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


# ---------------------------------------------------------------- the measure


def _children(node: Any) -> Iterator[Any]:
    value = node.value
    if not isinstance(value, list):
        return
    for item in value:
        if isinstance(item, tuple):  # a mapping's (key, value) pair
            yield from item
        else:
            yield item


def _measure(root: Any, *, source: str | None, document: int) -> tuple[int, int]:
    """(nodes after expanding every alias, nodes written), by one iterative post-order pass.

    Each node's expanded size is computed once and looked up by identity wherever an alias repeats it, so
    the pass visits every written node and edge once. A size beyond MAX_EXPANDED_NODES that exceeds the
    nodes seen so far can only come from aliases: refused at once, before the numbers grow further.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    visited = 0
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            sizes[key] = size
            if size > MAX_EXPANDED_NODES and size > len(sizes):
                raise _too_complex(source, document, size, len(sizes), partial=True)
            continue
        state = sizes.get(key)
        if state == _IN_PROGRESS:
            raise _recursive(source, document)
        if state is not None:
            continue
        visited += 1
        if visited % _CHECK_EVERY == 0:
            deadlines.check()
        sizes[key] = _IN_PROGRESS
        stack.append((node, True))
        for child in _children(node):
            if sizes.get(id(child)) == _IN_PROGRESS:  # an ancestor: the alias refers to a node that holds it
                raise _recursive(source, document)
            stack.append((child, False))
    return sizes[id(root)], len(sizes)


def _where(source: str | None, document: int) -> str:
    return f"{source}: YAML document {document}" if source else f"YAML document {document}"


def _too_complex(source: str | None, document: int, expanded: int, written: int, *,
                 partial: bool = False) -> YamlTooComplex:
    over = "over " if partial else ""
    return YamlTooComplex(
        f"{_where(source, document)} expands its aliases to {over}{expanded:,} nodes from {written:,} "
        f"written (at most {allowed(written):,} allowed): refused before reading it (a YAML alias bomb?)",
        code="yaml_too_complex")


def _recursive(source: str | None, document: int) -> YamlTooComplex:
    return YamlTooComplex(f"{_where(source, document)} has an alias inside its own anchor (recursive): refused",
                          code="yaml_too_complex")
