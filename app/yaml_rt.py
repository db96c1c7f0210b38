"""Round-trip editing of YAML files: text in, text out, with the smallest possible diff.

ruamel.yaml parses the target document (round trip, quotes preserved) only to learn *where* each node
sits; the edit itself is a text splice at that position, so comments, quoting, key order, ``~``, flow
sequences and every other document stay byte for byte. A changed scalar keeps the quote style of the one it
replaces; a missing key is inserted as new lines at the end of its parent mapping, indented like the file.
Each change is applied in turn, re-parsed, checked to hold the new value, and refused when the line diff
reaches outside the edited node (``edit_out_of_bounds``): the safety net for whatever this code gets wrong.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError as RuamelError

from app import aliases, fieldpaths
from app.errors import PermanentError

log = logging.getLogger(__name__)

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DOC_START = re.compile(r"---(?:[ \t]|$)")
_BLOCK_HEADER = re.compile(r"[|>][-+0-9]*$")
Key = str | int


@dataclass(frozen=True)
class Indent:
    """Block indentation as ruamel names it: mapping step, sequence step, dash offset."""

    mapping: int = 2
    sequence: int = 2
    offset: int = 0


# ---------------------------------------------------------------- plain parsing (fast, C-backed)


def documents(text: str, *, source: str | None = None) -> list[Any]:
    """Every document of ``text`` as plain Python values (None for empty documents).

    A document whose aliases expand far beyond its text is refused (``aliases.YamlTooComplex``, naming
    ``source``, the file) before anything walks it.
    """
    return aliases.load_all(text, source=source)


def get(text: str, *, document_index: int, path: str, prefix: tuple[Key, ...] = ()) -> Any:
    """The value at ``prefix`` + ``path`` in one document; KeyError when absent."""
    doc = documents(text)[document_index]
    return fieldpaths.get(doc, (*prefix, *fieldpaths.parse(path)))


def find_documents(
    text: str, *, api_version: str | None, kind: str, name: str, namespace: str | None
) -> list[int]:
    """Indices of documents defining that object.

    A document without ``metadata.namespace`` matches any namespace: the namespace usually comes from the
    Argo CD destination or a kustomization, not the manifest.
    """
    found: list[int] = []
    for index, doc in enumerate(documents(text)):
        if not isinstance(doc, Mapping) or doc.get("kind") != kind:
            continue
        raw_meta = doc.get("metadata")
        meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
        if meta.get("name") != name:
            continue
        if api_version is not None and doc.get("apiVersion") != api_version:
            continue
        if namespace is not None and meta.get("namespace") not in (None, namespace):
            continue
        found.append(index)
    return found


# ---------------------------------------------------------------- document boundaries


def split_documents(text: str) -> list[str]:
    """The text of each document, in order; ``"".join(result) == text``.

    Splits at ``---`` lines (column 0, which YAML reserves for document markers). Comments before the first
    ``---`` belong to the first document. Refuses layouts where that disagrees with the parser's count.
    """
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _DOC_START.match(line)]
    if not starts or any(_is_content(line) for line in lines[: starts[0]]):
        starts = [0, *starts]
    starts[0] = 0
    bounds = [*starts, len(lines)]
    chunks = ["".join(lines[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    if not any(_is_content(line) or _DOC_START.match(line) for line in lines):
        chunks = []
    if len(chunks) != len(documents(text)):
        raise PermanentError(
            "cannot split this YAML file into documents by its --- lines", code="edit_unsupported"
        )
    return chunks


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith(("#", "%")) and stripped != "..."


# ---------------------------------------------------------------- indentation


def detect_indent(text: str) -> Indent:
    """The file's most common (mapping, sequence, offset) indentation, read from key/child line pairs."""
    mappings: dict[int, int] = {}
    sequences: dict[tuple[int, int], int] = {}
    lines = [line for line in _structure_lines(text) if line.strip()]
    for parent, child in zip(lines, lines[1:], strict=False):
        body = _strip_comment(parent)
        if not body.endswith(":"):
            continue
        key_col = _key_col(parent)
        child_col = len(child) - len(child.lstrip(" "))
        if child.lstrip(" ").startswith("- "):
            content_col = _key_col(child)
            pair = (content_col - key_col, child_col - key_col)
            if pair[1] >= 0:
                sequences[pair] = sequences.get(pair, 0) + 1
        elif child_col > key_col:
            mappings[child_col - key_col] = mappings.get(child_col - key_col, 0) + 1
    mapping = max(mappings, key=lambda k: mappings[k]) if mappings else 2
    if sequences:
        sequence, offset = max(sequences, key=lambda k: sequences[k])
    else:
        sequence, offset = mapping, max(mapping - 2, 0)
    return Indent(mapping=mapping, sequence=sequence, offset=offset)


def _structure_lines(text: str) -> list[str]:
    """Lines without comments-only lines and block scalar bodies (their indentation is content)."""
    out: list[str] = []
    block_indent: int | None = None
    for raw in text.splitlines():
        indent = len(raw) - len(raw.lstrip(" "))
        if block_indent is not None:
            if not raw.strip() or indent > block_indent:
                continue
            block_indent = None
        if raw.lstrip().startswith("#") or _DOC_START.match(raw):
            continue
        out.append(raw)
        if _BLOCK_HEADER.search(_strip_comment(raw)):
            block_indent = indent
    return out


def _strip_comment(line: str) -> str:
    cut = line.find(" #")
    return (line if cut < 0 else line[:cut]).rstrip()


def _key_col(line: str) -> int:
    """Column where a line's content starts after any ``- `` sequence indicators."""
    col = len(line) - len(line.lstrip(" "))
    while line.startswith("- ", col) or line[col:].rstrip() == "-":
        col += 1
        while col < len(line) and line[col] == " ":
            col += 1
    return col


# ---------------------------------------------------------------- editing


def edit(
    text: str,
    *,
    document_index: int,
    changes: Sequence[tuple[str, Any]],
    prefix: tuple[Key, ...] = (),
) -> str:
    """Set each field path (relative to the document root plus ``prefix``) to its value; return the text."""
    crlf = "\r\n" in text
    if crlf and text.count("\n") != text.count("\r\n"):
        raise PermanentError("file mixes CRLF and LF line endings", code="edit_unsupported")
    lf = text.replace("\r\n", "\n") if crlf else text
    chunks = split_documents(lf)
    if not 0 <= document_index < len(chunks):
        raise PermanentError(f"no document {document_index} in file", code="edit_unsupported")
    indent = detect_indent(lf)
    chunk = chunks[document_index]
    for path, value in changes:
        segs = (*prefix, *fieldpaths.parse(path))
        chunk = _apply(chunk, segs, value, indent)
        if not verify(chunk, segs, value):  # the splice must read back as exactly the planned value
            raise PermanentError(
                f"{fieldpaths.format(segs)}: edit did not read back as {value!r}", code="edit_failed"
            )
    chunks[document_index] = chunk
    out = "".join(chunks)
    return out.replace("\n", "\r\n") if crlf else out


def _rt_load(chunk: str) -> Any:
    # Aliases measured on the C parser's nodes (linear) before ruamel builds anything. Text PyYAML cannot
    # parse is left to ruamel.yaml, which says why; `verify` re-reads every edit with PyYAML anyway.
    with contextlib.suppress(yaml.YAMLError):
        aliases.check_text(chunk)
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096
    try:
        return rt.load(chunk)
    except RuamelError as err:
        raise PermanentError(f"YAML does not parse: {err}", code="edit_unsupported") from err


def _apply(chunk: str, segs: tuple[fieldpaths.Segment, ...], value: Any, indent: Indent) -> str:
    """One change: walk the round-trip tree to the deepest existing node, then replace or insert text."""
    node = _rt_load(chunk)
    where = fieldpaths.format(segs)
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        if isinstance(node, CommentedMap):
            if not isinstance(seg, str):
                raise PermanentError(f"{where}: list selector on a mapping", code="edit_unsupported")
            if seg in node and seg in node.lc.data:  # own key (not inherited through `<<`)
                if last:
                    line, col = node.lc.value(seg)
                    return _replace(chunk, line, col, node[seg], value, where, in_flow=_is_flow(node))
                node = node[seg]
                continue
            # Missing or inherited: an inherited key is overridden locally, never edited in its anchor.
            base = _plain(node[seg]) if seg in node else None
            subtree = _build(base, segs[i + 1 :], value, where)
            return _insert(chunk, node, seg, subtree, indent, where)
        if isinstance(node, CommentedSeq):
            try:
                index = int(fieldpaths.resolve(node, (seg,))[0])
            except (KeyError, ValueError) as err:
                raise PermanentError(f"{where}: {err}", code="edit_unsupported") from err
            if last:
                line, col = node.lc.item(index)
                return _replace(chunk, line, col, node[index], value, where, in_flow=_is_flow(node))
            node = node[index]
            continue
        raise PermanentError(f"{where}: a scalar is in the way", code="edit_unsupported")
    raise PermanentError(f"{where}: empty path", code="edit_unsupported")


def _is_flow(node: Any) -> bool:
    return bool(node.fa.flow_style())


def _plain(node: Any) -> Any:
    """A deep copy as plain dicts/lists/scalars (merged keys included), for a local override."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return copy.copy(node)


def _build(base: Any, rest: tuple[fieldpaths.Segment, ...], value: Any, where: str) -> Any:
    """The subtree to insert: ``base`` (an inherited value, or None) with ``rest`` set to ``value``."""
    if not rest:
        return value
    root: Any = base if isinstance(base, dict) else {}
    try:
        concrete = fieldpaths.resolve(root, rest)
    except KeyError as err:
        raise PermanentError(f"{where}: {err}", code="edit_unsupported") from err
    node = root
    for key in concrete[:-1]:
        if isinstance(key, str) and key not in node:
            node[key] = {}
        node = node[key]
    node[concrete[-1]] = value
    return root


# ---------------------------------------------------------------- scalar replacement


def _replace(chunk: str, line: int, col: int, old: Any, new: Any, where: str, *, in_flow: bool) -> str:
    if isinstance(old, Mapping | list) or isinstance(new, Mapping | list):
        raise PermanentError(f"{where}: only scalars can be replaced", code="edit_unsupported")
    lines = chunk.splitlines(keepends=True)
    text = lines[line]
    end, style = _scalar_end(text, col, where, in_flow=in_flow)
    lines[line] = text[:col] + render_scalar(new, style) + text[end:]
    result = "".join(lines)
    _check(chunk, result, (line, line), where, inserts=False)
    log.debug("yaml_rt replaced scalar", extra={"path": where, "line": line + 1})
    return result


def _scalar_end(text: str, col: int, where: str, *, in_flow: bool) -> tuple[int, str | None]:
    """End column and quote style of the single-line scalar starting at ``col``."""
    ch = text[col : col + 1]
    if ch == "'":
        i = col + 1
        while (j := text.find("'", i)) >= 0:
            if text.startswith("''", j):
                i = j + 2
                continue
            return j + 1, "'"
    elif ch == '"':
        i = col + 1
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == '"':
                return i + 1, '"'
            i += 1
    elif ch and ch not in "|>&!*[{\n":
        body = text[col:].rstrip("\n")
        cut = body.find(" #")
        body = body if cut < 0 else body[:cut]
        if in_flow:
            body = re.split(r"[,\]}]", body, maxsplit=1)[0]
        return col + len(body.rstrip()), None
    raise PermanentError(f"{where}: value is not a single-line scalar", code="edit_unsupported")


def render_scalar(value: Any, style: str | None = None) -> str:
    """YAML text of a scalar; strings keep ``style`` ('\\'', '"' or None for plain when unambiguous)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if not isinstance(value, str):
        raise PermanentError(f"cannot write a {type(value).__name__} value", code="edit_unsupported")
    if style == "'" and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    if style is None and _plain_ok(value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _plain_ok(value: str) -> bool:
    """Whether ``value`` reads back as the same string when written unquoted (YAML 1.1 rules: stricter)."""
    if not value or value != value.strip() or "\n" in value:
        return False
    try:
        return bool(yaml.load(f"k: {value}\n", Loader=_Loader) == {"k": value})
    except yaml.YAMLError:
        return False


# ---------------------------------------------------------------- key insertion


def _insert(chunk: str, parent: CommentedMap, key: str, subtree: Any, indent: Indent, where: str) -> str:
    """Insert ``key: subtree`` as new lines after the last line of the block mapping ``parent``."""
    lines = chunk.splitlines(keepends=True)
    if not parent:
        raise PermanentError(f"{where}: cannot add keys to an empty mapping", code="edit_unsupported")
    if _is_flow(parent):
        raise PermanentError(f"{where}: cannot add keys to a flow mapping", code="edit_unsupported")
    start, col = parent.lc.line, parent.lc.col
    last = _block_end(lines, start, col)
    new_lines = [f"{line}\n" for line in _render_block(key, subtree, col, indent)]
    if not lines[last].endswith("\n"):
        lines[last] += "\n"
        new_lines[-1] = new_lines[-1].rstrip("\n")
    lines[last + 1 : last + 1] = new_lines
    result = "".join(lines)
    _check(chunk, result, (start, last), where, inserts=True)
    log.debug("yaml_rt inserted key", extra={"path": where, "line": last + 2, "lines": len(new_lines)})
    return result


def _block_end(lines: list[str], start: int, col: int) -> int:
    """Index of the last line belonging to the block mapping whose keys start at ``col``.

    Comment lines indented deeper than the keys belong to it (they may be block scalar text); comments at
    or left of the key column describe what follows, so new keys go before them.
    """
    last = start
    for j in range(start + 1, len(lines)):
        stripped = lines[j].strip()
        indent = len(lines[j]) - len(lines[j].lstrip(" "))
        if not stripped:
            continue
        if stripped == "..." and indent == 0:
            break
        if stripped.startswith("#") and indent <= col:
            continue
        if indent < col:
            break
        last = j
    return last


def _render_block(key: Any, value: Any, col: int, indent: Indent) -> list[str]:
    pad = " " * col
    head = f"{pad}{render_scalar(key)}:"
    if isinstance(value, Mapping):
        if not value:
            return [f"{head} {{}}"]
        out = [head]
        for k, v in value.items():
            out += _render_block(k, v, col + indent.mapping, indent)
        return out
    if isinstance(value, list):
        if not value:
            return [f"{head} []"]
        out = [head]
        for item in value:
            out += _render_item(item, col, indent)
        return out
    return [f"{head} {render_scalar(value)}"]


def _render_item(item: Any, col: int, indent: Indent) -> list[str]:
    """A sequence item under a key at ``col``: the dash at ``col + offset``, content at ``col + sequence``."""
    content = col + max(indent.sequence, indent.offset + 2)
    dash = " " * (col + indent.offset) + "-"
    dash = dash.ljust(content)
    if isinstance(item, Mapping) and item:
        body: list[str] = []
        for k, v in item.items():
            body += _render_block(k, v, content, indent)
    elif isinstance(item, list | Mapping):
        raise PermanentError(
            "cannot write nested or empty collections in a sequence", code="edit_unsupported"
        )
    else:
        body = [" " * content + render_scalar(item)]
    return [dash + body[0][content:], *body[1:]]


# ---------------------------------------------------------------- safety net


def _check(old: str, new: str, allowed: tuple[int, int], where: str, *, inserts: bool) -> None:
    """Refuse when the line diff reaches outside ``allowed`` (inclusive old-line range).

    A scalar replacement may only rewrite lines in place; an insertion may also add lines inside or right
    after the range.
    """
    lo, hi = allowed
    matcher = difflib.SequenceMatcher(a=old.splitlines(), b=new.splitlines(), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if i1 == i2:
            inside = inserts and lo <= i1 <= hi + 1
        else:
            inside = lo <= i1 and i2 - 1 <= hi and (inserts or j2 - j1 == i2 - i1)
        if not inside:
            log.warning("yaml_rt edit out of bounds", extra={"path": where, "line": i1 + 1})
            raise PermanentError(
                f"{where}: edit would change line {i1 + 1} outside the edited node", code="edit_out_of_bounds"
            )


def verify(chunk: str, segs: tuple[fieldpaths.Segment, ...], value: Any) -> bool:
    """Whether ``chunk`` now holds ``value`` at ``segs`` (same type, same value)."""
    try:
        got = fieldpaths.get(next(iter(documents(chunk)), None), segs)
    except (KeyError, yaml.YAMLError):
        return False
    return _canon(got) == _canon(value)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
