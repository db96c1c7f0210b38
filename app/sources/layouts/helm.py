"""Helm values: which values key produces a workload field, and in which file to change it.

A key produces the field when its path ends with the field's own names (``resources.limits.memory``,
``image.tag``) and its scalar equals the live value. The highest-precedence source holding such a key sets
the effective value; the chart's defaults are never edited: the environment's values file overrides them.

The spec lists the values sources in precedence order and, when the chart is in the repository, its
directory: the renderer (a port) renders it before and after the edit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from app import fieldpaths, yaml_rt
from app.errors import NoFix
from app.models.changes import FieldChange, FileEdit, LayoutSpec, Location, Plan
from app.models.evidence import Evidence
from app.ports import Renderer
from app.sources.images import split_image
from app.sources.layouts import renders
from app.sources.layouts.base import grouped, spec_of
from app.sources.repos import Overlay, RepoView

Key = tuple[str | int, ...]


class ValuesSource(BaseModel):
    """One place Helm values come from: a values file, or a mapping inside a manifest (prefix)."""

    model_config = ConfigDict(frozen=True)

    path: str | None  # None: not in the repo (e.g. a chart's defaults from a Helm repository)
    document_index: int = 0
    prefix: tuple[str | int, ...] = ()
    editable: bool = True  # the chart's own defaults and generated manifests are never edited
    label: str = ""  # "values file", "chart defaults", "Application valuesObject", ...
    inline: dict[str, Any] | None = None  # values not in an editable place (helm.values text, parameters)


class HelmSpec(LayoutSpec):
    """The workload is a chart rendered with ``values`` (lowest precedence first) as release ``release``."""

    layout: ClassVar[str] = "helm"

    chart_dir: str | None = None  # the chart's directory when it is in the GitOps repo (then it can be rendered)
    values: tuple[ValuesSource, ...] = ()
    release: str | None = None


def data_of(source: ValuesSource, repo: RepoView) -> Any:
    """The values mapping a source holds ({} when the file or the prefix is absent)."""
    if source.path is None:
        return dict(source.inline or {})
    try:
        doc = yaml_rt.documents(repo.read_text(source.path), source=source.path)[source.document_index]
        value = fieldpaths.get(doc, source.prefix) if source.prefix else doc
    except (KeyError, IndexError, FileNotFoundError):
        return {}
    return value if isinstance(value, dict) else {}


def merged(datas: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for data in datas:
        out = _merge(out, data)
    return out


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    return over


def leaves(data: Any, path: Key = ()) -> Iterator[tuple[Key, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from leaves(value, (*path, str(key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from leaves(value, (*path, i))
    else:
        yield path, data


def _edits(location: Location, changes: list[FieldChange], repo: RepoView, workload: dict[str, Any]) -> list[FileEdit]:
    spec = spec_of(location, HelmSpec)
    sources = list(spec.values)
    datas = [data_of(s, repo) for s in sources]
    out: list[FileEdit] = []
    for change in changes:
        if isinstance(change.new, dict) and change.old is None:
            out += _new_probe(change, sources, datas, workload, chart=_chart_text(spec, repo))
        else:
            out.append(_edit(change, sources, datas, _container(change.path)))
    return out


def _container(path: str) -> str:
    names = [s.value for s in fieldpaths.parse(path) if isinstance(s, fieldpaths.Selector) and s.key == "name"]
    return names[-1] if names else ""


def _field_names(path: str) -> list[str]:
    """The field's own names: after the container (``startupProbe.failureThreshold``), at most the last three."""
    parsed = fieldpaths.parse(path)
    selectors = [i for i, s in enumerate(parsed) if isinstance(s, fieldpaths.Selector)]
    after = [s for s in parsed[selectors[-1] + 1:] if isinstance(s, str)] if selectors else []
    return (after or [s for s in parsed if isinstance(s, str)])[-3:]


def _wanted(change: FieldChange, all_values: dict[str, Any]) -> tuple[tuple[str, ...], Any, Any, str]:
    """(key suffix, old scalar, new scalar, description) the values must hold for this field."""
    segs = _field_names(change.path)
    if segs[-1] != "image":
        return tuple(segs), change.old, change.new, ".".join(segs)
    old_name, old_tag, _ = split_image(str(change.old))
    new_name, new_tag, _ = split_image(str(change.new))
    if old_name != new_name or old_tag is None or new_tag is None:
        raise NoFix(f"the fix changes image {change.old} to {change.new}: only a tag change maps to Helm values",
                    code="edit_unsupported")
    return ("tag",), old_tag, new_tag, f"image tag of {old_name}"


def _edit(change: FieldChange, sources: list[ValuesSource], datas: list[Any], container: str) -> FileEdit:
    everything = merged(datas)
    suffix, old, new, what = _wanted(change, everything)
    for level in range(len(sources) - 1, -1, -1):
        keys = [k for k, v in leaves(datas[level]) if k[-len(suffix):] == suffix and str(v) == str(old)
                and _repository_ok(everything, k, change)]
        if not keys:
            continue
        if len(keys) > 1:
            named = [k for k in keys if container in k]
            if len(named) != 1:
                where = ", ".join(fieldpaths.format(k) for k in keys)
                raise NoFix(f"{what}={old} is set by more than one values key in {_label(sources[level])} ({where}): "
                            "not guessing", code="ambiguous_manifest")
            keys = named
        key = keys[0]
        _no_override(key, old, sources, datas, level)
        return _target(key, old, new, change, sources, level)
    labels = "; ".join(_label(s) for s in sources) or "no values sources"
    raise NoFix(f"no Helm values key holds {what}={old} ({labels}): cannot tell which value produces "
                f"{change.path}", code="no_values_key")


def _repository_ok(values: dict[str, Any], key: Key, change: FieldChange) -> bool:
    """For an image tag: the sibling ``repository`` (when there is one) must name the same image."""
    if key[-1] != "tag":
        return True
    try:
        repository = fieldpaths.get(values, (*key[:-1], "repository"))
    except KeyError:
        return True
    name = split_image(str(change.old))[0]
    return name == str(repository) or name.endswith("/" + str(repository))


def _no_override(key: Key, old: Any, sources: list[ValuesSource], datas: list[Any], level: int) -> None:
    for above in range(level + 1, len(sources)):
        try:
            value = fieldpaths.get(datas[above], key)
        except KeyError:
            continue
        raise NoFix(f"{_label(sources[above])} sets {fieldpaths.format(key)} to {value}, but the cluster runs {old}: "
                    "git moved since the last sync; not overriding", code="git_moved")


def _target(key: Key, old: Any, new: Any, change: FieldChange, sources: list[ValuesSource], level: int) -> FileEdit:
    source = sources[level]
    if not source.editable:
        # Set by the chart's defaults: override it in the environment's values, the most specific editable source.
        editable = [s for s in sources[level + 1:] if s.editable and s.path is not None]
        if not editable:
            raise NoFix(f"{fieldpaths.format(key)} comes from {_label(source)}, and the Application/HelmRelease names "
                        "no values file of its own to override it in", code="no_values_file")
        source = editable[-1]
    return FileEdit(path=str(source.path), document_index=source.document_index, prefix=source.prefix,
                    what=source.label or "values file",
                    changes=[FieldChange(path=fieldpaths.format(key), old=old, new=new, reason=change.reason)])


def _label(source: ValuesSource) -> str:
    return f"{source.label} {source.path}" if source.path else source.label


# ---------------------------------------------------------------- a probe the chart does not render yet

# The fields of a Kubernetes probe; a chart's values may hold others (``enabled``, ``path``) for its templates.
_PROBE_FIELDS = ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold",
                 "terminationGracePeriodSeconds", "httpGet", "tcpSocket", "grpc", "exec")
_HANDLER_KEYS = ("httpGet", "tcpSocket", "grpc", "exec")


def _new_probe(change: FieldChange, sources: list[ValuesSource], datas: list[Any], workload: dict[str, Any], *,
               chart: str | None) -> list[FileEdit]:
    """A probe added to a container (a startupProbe for a slow start), written next to the values key that
    produces the container's liveness probe: a chart that toggles it (bitnami's ``startupProbe.enabled``) gets
    it enabled with a failureThreshold giving the planned time at the chart's own period and delay; a chart
    whose template renders the mapping as it is gets the planned mapping."""
    names = _field_names(change.path)
    field = names[-1]
    if len(names) != 1 or not field.endswith("Probe") or field == "livenessProbe":
        raise NoFix(f"the fix adds {change.path}: only a probe next to the liveness probe maps to Helm values",
                    code="edit_unsupported")
    everything = merged(datas)
    base = _liveness_key(change, everything, workload, sources)[:-1]
    key = (*base, field)
    try:
        existing = fieldpaths.get(everything, key)
    except KeyError:
        existing = None
    new: dict[str, Any] = dict(change.new) if isinstance(change.new, dict) else {}
    where = fieldpaths.format(key)
    reason = change.reason
    if isinstance(existing, dict) and "enabled" in existing:
        leaves, reason = _toggled(existing, new, where), f"{change.reason}; {_budget(existing, new)}"
    elif isinstance(existing, dict) or chart is not None and f".Values.{where}" in chart:
        leaves = {k: v for k, v in new.items() if not isinstance(existing, dict) or existing.get(k) != v}
    else:
        raise NoFix(f"the Helm values hold no {where} next to {fieldpaths.format((*base, 'livenessProbe'))}, and "
                    f"{'the chart is not in the repository' if chart is None else 'the chart does not render it'}: "
                    f"whether setting it reaches the {field} of the container is unknown", code="no_values_key")
    return [_set(key, leaf, value, reason, sources, datas) for leaf, value in leaves.items()]


def _threshold(existing: dict[str, Any], new: dict[str, Any]) -> tuple[int, int, int]:
    """(delay, period, failureThreshold) of the chart's own probe giving at least the planned time."""
    period = int(existing.get("periodSeconds") or new.get("periodSeconds") or 10)
    delay = int(existing.get("initialDelaySeconds") or 0)
    planned = int(new.get("initialDelaySeconds") or 0) + int(new.get("periodSeconds") or 10) * int(
        new.get("failureThreshold") or 3)
    return delay, period, math.ceil(max(planned - delay, period) / period)


def _budget(existing: dict[str, Any], new: dict[str, Any]) -> str:
    delay, period, threshold = _threshold(existing, new)
    return (f"the chart's own probe allows initialDelaySeconds {delay} + failureThreshold {threshold} x periodSeconds "
            f"{period} = {delay + threshold * period} s")


def _toggled(existing: dict[str, Any], new: dict[str, Any], where: str) -> dict[str, Any]:
    """A probe the chart renders when ``enabled``, from its own handler, period and delay: enable it, with a
    failureThreshold that gives at least the planned time to start."""
    _, _, threshold = _threshold(existing, new)
    leaves: dict[str, Any] = {}
    if existing.get("enabled") is not True:
        leaves["enabled"] = True
    if int(existing.get("failureThreshold") or 0) < threshold:
        leaves["failureThreshold"] = threshold
    if not leaves:
        raise NoFix(f"{where} is already enabled in git with failureThreshold {existing.get('failureThreshold')}: "
                    "waiting to be synced", code="already_in_git")
    return leaves


def _liveness_key(change: FieldChange, values: dict[str, Any], workload: dict[str, Any],
                  sources: list[ValuesSource]) -> Key:
    """The values key of the mapping that produces the container's liveness probe (its probe fields equal the
    effective workload's); the container's name in the key tells two such mappings apart."""
    container_path = fieldpaths.parse(change.path)[:-1]
    try:
        live = fieldpaths.get(workload, container_path)["livenessProbe"]
    except (KeyError, TypeError, IndexError) as err:
        raise NoFix(f"the container at {fieldpaths.format(container_path)} has no liveness probe to sit next to",
                    code="no_values_key") from err
    keys = [k for k, v in _mappings(values) if k and k[-1] == "livenessProbe" and _produces(v, live)]
    if len(keys) > 1:
        keys = [k for k in keys if _container(change.path) in k] or keys
    if len(keys) != 1:
        labels = "; ".join(_label(s) for s in sources) or "no values sources"
        found = ", ".join(fieldpaths.format(k) for k in keys) or "none"
        raise NoFix(f"the Helm values ({labels}) hold {len(keys)} livenessProbe mappings matching the container's "
                    f"liveness probe ({found}): cannot tell where its probes are set", code="no_values_key")
    return keys[0]


def _mappings(data: Any, path: Key = ()) -> Iterator[tuple[Key, dict[str, Any]]]:
    if isinstance(data, dict):
        yield path, data
        for key, value in data.items():
            yield from _mappings(value, (*path, str(key)))


def _produces(values: dict[str, Any], live: Any) -> bool:
    """Every probe field the values mapping sets is what the live probe has (and it sets at least one)."""
    fields = [f for f in _PROBE_FIELDS if f in values]
    return isinstance(live, dict) and bool(fields) and all(live.get(f) == values[f] for f in fields)


def _set(key: Key, leaf: str, value: Any, reason: str, sources: list[ValuesSource], datas: list[Any]) -> FileEdit:
    """One leaf of the new probe, in the most specific editable values source that holds the probe's mapping
    (the chart's own defaults are overridden there, never edited)."""
    full = (*key, leaf)
    holding = [i for i, data in enumerate(datas) if _has(data, key)]
    editable = [i for i in holding if sources[i].editable and sources[i].path is not None]
    if not editable:
        editable = [i for i, s in enumerate(sources) if s.editable and s.path is not None]
    if not editable:
        raise NoFix(f"{fieldpaths.format(key)} comes from the chart's defaults, and the Application/HelmRelease "
                    "names no values file of its own to set it in", code="no_values_file")
    source = sources[editable[-1]]
    try:
        old = fieldpaths.get(datas[editable[-1]], full)
    except KeyError:
        old = None
    return FileEdit(path=str(source.path), document_index=source.document_index, prefix=source.prefix,
                    what=source.label or "values file",
                    changes=[FieldChange(path=fieldpaths.format(full), old=old, new=value, reason=reason)])


def _has(data: Any, key: Key) -> bool:
    try:
        fieldpaths.get(data, key)
    except KeyError:
        return False
    return True


def _chart_text(spec: HelmSpec, repo: RepoView) -> str | None:
    """The chart's templates, when the chart is in the repository (to tell whether it renders a values key)."""
    if spec.chart_dir is None:
        return None
    chart = spec.chart_dir.rstrip("/") + "/"
    return "\n".join(repo.read_text(f) for f in repo.list_files(suffixes=()) if f.startswith(chart + "templates/"))


# ---------------------------------------------------------------- the layout


class Helm:
    layered = True

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer

    def effective(self, location: Location, evidence: Evidence, *, repo: RepoView) -> dict[str, Any]:
        """The chart rendered with the values in git when possible, else the live object (what Helm produced)."""
        spec = spec_of(location, HelmSpec)
        if spec.chart_dir is not None and self.renderer.helm_installed():
            return renders.pick(self._render(spec, evidence, repo), evidence.workload, what=f"chart {spec.chart_dir}")
        return {k: v for k, v in evidence.object.items() if k != "status"}

    def edits(self, location: Location, plan: Plan, *, evidence: Evidence, repo: RepoView,
              workload: dict[str, Any]) -> list[FileEdit]:
        return grouped(_edits(location, plan.changes, repo, workload))

    def environments(self, location: Location, edits: Sequence[FileEdit], *, repo: RepoView) -> tuple[str, ...]:
        """The values files edited: each is one environment's (or every environment's) values."""
        return tuple(sorted({edit.path for edit in edits}))

    def verify(self, location: Location, evidence: Evidence, *, repo: RepoView, plan: Plan,
               new_texts: Mapping[str, str]) -> tuple[str, list[str]]:
        spec = spec_of(location, HelmSpec)
        if spec.chart_dir is None:
            return "not verified: the chart is not in the GitOps repo, so it cannot be rendered offline", []
        if not self.renderer.helm_installed():
            return "not verified: no Helm renderer installed (helm-python-sdk)", []
        before = self._render(spec, evidence, repo)
        after = self._render(spec, evidence, Overlay(repo, new_texts))
        checks = renders.compare(before, after, evidence.workload, plan)
        return f"verified: chart {spec.chart_dir} rendered before and after differs only in the planned fields", checks

    def shown_path(self, location: Location, edits: Sequence[FileEdit]) -> str:
        return spec_of(location, HelmSpec).chart_dir or f"{location.app or 'chart'} (Helm values)"

    def _render(self, spec: HelmSpec, evidence: Evidence, repo: RepoView) -> list[dict[str, Any]]:
        chart = (spec.chart_dir or "").rstrip("/") + "/"
        files = {f: repo.read_text(f) for f in repo.list_files(suffixes=()) if f.startswith(chart)}
        values = merged([data_of(s, repo) for s in spec.values])
        return self.renderer.helm(files, spec.chart_dir or ".", values=values,
                                  release=spec.release or evidence.workload.name,
                                  namespace=evidence.workload.namespace)
