"""Policies: YAML files in AUTOFIX_POLICY_DIR, validated with pydantic at start.

Files are merged in name order over the built-in defaults (``default.yaml`` first), so a team's
``zz-team.yaml`` overrides only the keys it names.
"""

from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Namespaces(_Strict):
    allow: list[str] = Field(default_factory=lambda: ["*"])
    deny: list[str] = Field(default_factory=lambda: ["kube-*"])


class CausePolicy(_Strict):
    paths: list[str] = Field(default_factory=list)
    enabled: bool = True


class MemoryBounds(_Strict):
    step: float = Field(default=1.5, gt=1.0, le=4.0)
    max: str = "16Gi"
    max_ratio_to_git: float = Field(default=4.0, gt=1.0)

    @field_validator("max")
    @classmethod
    def _quantity(cls, value: str) -> str:
        from app import quantities

        quantities.parse_bytes(value)
        return value


class RiskPolicy(_Strict):
    weights: dict[str, float] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=lambda: {"medium": 0.3, "high": 0.6})
    production_namespaces: list[str] = Field(default_factory=lambda: ["prod*"])

    @field_validator("weights")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, w in value.items() if w < 0]
        if bad:
            raise ValueError(f"weights must be >= 0: {', '.join(bad)}")
        return value


class Policy(_Strict):
    version: int = 1
    namespaces: Namespaces = Field(default_factory=Namespaces)
    kinds: list[str] = Field(default_factory=lambda: ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"])
    causes: dict[str, CausePolicy] = Field(default_factory=dict)
    memory: MemoryBounds = Field(default_factory=MemoryBounds)
    risk: RiskPolicy = Field(default_factory=RiskPolicy)
    labels: list[str] = Field(default_factory=lambda: ["autofix"])
    digest: str = ""  # sha256 of the files it was loaded from: the "policy version" recorded in MLflow

    def namespace_allowed(self, namespace: str) -> bool:
        if any(fnmatch.fnmatchcase(namespace, pat) for pat in self.namespaces.deny):
            return False
        return any(fnmatch.fnmatchcase(namespace, pat) for pat in self.namespaces.allow)

    def paths_for(self, cause: str) -> list[str]:
        cp = self.causes.get(cause)
        return list(cp.paths) if cp and cp.enabled else []


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load(directory: Path) -> Policy:
    """Load and validate every *.yaml in ``directory``; ConfigError names the file and the reason."""
    if not directory.is_dir():
        raise ConfigError(f"AUTOFIX_POLICY_DIR: {directory} is not a directory")
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    merged: dict[str, Any] = {}
    digest = hashlib.sha256()
    for path in files:
        text = path.read_text(encoding="utf-8")
        digest.update(path.name.encode() + b"\0" + text.encode())
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a policy file must be a mapping")
        try:
            Policy.model_validate(data)  # each file must be valid on its own, so errors name the file
        except ValidationError as err:
            raise ConfigError(f"{path}: {_explain(err)}") from err
        merged = _deep_merge(merged, data)
    return Policy.model_validate({**merged, "digest": digest.hexdigest()[:12]})


def _explain(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
