"""Kustomize trees: bases, overlays and components, and where in them a workload's field is really set.

A planned change to the effective (rendered) workload lands where its value comes from: the `images:`
transformer for an image, `replicas:` for the replica count, the top-most strategic-merge or JSON6902 patch
that sets the field, and only when none does, the base document. Two setters at the same level: no guess.

The spec is the kustomization directory Argo CD or Flux renders; the renderer (a port) runs `kustomize build`
(or `kubectl kustomize`).

The effective workload, what a fix is planned on, is a real render or nothing computed here. Kustomize's
semantics (namePrefix/nameSuffix, namespace, `$patch: delete`/`replace`, JSON 6902 remove/move/copy, components,
replacements) are too many to imitate: an earlier approximation here ignored most of them and planned on values
no render produces. When the tree cannot be rendered (no renderer, or one too old for the overlay), the plan uses
the live object instead, the render Argo CD or Flux applied, as the Helm layout does; and the PR says "not
verified: why". That is the safer of the two choices left: refusing every fix without a renderer would also refuse
the ones a reviewer can check by reading the diff, while the live object's values are the ones the workload fails
with (a manifest edited since, but not synced, is the reviewer's to see in the diff). The walk below decides only
*where* a value is written (which patch, transformer or base sets it); the render check decides whether the edit
produced the planned workload, and no fix claims "verified" without both renders.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from app import fieldpaths, yaml_rt
from app.errors import NoFix, PermanentError
from app.models.changes import FieldChange, FileEdit, LayoutSpec, Location, Plan
from app.models.evidence import Evidence
from app.models.incident import WorkloadRef
from app.ports import Renderer
from app.sources import manifests
from app.sources.images import split_image
from app.sources.layouts import renders
from app.sources.layouts.base import grouped, spec_of
from app.sources.repos import RepoView

log = logging.getLogger(__name__)
NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


class KustomizeSpec(LayoutSpec):
    """The workload is rendered by `kustomize build` of ``directory``; its Location is the base document."""

    layout: ClassVar[str] = "kustomize"

    directory: str  # the kustomization directory Argo CD or Flux renders ("" for the repository root)


@dataclass(frozen=True)
class Layer:
    dir: str
    path: str  # the kustomization file
    doc: dict[str, Any]


@dataclass
class Tree:
    top: str
    layers: list[Layer] = field(default_factory=list)  # deepest base first, the top directory last
    resources: list[str] = field(default_factory=list)  # resource manifests, in order
    files: set[str] = field(default_factory=set)  # every file a render reads


def kustomization_file(files: set[str], directory: str) -> str | None:
    for name in NAMES:
        path = posixpath.join(directory, name) if directory not in ("", ".") else name
        if path in files:
            return path
    return None


def _join(directory: str, rel: str) -> str:
    joined = posixpath.normpath(posixpath.join(directory or ".", rel))
    if joined.startswith("../") or joined == "..":
        raise NoFix(f"kustomization in {directory} points outside the repository ({rel})", code="unsupported_source")
    return "" if joined == "." else joined


def walk(repo: RepoView, directory: str, all_files: set[str] | None = None) -> Tree:
    files = all_files if all_files is not None else set(repo.list_files(suffixes=()))
    tree = Tree(top=directory)
    _walk(repo, directory, files, tree, seen=set())
    return tree


def _walk(repo: RepoView, directory: str, files: set[str], tree: Tree, *, seen: set[str]) -> None:
    path = kustomization_file(files, directory)
    if path is None:
        raise NoFix(f"{directory or '.'} has no kustomization.yaml", code="no_manifest")
    if path in seen:
        return
    seen.add(path)
    docs = yaml_rt.documents(repo.read_text(path), source=path)
    doc = docs[0] if docs and isinstance(docs[0], dict) else {}
    tree.files.add(path)
    refuse_remote(doc, where=path)
    for key in _HELM_KEYS:
        if doc.get(key):
            raise NoFix(f"{path} inflates Helm charts ({key}): not supported", code="unsupported_source")
    for entry in [*(doc.get("resources") or []), *(doc.get("bases") or []), *(doc.get("components") or [])]:
        target = _join(directory, str(entry))
        if target in files:
            tree.resources.append(target)
            tree.files.add(target)
        else:
            _walk(repo, target, files, tree, seen=seen)
    for key in _PLUGIN_KEYS:
        for entry in doc.get(key) or []:
            _plugin(repo, directory, str(entry), files, tree, where=f"{path} {key}", seen=seen)
    for rel in _referenced_files(doc):
        target = _join(directory, rel)
        if target in files:
            tree.files.add(target)
    tree.layers.append(Layer(dir=directory, path=path, doc=doc))


def _referenced_files(doc: dict[str, Any]) -> Iterator[str]:
    """Patch, generator and configuration files a kustomization reads besides its resources and plugins."""
    for entry in doc.get("patchesStrategicMerge") or []:
        if isinstance(entry, str) and "\n" not in entry:
            yield entry
    for entry in [*(doc.get("patches") or []), *(doc.get("patchesJson6902") or []), *(doc.get("replacements") or [])]:
        if isinstance(entry, dict) and entry.get("path"):
            yield str(entry["path"])
    for gen in [*(doc.get("configMapGenerator") or []), *(doc.get("secretGenerator") or [])]:
        for item in [*(gen.get("files") or []), *(gen.get("envs") or [])] + ([gen["env"]] if gen.get("env") else []):
            yield str(item).split("=", 1)[-1]
    yield from (str(entry) for entry in [*(doc.get("crds") or []), *(doc.get("configurations") or [])])
    openapi = doc.get("openapi")
    if isinstance(openapi, dict) and openapi.get("path"):
        yield str(openapi["path"])


# ---------------------------------------------------------------- remote references


# Kustomize fetches whatever these hold when it looks remote: an http(s) URL is downloaded (any file the
# loader reads: a resource, a patch, a generator's files, a plugin's config, openapi), anything git can
# clone is cloned (a base, a component, a plugin directory). Keys are matched at any depth, so the same
# list covers the kustomization (`patches[].path`, `openapi.path`, `replacements[].path`, `helmCharts[].repo`)
# and the builtin plugin configs its transformers and generators name (PatchTransformer `path`,
# HelmChartInflationGenerator `repo` and `valuesFile`, ConfigMapGenerator `files`...).
_LOADED_KEYS = frozenset({
    "resources", "bases", "components", "crds", "configurations", "generators", "transformers", "validators",
    "patchesStrategicMerge", "path", "paths", "files", "envs", "env", "repo", "valuesFile",
    "additionalValuesFiles", "chartHome", "configHome",
})
_PLUGIN_KEYS = ("generators", "transformers", "validators")
_HELM_KEYS = ("helmCharts", "helmChartInflationGenerator")
_HELM_KINDS = ("HelmChartInflationGenerator", "HelmChart")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")  # https://, ssh://, file:///, s3:/...
_SCP = re.compile(r"^[A-Za-z][A-Za-z0-9-]*@[^/:]+[:/]")  # git@github.com:org/repo, org-1@host/repo


def is_remote(ref: str) -> bool:
    """Whether kustomize would fetch ``ref`` (a URL, a git remote in any of the forms it parses) rather than
    read a file of the tree. Over-inclusive on purpose: a local name that merely looks like one is refused."""
    text = ref.strip()
    lowered = text.lower()
    return bool(_SCHEME.match(text) or _SCP.match(text)) or lowered.startswith(
        ("git::", "gh:", "github.com/", "github.com:"))


def remote_refs(node: Any, *, loaded: bool = False) -> Iterator[str]:
    """Every remote reference held by a loaded key anywhere under ``node`` (a kustomization or a plugin
    config); generator `files` entries are `key=path`."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from remote_refs(value, loaded=str(key) in _LOADED_KEYS)
    elif isinstance(node, list):
        for item in node:
            yield from remote_refs(item, loaded=loaded)
    elif loaded and isinstance(node, str) and "\n" not in node:
        for part in {node, node.split("=", 1)[-1]}:
            if is_remote(part):
                yield node


def refuse_remote(node: Any, *, where: str) -> None:
    """No fix from a tree that names anything remote: it would render (and be verified) from content that
    is not in the repository, and the renderer would have to reach the network to read it."""
    found = next(remote_refs(node), None)
    if found is not None:
        raise NoFix(f"{where} uses a remote reference ({found}): cannot render or edit it here",
                    code="unsupported_source")


def _plugin(repo: RepoView, directory: str, entry: str, files: set[str], tree: Tree, *, where: str,
            seen: set[str]) -> None:
    """A `transformers:`/`generators:`/`validators:` entry: inline config, a config file, or a directory
    whose kustomization renders the configs. Every config is checked for remote references; the files a
    render reads are added to the tree (but are not resources of the workload)."""
    if "\n" in entry:
        _refuse_plugin_configs(yaml_rt.documents(entry), where=where)
        return
    target = _join(directory, entry)
    if target in files:
        tree.files.add(target)
        _refuse_plugin_configs(yaml_rt.documents(repo.read_text(target)), where=f"{where} {target}")
        return
    if kustomization_file(files, target) in seen:  # its resources would not be checked as configs below
        raise NoFix(f"{where} names {target}, a kustomization already in the tree: not supported",
                    code="unsupported_source")
    nested = Tree(top=target)
    _walk(repo, target, files, nested, seen=seen)  # a nested kustomization: every field checked the same way
    tree.files |= nested.files
    for resource in nested.resources:
        _refuse_plugin_configs(yaml_rt.documents(repo.read_text(resource)), where=f"{where} {resource}")


def _refuse_plugin_configs(docs: list[Any], *, where: str) -> None:
    for doc in docs:
        refuse_remote(doc, where=where)
        if isinstance(doc, dict) and doc.get("kind") in _HELM_KINDS:
            raise NoFix(f"{where} inflates Helm charts ({doc.get('kind')}): not supported", code="unsupported_source")


# ---------------------------------------------------------------- finding the workload


def base_name(tree: Tree, name: str) -> str:
    """The workload's name as written in the base: namePrefix/nameSuffix of every layer removed."""
    for layer in reversed(tree.layers):
        prefix, suffix = str(layer.doc.get("namePrefix") or ""), str(layer.doc.get("nameSuffix") or "")
        if prefix and name.startswith(prefix):
            name = name[len(prefix):]
        if suffix and name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def locate(ev: Evidence, repo: RepoView, directory: str, *, source: str, app: str | None,
           note: str) -> Location:
    """The base document of the workload in the tree rooted at ``directory`` (a Location to render)."""
    tree = walk(repo, directory)
    ref = ev.workload.model_copy(update={"name": base_name(tree, ev.workload.name)})
    found = manifests.find(repo, ref, api_version=str(ev.object.get("apiVersion") or ""), default_namespace=None,
                           paths=[f for f in tree.resources if f.endswith((".yaml", ".yml"))])
    if not found:
        raise NoFix(f"the kustomization in {directory or '.'} has no resource defining {ev.workload}", code="no_manifest")
    if len(found) > 1:
        where = ", ".join(f"{p}#{i}" for p, i in found)
        raise NoFix(f"{ev.workload} is defined more than once in the kustomization {directory} ({where}): "
                    "not guessing", code="ambiguous_manifest")
    path, index = found[0]
    return Location(path=path, document_index=index, source=source, app=app, note=note,
                    layout_spec=KustomizeSpec(directory=directory))


# ---------------------------------------------------------------- where a field is set


def _edits(location: Location, changes: list[FieldChange], repo: RepoView, ref: WorkloadRef,
           workload: dict[str, Any]) -> list[FileEdit]:
    tree = walk(repo, spec_of(location, KustomizeSpec).directory)
    name = base_name(tree, ref.name)
    out: list[FileEdit] = []
    for change in changes:
        edit = (_image_edit(change, tree) or _replicas_edit(change, tree, name)
                or _patch_edit(change, tree, repo, ref.kind, name, workload))
        if edit is None:
            edit = FileEdit(path=location.path, document_index=location.document_index, changes=[change],
                            what="base manifest (no overlay sets this field)")
        out.append(edit)
    return out


def _image_edit(change: FieldChange, tree: Tree) -> FileEdit | None:
    if not change.path.endswith(".image"):
        return None
    old_name, _, _ = split_image(str(change.old))
    new_name, new_tag, new_digest = split_image(str(change.new))
    for layer in reversed(tree.layers):
        for i, entry in enumerate(layer.doc.get("images") or []):
            if not isinstance(entry, dict) or str(entry.get("newName") or entry.get("name")) != old_name:
                continue
            if new_name != old_name:
                raise NoFix(f"{layer.path} sets image {old_name} with the images transformer; the fix would change "
                            f"the image name to {new_name}: not supported", code="edit_unsupported")
            key, value = ("digest", new_digest) if new_digest else ("newTag", new_tag)
            if key == "newTag" and entry.get("digest"):
                raise NoFix(f"{layer.path} pins {old_name} by digest: rolling back to a tag is not automatic",
                            code="edit_unsupported")
            return FileEdit(path=layer.path, prefix=("images", i), what="images transformer",
                            changes=[FieldChange(path=key, old=entry.get(key), new=value, reason=change.reason)])
    return None


def _replicas_edit(change: FieldChange, tree: Tree, name: str) -> FileEdit | None:
    if change.path != "spec.replicas":
        return None
    for layer in reversed(tree.layers):
        for i, entry in enumerate(layer.doc.get("replicas") or []):
            if isinstance(entry, dict) and entry.get("name") == name:
                return FileEdit(path=layer.path, prefix=("replicas", i), what="replicas transformer",
                                changes=[FieldChange(path="count", old=entry.get("count"), new=change.new,
                                                     reason=change.reason)])
    return None


def _patch_edit(change: FieldChange, tree: Tree, repo: RepoView, kind: str, name: str,
                workload: dict[str, Any]) -> FileEdit | None:
    segs = fieldpaths.parse(change.path)
    try:
        concrete = [str(s) for s in fieldpaths.resolve(workload, segs)]
    except KeyError:
        concrete = []
    for layer in reversed(tree.layers):
        found = list(_setters(layer, repo, kind, name, segs, concrete, change))
        if len(found) > 1:
            where = ", ".join(sorted({f.path for f in found}))
            raise NoFix(f"{change.path} is set by more than one patch in {layer.dir or '.'} ({where}): not guessing",
                        code="ambiguous_manifest")
        if found:
            return found[0]
    return None


def _patch_entries(layer: Layer) -> Iterator[tuple[dict[str, Any], str | None, str | None]]:
    """(target, file path, inline text) of every patch in a layer."""
    for entry in layer.doc.get("patchesStrategicMerge") or []:
        text = str(entry)
        yield ({}, None, text) if "\n" in text else ({}, _join(layer.dir, text), None)
    for entry in [*(layer.doc.get("patches") or []), *(layer.doc.get("patchesJson6902") or [])]:
        if not isinstance(entry, dict):
            continue
        target = entry.get("target") or {}
        if entry.get("path"):
            yield target, _join(layer.dir, str(entry["path"])), None
        elif entry.get("patch"):
            yield target, None, str(entry["patch"])


def _targets(target: dict[str, Any], kind: str, name: str) -> bool:
    return (not target.get("kind") or target.get("kind") == kind) and (not target.get("name") or target.get("name") == name)


def _setters(layer: Layer, repo: RepoView, kind: str, name: str, segs: tuple[fieldpaths.Segment, ...],
             concrete: list[str], change: FieldChange) -> Iterator[FileEdit]:
    for target, path, inline in _patch_entries(layer):
        if not _targets(target, kind, name):
            continue
        text = inline if inline is not None else repo.read_text(path or "")
        for index, doc in enumerate(yaml_rt.documents(text)):
            edit = _json6902(doc, concrete, segs, change) if isinstance(doc, list) and target else \
                _strategic(doc, kind, name, segs, change)
            if edit is None:
                continue
            if inline is not None:
                raise NoFix(f"{change.path} is set by an inline patch in {layer.path}: editing inside a block "
                            "scalar is not supported", code="edit_unsupported")
            yield edit.model_copy(update={"path": path, "document_index": index})


@dataclass(frozen=True)
class Patch:
    """One patch document of a kustomization: its file (None when inline in ``layer``) and its target."""

    layer: Layer
    path: str | None
    document_index: int
    doc: Any
    target: dict[str, Any]

    @property
    def selects_by_labels(self) -> bool:
        """A target selecting by labels or annotations: whether it reaches an object cannot be told here."""
        return bool(self.target.get("labelSelector") or self.target.get("annotationSelector"))


def patches_for(tree: Tree, repo: RepoView, kind: str, name: str) -> Iterator[Patch]:
    """Every patch document of the tree aimed at ``kind``/``name`` (by its target, or without one by its own
    kind and name), deepest layer first: later ones win."""
    for layer in tree.layers:
        for target, path, inline in _patch_entries(layer):
            if target and not _targets(target, kind, name):
                continue
            text = inline if inline is not None else repo.read_text(path or "")
            for index, doc in enumerate(yaml_rt.documents(text, source=path or layer.path)):
                named = isinstance(doc, dict) and doc.get("kind") == kind and (doc.get("metadata") or {}).get("name") == name
                if target or named:
                    yield Patch(layer=layer, path=path, document_index=index, doc=doc, target=dict(target))


def _strategic(doc: Any, kind: str, name: str, segs: tuple[fieldpaths.Segment, ...],
               change: FieldChange) -> FileEdit | None:
    if not isinstance(doc, dict) or doc.get("kind") != kind or (doc.get("metadata") or {}).get("name") != name:
        return None
    try:
        fieldpaths.get(doc, segs)
    except KeyError:
        return None
    # The patch is a partial object: validate it below `spec` so the schema of a full object does not apply.
    return FileEdit(path="", prefix=(str(segs[0]),), what="strategic-merge patch",
                    changes=[FieldChange(path=fieldpaths.format(segs[1:]), old=change.old, new=change.new,
                                         reason=change.reason)])


def _json6902(ops: list[Any], concrete: list[str], segs: tuple[fieldpaths.Segment, ...],
              change: FieldChange) -> FileEdit | None:
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or op.get("op") not in ("add", "replace") or not concrete:
            continue
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in str(op.get("path", "")).split("/")[1:]]
        if tokens != concrete[: len(tokens)]:
            continue
        rest = segs[len(tokens):]
        prefix: tuple[str | int, ...] = (i,) if not rest else (i, "value")
        path = "value" if not rest else fieldpaths.format(rest)
        return FileEdit(path="", prefix=prefix, what="JSON6902 patch",
                        changes=[FieldChange(path=path, old=change.old, new=change.new, reason=change.reason)])
    return None


# ---------------------------------------------------------------- who else the change reaches


def top_levels(repo: RepoView, target: str) -> list[str]:
    """Top-level kustomizations whose render includes ``target`` (a file or a kustomization directory)."""
    files = set(repo.list_files(suffixes=()))
    dirs = sorted({posixpath.dirname(f) for f in files if posixpath.basename(f) in NAMES})
    includes: dict[str, set[str]] = {}
    for d in dirs:
        try:
            tree = walk(repo, d, files)
        except NoFix:
            continue
        includes[d] = tree.files | {layer.dir for layer in tree.layers}
    users = {d for d, inc in includes.items() if target in inc}
    nested = {d for d in users for other in users if other != d and d in includes[other]}
    return sorted(users - nested)


# ---------------------------------------------------------------- the layout


class Kustomize:
    layered = True

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer

    def effective(self, location: Location, evidence: Evidence, *, repo: RepoView) -> dict[str, Any]:
        """The rendered workload; the live object (what the GitOps controller rendered and applied) when there
        is no renderer or it cannot render the unedited tree (see the module docstring)."""
        tree = walk(repo, spec_of(location, KustomizeSpec).directory)
        if not self.renderer.kustomize_installed():
            why = "no kustomize renderer installed"
        else:
            try:
                objects = self.renderer.kustomize({f: repo.read_text(f) for f in tree.files}, tree.top)
            except PermanentError as err:
                why = f"render failed: {err.message}"
            else:
                return renders.pick(objects, evidence.workload, what=f"kustomize build {tree.top or '.'}")
        log.warning("kustomize tree not rendered: planning on the live object, the fix will say not verified",
                    extra={"dir": tree.top, "reason": why[:500]})
        return {k: v for k, v in evidence.object.items() if k != "status"}

    def edits(self, location: Location, plan: Plan, *, evidence: Evidence, repo: RepoView,
              workload: dict[str, Any]) -> list[FileEdit]:
        return grouped(_edits(location, plan.changes, repo, evidence.workload, workload))

    def environments(self, location: Location, edits: Sequence[FileEdit], *, repo: RepoView) -> tuple[str, ...]:
        """The top-level kustomizations rendering an edited file: a base edit reaches every overlay."""
        return tuple(sorted({env for edit in edits for env in top_levels(repo, edit.path)}))

    def verify(self, location: Location, evidence: Evidence, *, repo: RepoView, plan: Plan,
               new_texts: Mapping[str, str]) -> tuple[str, list[str]]:
        top = spec_of(location, KustomizeSpec).directory
        if not self.renderer.kustomize_installed():
            return ("not verified: no kustomize renderer installed (kustomize or kubectl); the fix was planned on "
                    "the live object"), []
        tree = walk(repo, top)
        outside = sorted(set(new_texts) - tree.files)
        if outside:
            raise PermanentError(f"edited {', '.join(outside)}, which the kustomization {top or '.'} does not read",
                                 code="validation_failed")
        before = {f: repo.read_text(f) for f in tree.files}
        try:
            rendered_before = self.renderer.kustomize(before, top)
        except PermanentError as err:
            # The tool cannot render the tree as it is in git: nothing to compare against, say so in the PR.
            return f"not verified: kubectl kustomize cannot render {top or '.'} as it is in git ({err})"[:400], []
        # The tree rendered before the edit: if it does not after, the edit broke it (raised, no PR).
        after = self.renderer.kustomize({**before, **new_texts}, top)
        checks = renders.compare(rendered_before, after, evidence.workload, plan)
        return f"verified: kubectl kustomize {top or '.'} before and after differ only in the planned fields", checks

    def shown_path(self, location: Location, edits: Sequence[FileEdit]) -> str:
        # The kustomization directory. At the repository root ("") this keeps the fallback name earlier
        # versions showed there (this module's move changed no output).
        return spec_of(location, KustomizeSpec).directory or f"{location.app or 'chart'} (Helm values)"
