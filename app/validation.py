"""Check an edited file: it parses, it changes exactly the planned fields to the planned values, and the
object is still valid for the Kubernetes API.

The diff is computed over the parsed objects, independently of how the editor produced the text, so a bug
in the editor (or a normalisation it did not intend) shows up here as an unexpected path.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from app import deadlines, fieldpaths, yaml_rt
from app.errors import ConfigError, PermanentError
from app.models.changes import Plan

log = logging.getLogger(__name__)

Path = tuple[fieldpaths.Segment, ...]
_MISSING = object()


def check(
    old_text: str,
    new_text: str,
    *,
    document_index: int,
    prefix: tuple[str | int, ...] = (),
    plan: Plan,
    kubernetes_version: str = "1.33",
) -> list[str]:
    """The one-line checks that passed; PermanentError(code="validation_failed") on the first failure."""
    old_doc, new_doc, passed = _parse(old_text, new_text, document_index)
    old_obj, new_obj = _below(old_doc, prefix, "old"), _below(new_doc, prefix, "new")
    passed.append(_changed_exactly(old_obj, new_obj, plan))
    passed.append(_new_values(new_obj, plan))
    if not prefix and isinstance(new_obj, Mapping) and "apiVersion" in new_obj and "kind" in new_obj:
        passed.append(_schema(new_obj, kubernetes_version))
    log.info("validation passed", extra={"cause": plan.cause, "checks": len(passed)})
    return passed


def _fail(message: str) -> PermanentError:
    log.warning("validation failed", extra={"reason": message})
    return PermanentError(message, code="validation_failed")


# ---------------------------------------------------------------- (a) parses, other documents unchanged


def _parse(old_text: str, new_text: str, index: int) -> tuple[Any, Any, list[str]]:
    try:
        old_docs, new_docs = yaml_rt.documents(old_text), yaml_rt.documents(new_text)
    except yaml.YAMLError as err:
        raise _fail(f"edited file does not parse: {err}") from err
    if len(old_docs) != len(new_docs):
        raise _fail(f"document count changed from {len(old_docs)} to {len(new_docs)}")
    if not 0 <= index < len(new_docs):
        raise _fail(f"no document {index} in file")
    old_chunks, new_chunks = yaml_rt.split_documents(old_text), yaml_rt.split_documents(new_text)
    for i, (before, after) in enumerate(zip(old_chunks, new_chunks, strict=True)):
        if i != index and before != after:
            raise _fail(f"document {i} changed, only document {index} may")
    return old_docs[index], new_docs[index], [f"parses: {len(new_docs)} documents, others unchanged"]


def _below(doc: Any, prefix: tuple[str | int, ...], which: str) -> Any:
    try:
        return fieldpaths.get(doc, prefix) if prefix else doc
    except KeyError as err:
        raise _fail(f"{which} document has no {fieldpaths.format(prefix)}") from err


# ---------------------------------------------------------------- (b) exactly the planned fields changed


MAX_DIFF_NODES = 2_000_000  # far beyond any manifest (1 MiB of YAML is ~500,000 nodes); a second wall after aliases
_CHECK_EVERY = 4096


class _Walk:
    """Counts the nodes a diff visits: bounded by construction, and stoppable by the job's deadline."""

    __slots__ = ("visited",)

    def __init__(self) -> None:
        self.visited = 0

    def step(self) -> None:
        self.visited += 1
        if self.visited % _CHECK_EVERY == 0:
            deadlines.check()
            if self.visited > MAX_DIFF_NODES:
                raise PermanentError(f"document too large to compare: over {MAX_DIFF_NODES:,} nodes",
                                     code="yaml_too_complex")


def leaf_diff(old: Any, new: Any, path: Path = ()) -> Iterator[Path]:
    """Paths of leaves that differ between two parsed objects (added and removed subtrees expanded).

    List items that all carry a unique ``name`` are matched by name (and reported as ``[name=...]``), so
    reordering is not a change; other lists are compared by index. At most MAX_DIFF_NODES nodes are
    visited (PermanentError past that), and the job's deadline is checked on the way.
    """
    return _diff(old, new, path, _Walk())


def _diff(old: Any, new: Any, path: Path, walk: _Walk) -> Iterator[Path]:
    walk.step()
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in list(old) + [k for k in new if k not in old]:
            yield from _diff(old.get(key, _MISSING), new.get(key, _MISSING), (*path, str(key)), walk)
    elif isinstance(old, list) and isinstance(new, list):
        old_names, new_names = _names(old), _names(new)
        if old_names is not None and new_names is not None:
            for name in list(old_names) + [n for n in new_names if n not in old_names]:
                sel = fieldpaths.Selector("name", name)
                yield from _diff(old_names.get(name, _MISSING), new_names.get(name, _MISSING), (*path, sel), walk)
        else:
            for i in range(max(len(old), len(new))):
                yield from _diff(old[i] if i < len(old) else _MISSING, new[i] if i < len(new) else _MISSING,
                                 (*path, i), walk)
    elif old is _MISSING or new is _MISSING:
        yield from _leaves(new if old is _MISSING else old, path, walk)
    elif _canon(old) != _canon(new):
        yield path


def _names(items: list[Any]) -> dict[str, Any] | None:
    names = {str(i["name"]): i for i in items if isinstance(i, Mapping) and "name" in i}
    return names if len(names) == len(items) else None


def _leaves(value: Any, path: Path, walk: _Walk) -> Iterator[Path]:
    walk.step()
    if isinstance(value, Mapping) and value:
        for key, child in value.items():
            yield from _leaves(child, (*path, str(key)), walk)
    elif isinstance(value, list) and value:
        for i, child in enumerate(value):
            yield from _leaves(child, (*path, i), walk)
    else:
        yield path


def _canon(value: Any) -> str:
    # type-aware equality: 3 and "3" and 3.0 and True differ for the API server
    return json.dumps([type(value).__name__, value], sort_keys=True, default=str)


def _changed_exactly(old_obj: Any, new_obj: Any, plan: Plan) -> str:
    planned = {change.path: _concrete(new_obj, change.path) for change in plan.changes}
    changed = list(leaf_diff(old_obj, new_obj))
    for path in changed:
        text = fieldpaths.format(path)
        concrete = _concrete_either(new_obj, old_obj, path)
        if not any(concrete[: len(p)] == p for p in planned.values()):
            raise _fail(f"unexpected change outside the plan: {text}")
        if plan.allowed_paths and not any(fieldpaths.matches(text, glob) for glob in plan.allowed_paths):
            raise _fail(f"change not allowed for {plan.cause}: {text}")
    for name, target in planned.items():
        if not any(_concrete_either(new_obj, old_obj, p)[: len(target)] == target for p in changed):
            raise _fail(f"planned change did not happen: {name}")
    return "changed exactly: " + ", ".join(fieldpaths.format(p) for p in changed)


def _concrete(obj: Any, path: str | Path) -> tuple[str | int, ...]:
    try:
        return fieldpaths.resolve(obj, path)
    except (KeyError, ValueError) as err:
        raise _fail(f"planned path does not resolve: {path}") from err


def _concrete_either(new_obj: Any, old_obj: Any, path: Path) -> tuple[str | int, ...]:
    """Indices for a diff path: from the new object, or the old one for removed items."""
    try:
        return fieldpaths.resolve(new_obj, path)
    except KeyError:
        return _concrete(old_obj, path)


# ---------------------------------------------------------------- (c) the planned values


def _new_values(new_obj: Any, plan: Plan) -> str:
    for change in plan.changes:
        try:
            got = fieldpaths.get(new_obj, change.path)
        except KeyError as err:
            raise _fail(f"{change.path} is missing after the edit") from err
        if _canon(got) != _canon(change.new):
            raise _fail(f"{change.path} is {got!r}, plan says {change.new!r}")
    return "new values: " + ", ".join(f"{c.path}={c.new}" for c in plan.changes)


# ---------------------------------------------------------------- (d) Kubernetes schema


def _schema(obj: Mapping[str, Any], kubernetes_version: str) -> str:
    api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
    version = _schema_version(kubernetes_version)
    validator = _validator(version, api_version, kind)
    if validator is None:
        return f"schema: skipped, no schema for {api_version} {kind} (CRD or unknown kind)"
    errors = sorted(validator.iter_errors(dict(obj)), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(root)"
        raise _fail(
            f"schema: {api_version} {kind} invalid for Kubernetes {version}: {where}: {first.message}"
        )
    return f"schema: {api_version} {kind} valid for Kubernetes {version}"


def _schema_dir(version: str) -> Any:
    return resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", f"v{version}.0-local-strict"
    )


@lru_cache(maxsize=16)
def _schema_version(kubernetes_version: str) -> str:
    """The newest shipped schema version not newer than the requested one (e.g. "1.33")."""
    m = re.match(r"v?(\d+)\.(\d+)", kubernetes_version)
    if m is None:
        raise ConfigError(f"bad Kubernetes version {kubernetes_version!r}")
    wanted = (int(m.group(1)), int(m.group(2)))
    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    shipped = sorted(
        (int(v.group(1)), int(v.group(2)))
        for entry in root.iterdir()
        if (v := re.fullmatch(r"v(\d+)\.(\d+)\.0-local-strict", entry.name))
    )
    usable = [v for v in shipped if v <= wanted]
    if not usable or wanted > shipped[-1]:
        raise ConfigError(
            f"no Kubernetes schemas for {kubernetes_version}; shipped: {shipped[0]}..{shipped[-1]}"
        )
    return "{}.{}".format(*usable[-1])


@lru_cache(maxsize=4)
def _definitions(version: str) -> Any:
    # ~MBs of JSON: loaded once per version, shared by every kind's validator
    from referencing import Resource

    return Resource.from_contents(json.loads(_schema_dir(version).joinpath("_definitions.json").read_text()))


@lru_cache(maxsize=128)
def _validator(version: str, api_version: str, kind: str) -> Any:
    """A cached validator for one kind, or None when kubernetes-validate ships no schema for it."""
    import jsonschema
    from referencing import Registry, Resource

    # same file naming as kubernetes_validate: rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    entry = _schema_dir(version).joinpath(f"{kind.lower()}-{group_version}.json")
    if not entry.is_file():
        return None
    schema = json.loads(entry.read_text())
    # both files carry their own $id ("/api/..."), so the registry resolves their $refs by id
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = _definitions(version) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)
