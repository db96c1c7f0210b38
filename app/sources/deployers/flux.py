"""Flux: a Kustomization (spec.path in a GitRepository) or a HelmRelease (values inline, in a ConfigMap that
kustomize generates from a file in git, or overridden by an environment's patch of the HelmRelease). The
GitRepository's URL must be our GitOps repo.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from app import kube, yaml_rt
from app.errors import NoFix
from app.models.changes import Location
from app.models.evidence import Evidence
from app.models.incident import WorkloadRef
from app.sources import manifests
from app.sources.layouts import kustomize
from app.sources.layouts.helm import HelmSpec, ValuesSource
from app.sources.repos import RepoIdentity, RepoView

_GENERATED_HASH = re.compile(r"-[a-z0-9]{10}$")  # kustomize's suffix on generated ConfigMap names


def locate(ev: Evidence, repo: RepoView, identity: RepoIdentity) -> Location | None:
    releases = [g for g in ev.gitops if g.get("kind") == "HelmRelease"]
    if releases:
        return _helm_release(ev, repo, identity, releases[0])
    owners = [g for g in ev.gitops if g.get("kind") == "Kustomization" and _applies(g, ev.object)]
    if not owners:
        return None
    ks = owners[0]
    path = _checked_path(ev, ks, identity)
    overrides = sorted(k for k in ("patches", "images", "namePrefix", "nameSuffix") if (ks.get("spec") or {}).get(k))
    if overrides:
        raise NoFix(f"Flux Kustomization {kube.name(ks)} overrides its path in its own spec ({', '.join(overrides)}): "
                    "an edit in git could be overridden; not supported", code="unsupported_source")
    files = set(repo.list_files(suffixes=()))
    note = f"Flux Kustomization {kube.meta(ks).get('namespace')}/{kube.name(ks)}: path {path or '.'}"
    if kustomize.kustomization_file(files, path):
        return kustomize.locate(ev, repo, path, source="flux", app=kube.name(ks), note=note)
    # No kustomization.yaml: Flux generates one that includes every manifest below the path.
    below = [f for f in sorted(files) if _below(f, path) and f.endswith((".yaml", ".yml"))]
    target_ns = (ks.get("spec") or {}).get("targetNamespace")
    found = manifests.find(repo, ev.workload, api_version=str(ev.object.get("apiVersion") or ""),
                           default_namespace=target_ns, paths=below)
    return _one(found, ev.workload, path, note=note, app=kube.name(ks))


def _applies(ks: dict[str, Any], obj: dict[str, Any]) -> bool:
    labels = kube.labels_of(obj)
    return labels.get("kustomize.toolkit.fluxcd.io/name") == kube.name(ks)


def _below(path: str, directory: str) -> bool:
    return not directory or path.startswith(directory.rstrip("/") + "/")


def _one(found: list[tuple[str, int]], ref: WorkloadRef, where: str, *, note: str, app: str) -> Location:
    path, index = manifests.exactly_one(found, ref, where,
                                        missing=f"no manifest for {ref} under {where or '.'} in the GitOps repo")
    return Location(path=path, document_index=index, source="flux", app=app, note=note)


def _checked_path(ev: Evidence, ks: dict[str, Any], identity: RepoIdentity) -> str:
    """The Kustomization's path in our repo; NoFix when its GitRepository is another repo or unreadable."""
    spec = ks.get("spec") or {}
    ref = spec.get("sourceRef") or {}
    ns = ref.get("namespace") or kube.meta(ks).get("namespace")
    source = next((g for g in ev.gitops if g.get("kind") == ref.get("kind") and kube.name(g) == ref.get("name")
                   and kube.meta(g).get("namespace") == ns), None)
    if ref.get("kind") != "GitRepository" or source is None:
        raise NoFix(f"Flux Kustomization {kube.name(ks)} reads {ref.get('kind')} {ns}/{ref.get('name')}, which could "
                    "not be read: cannot tell which repository it is", code="unsupported_source")
    url = str((source.get("spec") or {}).get("url", ""))
    if not identity.matches(url):
        raise NoFix(f"{ev.workload} is deployed by Flux Kustomization {kube.name(ks)} from another repository ({url}), "
                    "not the configured GitOps repo", code="foreign_repo")
    path = posixpath.normpath(str(spec.get("path") or ".").strip("/"))
    return "" if path == "." else path.removeprefix("./")


# ---------------------------------------------------------------- HelmRelease


def _helm_release(ev: Evidence, repo: RepoView, identity: RepoIdentity, hr: dict[str, Any]) -> Location:
    ks_name = kube.labels_of(hr).get("kustomize.toolkit.fluxcd.io/name")
    owners = [g for g in ev.gitops if g.get("kind") == "Kustomization" and kube.name(g) == ks_name]
    if not owners:
        raise NoFix(f"HelmRelease {kube.name(hr)} was not applied by a readable Flux Kustomization: cannot tell where "
                    "it lives in git", code="unsupported_source")
    path = _checked_path(ev, owners[0], identity)
    files = sorted(repo.list_files(suffixes=()))
    ref = WorkloadRef(kind="HelmRelease", namespace=str(kube.meta(hr).get("namespace")), name=kube.name(hr))
    # A kustomization at the path (an environment overlaying a base, as in fluxcd/flux2-kustomize-helm-example):
    # the HelmRelease is a resource of its tree, and the overlays' patches of it override its values.
    tree = kustomize.walk(repo, path, set(files)) if kustomize.kustomization_file(set(files), path) else None
    if tree is None:
        candidates = [f for f in files if _below(f, path) and f.endswith((".yaml", ".yml"))]
        texts = {f: repo.read_text(f) for f in candidates if posixpath.basename(f) in kustomize.NAMES}
        written = ref
    else:
        candidates = [f for f in tree.resources if f.endswith((".yaml", ".yml"))]
        texts = {layer.path: repo.read_text(layer.path) for layer in tree.layers}
        written = ref.model_copy(update={"name": kustomize.base_name(tree, ref.name)})
    found = manifests.find(repo, written, api_version=str(hr.get("apiVersion") or ""), default_namespace=None,
                           paths=candidates)
    manifest = _one(found, ref, path, note="", app=kube.name(hr))
    sources = [_values_from(entry, repo, texts, path, hr) for entry in (hr.get("spec") or {}).get("valuesFrom") or []]
    sources.append(ValuesSource(path=manifest.path, document_index=manifest.document_index, prefix=("spec", "values"),
                                label="HelmRelease spec.values"))
    if tree is not None:
        sources += _values_patches(tree, repo, written.name)
    envs = tuple(sorted({s.path for s in sources if s.editable and s.path}))
    return Location(path=manifest.path, document_index=manifest.document_index, source="flux", app=kube.name(hr),
                    layout_spec=HelmSpec(values=tuple(sources), release=kube.name(hr)), environments=envs,
                    note=f"Flux HelmRelease {ref.namespace}/{ref.name} in {manifest.path} (Kustomization {ks_name})")


def _values_patches(tree: kustomize.Tree, repo: RepoView, name: str) -> list[ValuesSource]:
    """The overlays' patches that set the HelmRelease's values, lowest precedence first: a production values
    patch overrides the base's spec.values, so a value it sets is changed there, never in the base."""
    out: list[ValuesSource] = []
    for patch in kustomize.patches_for(tree, repo, "HelmRelease", name):
        where = patch.path or f"an inline patch in {patch.layer.path}"
        if isinstance(patch.doc, list):
            if any(str((op or {}).get("path", "")).startswith("/spec/values") for op in patch.doc
                   if isinstance(op, dict)):
                raise NoFix(f"the values of HelmRelease {name} are patched by a JSON6902 patch ({where}): not "
                            "supported", code="unsupported_source")
            continue
        values = ((patch.doc or {}).get("spec") or {}).get("values") if isinstance(patch.doc, dict) else None
        if values is None:
            continue
        if patch.selects_by_labels:
            raise NoFix(f"{where} patches HelmRelease values for a target chosen by labels: cannot tell whether it "
                        f"reaches {name}", code="unsupported_source")
        if patch.path is None:
            out.append(ValuesSource(path=None, editable=False, inline=values if isinstance(values, dict) else {},
                                    label=f"HelmRelease values in {where}"))
        else:
            out.append(ValuesSource(path=patch.path, document_index=patch.document_index, prefix=("spec", "values"),
                                    label="HelmRelease values patch"))
    return out


def _values_from(entry: dict[str, Any], repo: RepoView, texts: dict[str, str], path: str,
                 hr: dict[str, Any]) -> ValuesSource:
    kind, name = str(entry.get("kind")), str(entry.get("name"))
    if kind != "ConfigMap" or entry.get("targetPath"):
        return ValuesSource(path=None, editable=False, label=f"{kind} {name} (valuesFrom; not read)")
    key = str(entry.get("valuesKey") or "values.yaml")
    base = _GENERATED_HASH.sub("", name)
    hits: list[str] = []
    for file, text in texts.items():
        if "configMapGenerator" not in text:
            continue
        doc = (yaml_rt.documents(text, source=file) or [{}])[0] or {}
        for gen in doc.get("configMapGenerator") or []:
            if gen.get("name") in (name, base):
                hits += [posixpath.normpath(posixpath.join(posixpath.dirname(file), f))
                         for f in _generator_files(gen, key)]
    if len(hits) != 1:
        listed = ", ".join(hits) or "none"
        raise NoFix(f"HelmRelease {kube.name(hr)} reads values from ConfigMap {name} key {key}, but {len(hits)} "
                    f"generator file(s) in git produce it ({listed}): not guessing", code="ambiguous_manifest"
                    if hits else "no_manifest")
    return ValuesSource(path=hits[0], label=f"values file of ConfigMap {base}")


def _generator_files(gen: dict[str, Any], key: str) -> list[str]:
    out = []
    for item in gen.get("files") or []:
        text = str(item)
        k, _, file = text.partition("=") if "=" in text else (posixpath.basename(text), "", text)
        if k == key:
            out.append(file)
    return out
