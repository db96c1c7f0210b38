"""The repository index as a value: which file, document and YAML path defines each Kubernetes object.

Pure data with its lookups, shared by the port that hands it out (``Workspace.index`` in app/ports.py) and
the module that builds, updates and persists it (app/sources/index.py). Living here, below both, it keeps
them from importing each other.

Key: (apiVersion group, kind, namespace, name), the namespace empty when the manifest has none (it then
comes from the Argo CD destination or a kustomization). Value: every place that defines it, as a ``Hit``
(path, document index, YAML path inside the document: empty for a plain manifest, ``("items", 3)`` for the
fourth object of a ``kind: List``). An index is immutable: an update builds a new one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

YAML_SUFFIXES = (".yaml", ".yml")

Key = tuple[str, str, str, str]  # group, kind, namespace ("" = none in the manifest), name
Prefix = tuple[str | int, ...]


@dataclass(frozen=True)
class Hit:
    """One place that defines an object."""

    path: str
    document_index: int
    prefix: Prefix = ()


@dataclass(frozen=True)
class FileFacts:
    """What the index knows about one tracked file."""

    role: str  # kustomization, chart, values, yaml, other, broken, template, too_large, too_complex
    blob: str
    objects: tuple[tuple[Key, int, Prefix], ...] = ()


def hit_order(hit: Hit) -> tuple[str, int, tuple[tuple[str, str | int], ...]]:
    """Hits sort by path, document, then YAML path (list indices numerically)."""
    return hit.path, hit.document_index, tuple((type(p).__name__, p) for p in hit.prefix)


def group_of(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


@dataclass(frozen=True, eq=False)
class RepoIndex:
    commit: str
    files: Mapping[str, FileFacts]
    by_key: Mapping[Key, tuple[Hit, ...]] = field(repr=False)
    how: str = "built"  # built, updated, loaded: how this process got it (for MLflow)
    seconds: float = 0.0

    @classmethod
    def create(cls, commit: str, files: Mapping[str, FileFacts], *, how: str = "built",
               seconds: float = 0.0) -> RepoIndex:
        by_key: dict[Key, list[Hit]] = {}
        for path, facts in files.items():
            for key, doc, prefix in facts.objects:
                by_key.setdefault(key, []).append(Hit(path, doc, prefix))
        ordered = {key: tuple(sorted(hits, key=hit_order)) for key, hits in by_key.items()}
        return cls(commit=commit, files=dict(files), by_key=ordered, how=how, seconds=seconds)

    def lookup(self, *, group: str, kind: str, namespace: str, name: str) -> tuple[Hit, ...]:
        return self.by_key.get((group, kind, namespace, name), ())

    def find(self, *, group: str, kind: str, namespace: str, name: str,
             default_namespace: str | None) -> list[Hit]:
        """Every place defining the object, like ``manifests.matches``: a manifest without a namespace
        takes ``default_namespace``, and matches any namespace when there is none."""
        hits = list(self.lookup(group=group, kind=kind, namespace=namespace, name=name)) if namespace else []
        if default_namespace is None or default_namespace == namespace:
            hits += self.lookup(group=group, kind=kind, namespace="", name=name)
        return sorted(hits, key=hit_order)

    def paths(self, *, under: str = "", suffixes: Sequence[str] = YAML_SUFFIXES) -> list[str]:
        """Tracked paths below ``under`` (a directory, "" for all) ending in ``suffixes`` (empty: any)."""
        prefix = f"{under.strip('/')}/" if under.strip("/") else ""
        wanted = tuple(suffixes)
        return sorted(p for p in self.files if p.startswith(prefix) and (not wanted or p.endswith(wanted)))

    def dirs_with(self, role: str) -> list[str]:
        """Directories holding a file of ``role`` (kustomization, chart, values), "" for the root."""
        return sorted({p.rpartition("/")[0] for p, f in self.files.items() if f.role == role})

    def counts(self) -> dict[str, int]:
        out = {"files": len(self.files), "objects": sum(len(v) for v in self.by_key.values())}
        for facts in self.files.values():
            out[facts.role] = out.get(facts.role, 0) + 1
        return out

    def metrics(self) -> dict[str, float]:
        """Figures for the MLflow run: size of the index and what refreshing it cost."""
        counts = self.counts()
        return {"index_files": float(counts["files"]), "index_objects": float(counts["objects"]),
                "index_broken_files": float(counts.get("broken", 0)), "index_seconds": round(self.seconds, 6),
                "index_incremental": 1.0 if self.how == "updated" else 0.0}
