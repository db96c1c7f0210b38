"""Where the fix goes, what it changes, and the single change record everything is rendered from."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Location(BaseModel):
    """The document in the GitOps repo that defines the workload."""

    model_config = ConfigDict(frozen=True)

    path: str  # relative to the repository root, POSIX separators
    document_index: int = 0  # which YAML document in a multi-document file
    source: str  # which source module found it: "argocd", "plain", ...
    # YAML path from the document root to the workload object (empty for a plain manifest; e.g. a Helm
    # values key prefix for values files).
    prefix: tuple[str | int, ...] = ()
    app: str | None = None  # the Argo CD Application / Flux object that deploys it
    note: str | None = None  # how it was found, for the PR and MLflow


class FieldChange(BaseModel):
    """One field of the workload object: a path like ``spec.template.spec.containers[name=app].image``."""

    model_config = ConfigDict(frozen=True)

    path: str
    old: Any = None
    new: Any = None
    reason: str = ""


class Plan(BaseModel):
    """The changes a fixer wants on the workload object, in the object's own field paths."""

    model_config = ConfigDict(frozen=True)

    cause: str
    summary: str  # "Raise memory limit of shop/checkout to 768Mi"
    changes: list[FieldChange]
    allowed_paths: list[str] = Field(default_factory=list)  # globs the validation accepts for this cause


class FileChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    old_text: str
    new_text: str
    diff: str


class RiskFactor(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    value: float
    weight: float
    explanation: str


class Risk(BaseModel):
    model_config = ConfigDict(frozen=True)

    score: float
    level: str  # low, medium, high
    factors: list[RiskFactor]


class ChangeSet(BaseModel):
    """The change record: file -> object -> field -> old/new. PR, commit and MLflow are rendered from it."""

    model_config = ConfigDict(frozen=True)

    location: Location
    plan: Plan
    files: list[FileChange]
    risk: Risk
    validation: list[str] = Field(default_factory=list)  # checks that passed, one line each

    @property
    def diff(self) -> str:
        return "".join(f.diff for f in self.files)
