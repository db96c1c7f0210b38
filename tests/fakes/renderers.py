"""In-memory ``Renderer`` (app/ports.py) for layout tests: no kubectl, no Helm, no child process.

It answers from recordings: what the real renderer printed for exactly these inputs (tool, directory,
every file's text, Helm values, release, namespace), kept as ``renders.json`` next to each golden case.
Inputs it has no recording for are an error naming the tool and directory, so a layout that passes other
files than it used to fails its test instead of rendering something made up. It also records every call,
and can play a tool that is not installed or that fails on everything.

``RecordingRenderer`` wraps the real one to write those recordings (tests/unit/sources/goldens.py), and
the e2e test there checks that today's kubectl and Helm still print what was recorded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import PermanentError
from app.ports import Renderer


def digest(tool: str, files: Mapping[str, str], directory: str, **params: Any) -> str:
    """One key for one render's inputs: the tool, its directory, every file's text and the Helm params."""
    canonical = json.dumps({"tool": tool, "directory": directory, "files": dict(sorted(files.items())),
                            "params": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Recording:
    """One render: its inputs' digest, a readable summary of them, and the objects it produced."""

    tool: str  # kustomize, helm
    directory: str
    inputs: str  # digest(...)
    files: tuple[str, ...]  # the paths rendered (their texts are in the digest only)
    objects: tuple[dict[str, Any], ...]
    params: dict[str, Any] = field(default_factory=dict)  # helm: values, release, namespace

    def to_json(self) -> dict[str, Any]:
        return {"tool": self.tool, "directory": self.directory, "inputs": self.inputs, "files": list(self.files),
                "params": self.params, "objects": list(self.objects)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Recording:
        return cls(tool=raw["tool"], directory=raw["directory"], inputs=raw["inputs"], files=tuple(raw["files"]),
                   params=raw.get("params") or {}, objects=tuple(raw["objects"]))


@dataclass
class Call:
    tool: str
    directory: str
    files: dict[str, str]
    params: dict[str, Any]


class FakeRenderer:
    """Replays recorded renders; ``kustomize=False``/``helm=False``: that tool is not installed;
    ``error``: every render fails with this message (as an old or broken tool would)."""

    def __init__(self, recordings: Sequence[Recording] = (), *, kustomize: bool = True, helm: bool = True,
                 error: str | None = None) -> None:
        self.recordings = {r.inputs: r for r in recordings}
        self.installed = {"kustomize": kustomize, "helm": helm}
        self.error = error
        self.calls: list[Call] = []

    @classmethod
    def from_file(cls, path: Path, **kw: Any) -> FakeRenderer:
        raw = json.loads(path.read_text()) if path.exists() else []
        return cls([Recording.from_json(r) for r in raw], **kw)

    def answer(self, tool: str, files: Mapping[str, str], directory: str, objects: Sequence[dict[str, Any]],
               **params: Any) -> None:
        """Render ``objects`` for exactly these inputs (a case no recording covers, e.g. a broken edit)."""
        key = digest(tool, files, directory, **params)
        self.recordings[key] = Recording(tool=tool, directory=directory, inputs=key, files=tuple(sorted(files)),
                                         params=params, objects=tuple(objects))

    def kustomize_installed(self) -> bool:
        return self.installed["kustomize"]

    def helm_installed(self) -> bool:
        return self.installed["helm"]

    def kustomize(self, files: Mapping[str, str], directory: str) -> list[dict[str, Any]]:
        return self._render("kustomize", files, directory, {})

    def helm(self, files: Mapping[str, str], chart_dir: str, *, values: Mapping[str, Any], release: str,
             namespace: str) -> list[dict[str, Any]]:
        return self._render("helm", files, chart_dir, {"values": dict(values), "release": release,
                                                       "namespace": namespace})

    def _render(self, tool: str, files: Mapping[str, str], directory: str,
                params: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls.append(Call(tool, directory, dict(files), params))
        if not self.installed[tool]:
            raise PermanentError(f"fake: {tool} is not installed", code="renderer_missing")
        if self.error is not None:
            raise PermanentError(f"fake {tool} {directory or '.'} failed: {self.error}", code="render_failed")
        found = self.recordings.get(digest(tool, files, directory, **params))
        if found is None:
            raise AssertionError(f"fake renderer: no recorded {tool} render of {directory or '.'} for these inputs "
                                 f"({len(files)} files); re-record with `python -m tests.unit.sources.goldens`")
        return json.loads(json.dumps(list(found.objects)))  # a fresh copy: callers may mutate what they get


class RecordingRenderer:
    """A real renderer whose every render is kept as a ``Recording`` (in call order, each inputs once)."""

    def __init__(self, real: Renderer) -> None:
        self.real = real
        self.recordings: dict[str, Recording] = {}

    def kustomize_installed(self) -> bool:
        return self.real.kustomize_installed()

    def helm_installed(self) -> bool:
        return self.real.helm_installed()

    def kustomize(self, files: Mapping[str, str], directory: str) -> list[dict[str, Any]]:
        objects = self.real.kustomize(files, directory)
        self._keep("kustomize", files, directory, {}, objects)
        return objects

    def helm(self, files: Mapping[str, str], chart_dir: str, *, values: Mapping[str, Any], release: str,
             namespace: str) -> list[dict[str, Any]]:
        objects = self.real.helm(files, chart_dir, values=values, release=release, namespace=namespace)
        self._keep("helm", files, chart_dir, {"values": dict(values), "release": release, "namespace": namespace},
                   objects)
        return objects

    def _keep(self, tool: str, files: Mapping[str, str], directory: str, params: dict[str, Any],
              objects: list[dict[str, Any]]) -> None:
        key = digest(tool, files, directory, **params)
        self.recordings.setdefault(key, Recording(tool=tool, directory=directory, inputs=key,
                                                  files=tuple(sorted(files)), params=params,
                                                  objects=tuple(json.loads(json.dumps(objects)))))
