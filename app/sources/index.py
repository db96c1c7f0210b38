"""Building, updating and persisting the repository index (the value and its lookups: app/models/repo_index.py).

Per-file facts (role by file name: kustomization, chart, values, yaml; broken, too large, template) let the
layout sources find kustomizations, charts and values files without listing the tree.

Built once per commit from the git objects (``tree`` + ``read_blobs``: exact for that commit, whatever the
shared work tree shows), then updated from ``changed_files(indexed, new)``: only changed blobs are parsed.
Scanning uses PyYAML's C loader (ruamel's round trip is ~100x slower and only needed for the edited file);
files without ``kind:`` are not parsed, files over ``MAX_BYTES`` are skipped, broken YAML is counted.
An index is immutable: an update returns a new one, so a worker still on the old commit keeps its view.
This module does no I/O itself: git access comes through a ``RepoFiles`` (the workspace adapter), and
persistence is ``dumps``/``loads`` bytes the adapter writes atomically.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Protocol

import yaml

from app import aliases, deadlines
from app.models.repo_index import YAML_SUFFIXES, FileFacts, Hit, Key, Prefix, RepoIndex, group_of, hit_order
from app.ports import ChangedFile, TreeEntry

__all__ = ["MAX_BYTES", "FileFacts", "Hit", "IndexCorrupt", "RepoFiles", "RepoIndex", "build", "dumps", "equal",
           "group_of", "loads", "refresh", "role_of", "scan", "update"]

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the persisted layout changes: an older file is then rebuilt, never misread
MAX_BYTES = 1 << 20  # a manifest over 1 MiB is generated data (dashboards, CRD bundles), not a workload
POOL_MIN_FILES = 4000  # below this a process pool's start-up costs more than it saves
BATCH = 500  # files per pool task: large enough to amortise pickling, small enough to bound memory

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_KUSTOMIZATION = ("kustomization.yaml", "kustomization.yml", "Kustomization")


class RepoFiles(Protocol):
    """Git access the index needs (the workspace adapter implements it)."""

    def tree(self, commit: str) -> list[TreeEntry]: ...

    def changed_files(self, old_commit: str, new_commit: str) -> list[ChangedFile]: ...

    def read_blobs(self, blobs: Sequence[str]) -> dict[str, bytes]: ...


class IndexCorrupt(ValueError):
    """A persisted index that cannot be trusted: rebuild it."""


# ---------------------------------------------------------------- scanning one file (pure)


def role_of(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    if name in _KUSTOMIZATION:
        return "kustomization"
    if name == "Chart.yaml":
        return "chart"
    if not name.endswith(YAML_SUFFIXES):
        return "other"
    return "values" if name.startswith("values") else "yaml"


def scan(path: str, blob: str, data: bytes | None, *, size: int = -1) -> FileFacts:
    """Facts of one file from its bytes (None: not read, because it is not YAML or too large)."""
    role = role_of(path)
    if role == "other":
        return FileFacts(role, blob)
    if data is None or size > MAX_BYTES or len(data) > MAX_BYTES:
        log.info("index skipped a large file", extra={"path": path, "bytes": max(size, len(data or b""))})
        return FileFacts("too_large", blob)
    if b"kind:" not in data:  # values, CI workflows, Chart.yaml: nothing to parse for objects
        return FileFacts(role, blob)
    deadlines.check()  # a cold build reads thousands of files: the job's budget is checked per file
    try:
        nodes = list(yaml.compose_all(data, Loader=_Loader))
        too_complex = _too_complex(path, data, nodes)
        docs = _documents(nodes, construct=not too_complex)
    except (yaml.YAMLError, ValueError) as err:  # ValueError: bad encoding, odd timestamps
        templated = b"{{" in data  # a Helm template is not YAML until rendered: expected, not broken
        log.debug("index skipped unparsable YAML", extra={"path": path, "error": str(err)[:200]})
        return FileFacts("template" if templated else "broken", blob)
    return FileFacts("too_complex" if too_complex else role, blob, tuple(_objects(docs)))


def _too_complex(path: str, data: bytes, nodes: list[yaml.Node]) -> bool:
    """Aliases expanding beyond the bound (app/aliases.py). The file keeps the objects its top-level keys name
    (reading those is bounded), so the workload is still found and the stage that reads it refuses it by name."""
    if not aliases.may_alias(data):
        return False
    try:
        for index, node in enumerate(nodes):
            aliases.check(node, source=path, document=index)
    except aliases.YamlTooComplex as err:
        log.warning("index: YAML aliases expand beyond the bound", extra={"path": path, "error": str(err)[:300]})
        return True
    return False


def _documents(nodes: list[yaml.Node], *, construct: bool = True) -> list[Any]:
    """Each document reduced to what the index reads (apiVersion, kind, metadata name/namespace, items).

    The C composer builds the node tree; only those few nodes become Python values, which makes the scan
    about twice as fast as constructing whole documents. Merge keys need the full constructor (never run on
    a document refused for its aliases: its merged keys stay unknown).
    """
    try:
        return [_light(node) for node in nodes]
    except _MergeKey:
        if not construct:
            return []
        return [yaml.constructor.SafeConstructor().construct_document(node) for node in nodes]


class _MergeKey(Exception):
    """A ``<<`` merge where the index reads: let PyYAML's constructor resolve it."""


def _light(node: yaml.Node | None, *, top: bool = True) -> Any:
    if not isinstance(node, yaml.MappingNode):
        return None
    out: dict[str, Any] = {}
    for key, value in _pairs(node):
        if key in ("apiVersion", "kind"):
            out[key] = _scalar(value)
        elif key == "metadata":
            out[key] = {k: _scalar(v) for k, v in _pairs(value) if k in ("name", "namespace")} if isinstance(
                value, yaml.MappingNode) else _scalar(value)
        elif key == "items" and top and isinstance(value, yaml.SequenceNode):
            out[key] = [_light(item, top=False) for item in value.value]
    return out


def _pairs(node: yaml.MappingNode) -> Iterator[tuple[str, yaml.Node]]:
    for key, value in node.value:
        if key.tag == _MERGE_TAG:
            raise _MergeKey
        if isinstance(key, yaml.ScalarNode) and key.tag == _STR_TAG:
            yield key.value, value


def _scalar(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
        return node.value
    if isinstance(node, yaml.ScalarNode):  # rare here (null, numbers): exactly what the loader would build
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    return {} if isinstance(node, yaml.MappingNode) else []  # a collection: never a name or a kind


def _objects(docs: list[Any]) -> Iterator[tuple[Key, int, Prefix]]:
    for index, doc in enumerate(docs):
        key = _key(doc)
        if key is not None:
            yield key, index, ()
        if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List"):
            items = doc.get("items")
            for i, item in enumerate(items if isinstance(items, list) else []):
                item_key = _key(item)
                if item_key is not None:
                    yield item_key, index, ("items", i)


def _key(doc: Any) -> Key | None:
    if not isinstance(doc, dict):
        return None
    kind, meta = doc.get("kind"), doc.get("metadata")
    if not isinstance(kind, str) or not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    namespace = meta.get("namespace") or ""
    return group_of(str(doc.get("apiVersion", ""))), kind, str(namespace), meta["name"]


def _scan_batch(batch: list[tuple[str, str, int, bytes]]) -> list[tuple[str, FileFacts]]:
    """Pool task: scan a batch of (path, blob, size, data)."""
    return [(path, scan(path, blob, data, size=size)) for path, blob, size, data in batch]


# ---------------------------------------------------------------- building and updating


def build(files: RepoFiles, commit: str, *, workers: int = 1) -> RepoIndex:
    """The index of ``commit`` from scratch: every tracked file classified, YAML parsed once per blob."""
    start = time.perf_counter()
    entries = files.tree(commit)
    wanted = sorted({e.blob for e in entries if role_of(e.path) != "other" and 0 <= e.size <= MAX_BYTES})
    contents = files.read_blobs(wanted)
    by_blob = _scan_blobs(entries, contents, workers=workers)
    facts = {e.path: _facts_for(e, by_blob) for e in entries}
    index = RepoIndex.create(commit, facts, how="built", seconds=time.perf_counter() - start)
    log.info("repository index built", extra={"commit": commit, "seconds": round(index.seconds, 3),
                                              "workers": workers, **index.counts()})
    return index


def _facts_for(entry: TreeEntry, by_blob: Mapping[str, FileFacts]) -> FileFacts:
    facts = by_blob.get(entry.blob)
    if facts is None:  # not read: not YAML, or too large
        return scan(entry.path, entry.blob, None, size=entry.size)
    role = role_of(entry.path)
    # The same bytes under another name keep their objects but take this path's role.
    return facts if facts.role == role or facts.role in ("broken", "template", "too_complex") else FileFacts(
        role, facts.blob, facts.objects)


def _scan_blobs(entries: Sequence[TreeEntry], contents: Mapping[str, bytes], *,
                workers: int) -> dict[str, FileFacts]:
    """Scan each distinct blob once (identical files are common: helpers, patches, namespaces)."""
    first_path: dict[str, TreeEntry] = {}
    for entry in entries:
        if entry.blob in contents:
            first_path.setdefault(entry.blob, entry)
    batch = [(e.path, e.blob, e.size, contents[e.blob]) for e in first_path.values()]
    if workers > 1 and len(batch) >= POOL_MIN_FILES:
        scanned = _scan_parallel(batch, workers)
    else:
        scanned = _scan_batch(batch)
    return {facts.blob: facts for _, facts in scanned}


def _scan_parallel(batch: list[tuple[str, str, int, bytes]], workers: int) -> list[tuple[str, FileFacts]]:
    # spawn, not fork: the service forks from a process with worker threads, and fork copies held locks.
    chunks = [batch[i:i + BATCH] for i in range(0, len(batch), BATCH)]
    out: list[tuple[str, FileFacts]] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures: list[Future[list[tuple[str, FileFacts]]]] = [pool.submit(_scan_batch, c) for c in chunks]
        for future in futures:
            out += future.result()
    return out


def update(index: RepoIndex, files: RepoFiles, commit: str) -> RepoIndex:
    """The index of ``commit`` from the index of an earlier one: only files changed in between are read."""
    start = time.perf_counter()
    changes = files.changed_files(index.commit, commit)
    new_files = dict(index.files)
    for change in changes:
        new_files.pop(change.path, None)
    present = [c for c in changes if c.status != "D"]
    wanted = sorted({c.blob for c in present if role_of(c.path) != "other"})
    contents = files.read_blobs(wanted)
    for change in present:
        new_files[change.path] = scan(change.path, change.blob, contents.get(change.blob))
    updated = _rekey(index, new_files, {c.path for c in changes}, commit, start)
    log.info("repository index updated", extra={"from_commit": index.commit, "commit": commit,
                                                "changed": len(changes),
                                                "seconds": round(updated.seconds, 4)})
    return updated


def _rekey(index: RepoIndex, new_files: dict[str, FileFacts], touched: Collection[str], commit: str,
           start: float) -> RepoIndex:
    """Copy-on-write: only the keys of touched files get new hit lists."""
    by_key = dict(index.by_key)
    keys = {k for p in touched for f in (index.files.get(p), new_files.get(p)) if f for k, _, _ in f.objects}
    for key in keys:
        hits = [h for h in by_key.get(key, ()) if h.path not in touched]
        hits += [Hit(p, d, pre) for p in touched if p in new_files
                 for k, d, pre in new_files[p].objects if k == key]
        hits.sort(key=hit_order)
        if hits:
            by_key[key] = tuple(hits)
        else:
            by_key.pop(key, None)
    return RepoIndex(commit=commit, files=new_files, by_key=by_key, how="updated",
                     seconds=time.perf_counter() - start)


def refresh(previous: RepoIndex | None, files: RepoFiles, commit: str, *, workers: int = 1) -> RepoIndex:
    """The index of ``commit``: ``previous`` itself, updated from it, or (no usable previous) built cold."""
    if previous is not None and previous.commit == commit:
        return previous
    if previous is not None:
        try:
            return update(previous, files, commit)
        except Exception as err:  # noqa: BLE001 - e.g. the indexed commit was garbage-collected: rebuild
            log.warning("repository index update failed, rebuilding",
                        extra={"from_commit": previous.commit, "commit": commit, "error": str(err)[:300]})
    return build(files, commit, workers=workers)


# ---------------------------------------------------------------- persistence (bytes only)


def dumps(index: RepoIndex) -> bytes:
    files = {path: [f.role, f.blob, [[*key, doc, list(prefix)] for key, doc, prefix in f.objects]]
             for path, f in index.files.items()}
    return json.dumps({"format": FORMAT, "commit": index.commit, "files": files},
                      separators=(",", ":")).encode()


def loads(data: bytes) -> RepoIndex:
    """Read a persisted index; IndexCorrupt for anything unexpected (truncated, edited, older format)."""
    start = time.perf_counter()
    try:
        raw = json.loads(data)
        if raw.get("format") != FORMAT or not isinstance(raw.get("commit"), str):
            raise IndexCorrupt("unknown index format")
        files = {path: _decode_facts(path, value) for path, value in raw["files"].items()}
    except IndexCorrupt:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise IndexCorrupt(f"unreadable index: {type(err).__name__}") from err
    return RepoIndex.create(raw["commit"], files, how="loaded", seconds=time.perf_counter() - start)


def _decode_facts(path: str, value: Any) -> FileFacts:
    role, blob, objects = value
    if not isinstance(path, str) or not isinstance(role, str) or not isinstance(blob, str):
        raise IndexCorrupt("bad file entry")
    return FileFacts(role, blob, tuple(_decode_object(o) for o in objects))


def _decode_object(value: Any) -> tuple[Key, int, Prefix]:
    group, kind, namespace, name, doc, prefix = value
    if not all(isinstance(s, str) for s in (group, kind, namespace, name)) or not isinstance(doc, int):
        raise IndexCorrupt("bad object entry")
    if not all(isinstance(p, str | int) for p in prefix):
        raise IndexCorrupt("bad object prefix")
    return (group, kind, namespace, name), doc, tuple(prefix)


def equal(a: RepoIndex, b: RepoIndex) -> bool:
    """Same commit, same files and same hits (how and seconds aside): an update must equal a rebuild."""
    return a.commit == b.commit and dict(a.files) == dict(b.files) and dict(a.by_key) == dict(b.by_key)

