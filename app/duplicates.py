"""Does an open PR's branch already propose this change? Compared as files, objects, fields and new values.

Changed lines are not enough: two workloads whose manifests look alike get the same lines in different files,
and a base that moved shifts the lines of the same change. A change is described here as the set of
(file, object, field path, new value) it makes, where the object is ``kind/namespace/name`` for a Kubernetes
document and the document's position otherwise (a values file, a patch without a name). Two changes are the
same when those sets are equal. Pure: texts in, a verdict out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import yaml

from app import fieldpaths, validation, yaml_rt

Versions = Mapping[str, tuple[str | None, str | None]]  # path -> (text before, text after); None: absent
Fact = tuple[str, str, str, str]  # file, object, field path, new value (canonical JSON, or "(removed)")
_YAML = (".yaml", ".yml")
_REMOVED = "(removed)"


def same_change(theirs: Versions, ours: Versions) -> bool:
    """True when both change the same files, objects and fields to the same values."""
    try:
        return facts(theirs) == facts(ours)
    except yaml.YAMLError:  # a file that no longer parses is not the change we would make
        return False


def facts(files: Versions) -> frozenset[Fact]:
    """Every (file, object, field, new value) a change makes."""
    out: set[Fact] = set()
    for path, (old, new) in files.items():
        if old == new:
            continue
        if not path.endswith(_YAML):
            digest = hashlib.sha256((new or "").encode("utf-8", "surrogatepass")).hexdigest()
            out.add((path, "", "", _REMOVED if new is None else digest))
            continue
        before, after = _objects(old), _objects(new)
        for key in list(before) + [k for k in after if k not in before]:
            old_doc, new_doc = before.get(key, {}), after.get(key, {})
            for leaf in validation.leaf_diff(old_doc, new_doc):
                out.add((path, key, fieldpaths.format(leaf), _value_at(new_doc, leaf) if key in after else _REMOVED))
    return frozenset(out)


def _objects(text: str | None) -> dict[str, Any]:
    """The documents of a file by object identity (``kind/namespace/name``), else by position."""
    out: dict[str, Any] = {}
    for index, doc in enumerate(yaml_rt.documents(text) if text else []):
        key = _identity(doc) or f"document {index}"
        out[key if key not in out else f"{key} (document {index})"] = {} if doc is None else doc
    return out


def _identity(doc: Any) -> str | None:
    if not isinstance(doc, Mapping) or not doc.get("kind"):
        return None
    meta = doc.get("metadata")
    if not isinstance(meta, Mapping) or not meta.get("name"):
        return None
    return f"{doc['kind']}/{meta.get('namespace') or ''}/{meta['name']}"


def _value_at(doc: Any, leaf: tuple[fieldpaths.Segment, ...]) -> str:
    try:
        value = fieldpaths.get(doc, leaf)
    except KeyError:
        return _REMOVED
    # type-aware: 3, "3" and 3.0 are different values for the API server
    return json.dumps([type(value).__name__, value], sort_keys=True, default=str)
