"""Policies: YAML files in AUTOFIX_POLICY_DIR, validated with pydantic at start.

Files are merged in name order over the shipped defaults (``policies/default.yaml``, AUTOFIX_POLICY_DEFAULTS;
a directory with a ``default.yaml`` of its own replaces it), so a team's ``zz-team.yaml`` (or the one file a chart's
values give) overrides only the keys it names.
"""

from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.errors import ConfigError
from app.models.causes import Cause


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Namespaces(_Strict):
    allow: list[str] = Field(default_factory=lambda: ["*"])
    deny: list[str] = Field(default_factory=lambda: ["kube-*"])
    # A Namespace carrying this label with the value "true" is never touched, whatever allow says.
    protected_label: str = "autofix.io/protected"
    # The bot's own namespace is always denied (POD_NAMESPACE, set from the downward API).
    deny_own: bool = True


class Limits(_Strict):
    """How often the bot may act: it must never become the agent that "fixes" the same crash all night."""

    open_prs_per_workload_cause: int = Field(default=1, ge=1, le=1)  # one branch per workload and cause
    cooldown_hours_after_closed: float = Field(default=72.0, ge=0)  # a PR closed unmerged is a "no"
    merged_fix_window_hours: float = Field(default=24.0, ge=0)  # recurrence after a merge within it: escalate
    prs_per_hour: int = Field(default=10, ge=0)  # across all workloads
    close_pr_on_resolve: bool = False  # close (not just comment on) an open PR when its alert resolves


class OutcomesPolicy(_Strict):
    """How long the life of a fix is followed (app/outcomes.py): the windows its final outcome is decided in."""

    quiet_hours: float = Field(default=24.0, gt=0)  # rolled out and the alert quiet this long: effective
    decision_hours: float = Field(default=168.0, gt=0)  # open, or merged but not rolled out, this long: stale
    interval_seconds: float = Field(default=900.0, ge=10)  # how often `autofix serve` follows the open ones


class Owners(_Strict):
    """Who reviews the PRs for the namespaces matching ``namespaces`` (globs); every matching entry applies."""

    namespaces: list[str] = Field(min_length=1)
    labels: list[str] = Field(default_factory=list)
    reviewers: list[str] = Field(default_factory=list)  # GitHub logins
    teams: list[str] = Field(default_factory=list)  # team slugs of the repository's organisation


class CausePolicy(_Strict):
    paths: list[str] = Field(default_factory=list)
    enabled: bool = True


class _ScaledBounds(_Strict):
    """A resource raised by a step factor, capped absolutely (``max``) and relative to the value in git."""

    step: float = Field(default=1.5, gt=1.0, le=4.0)
    max_ratio_to_git: float = Field(default=4.0, gt=1.0)


class MemoryLeak(_Strict):
    """When OOM kills are a leak, not a limit too low (app/fixers/memory.py): memory that grows steadily between
    restarts, so a raise only delays the next kill. Both signs are needed: kills at regular intervals well after
    start, and a size in the killed run's log that grows steadily (a cache warming up alone is not a leak)."""

    enabled: bool = True
    min_kills: int = Field(default=3, ge=2)  # OOM kills counted over the pods' restarts (each assumed an OOM kill)
    min_run_minutes: float = Field(default=30.0, ge=0)  # every run lived this long: memory filled up over time
    max_spread: float = Field(default=0.25, ge=0)  # (longest - shortest) / median run length: regular kills
    min_log_samples: int = Field(default=4, ge=2)  # the size printed at least this often in one killed run's log
    min_growth: float = Field(default=2.0, gt=1.0)  # never shrinking, and last >= this x first
    # The same rule read from Prometheus' working set (app/curves.py), instead of the log's size: at least
    # min_kills runs ended by a restart (each min_run_minutes long) grew along a straight line (least squares,
    # r^2 >= min_fit) until they reached the limit, and they are min_share of the runs ended by a restart.
    min_fit: float = Field(default=0.8, gt=0.0, le=1.0)
    min_share: float = Field(default=0.75, gt=0.0, le=1.0)


class MemoryRegression(_Strict):
    """A release that made memory climb (app/curves.py): the previous revision ran flat well under the limit for
    a while, the new one reaches the limit within minutes of its rollout. Rolled back, never raised."""

    enabled: bool = True
    previous_below: float = Field(default=0.6, gt=0.0, lt=1.0)  # the previous revision's peak / its limit
    previous_minutes: float = Field(default=60.0, ge=0)  # ... over at least this long in the window
    within_minutes: float = Field(default=30.0, gt=0)  # the new revision near the limit this soon after its rollout


class MemoryCurve(_Strict):
    """Sizing a memory limit from the working set Prometheus recorded (AUTOFIX_PROMETHEUS_URL)."""

    headroom: float = Field(default=1.25, ge=1.0, le=4.0)  # an undersized limit: observed peak x headroom
    near_limit: float = Field(default=0.9, gt=0.0, le=1.0)  # a working set at this share of the limit reached it
    regression: MemoryRegression = Field(default_factory=MemoryRegression)


class MemoryBounds(_ScaledBounds):
    max: str = "16Gi"
    leak: MemoryLeak = Field(default_factory=MemoryLeak)
    curve: MemoryCurve = Field(default_factory=MemoryCurve)

    @field_validator("max")
    @classmethod
    def _quantity(cls, value: str) -> str:
        from app import quantities

        quantities.parse_bytes(value)
        return value


class CpuBounds(_ScaledBounds):
    """CPU limit raises after CPUThrottlingHigh."""

    max: str = "8"
    # Remove the CPU limit instead of raising it (many teams run without CPU limits). Not applied yet: the
    # editor cannot delete a key, so with true the bot answers no_fix and says to remove it by hand.
    remove_limit: bool = False
    # With metrics: the limit covers the p95 of usage over the window, grown by the share of throttled periods
    # (demand the quota cut off), x headroom; instead of the step.
    headroom: float = Field(default=1.2, ge=1.0, le=4.0)

    @field_validator("max")
    @classmethod
    def _quantity(cls, value: str) -> str:
        from app import quantities

        quantities.parse_cpu_millis(value)
        return value


class HpaBounds(_Strict):
    """maxReplicas raises after KubeHpaMaxedOut; the namespace's ResourceQuota caps them further."""

    step: float = Field(default=1.5, gt=1.0, le=4.0)
    max: int = Field(default=50, ge=1)


class RequestBounds(_Strict):
    """Request cuts for unschedulable pods: fit the largest node with headroom, never below a floor."""

    node_fraction: float = Field(default=0.9, gt=0.0, le=1.0)
    min_ratio_to_git: float = Field(default=0.5, gt=0.0, lt=1.0)
    # With metrics: lowered toward the peak usage of the workload's earlier pods x headroom, never below that
    # peak (the usage replaces min_ratio_to_git as the floor).
    headroom: float = Field(default=1.25, ge=1.0, le=4.0)


class RollbackPolicy(_Strict):
    """Image and command rollbacks: when an earlier revision that no longer runs counts as having worked."""

    # A scaled-down revision must have run at least this long before the rollout replaced it (creation to
    # scale-down): a revision replaced sooner may never have finished its own rollout (progressDeadlineSeconds
    # defaults to 600).
    min_available_seconds: int = Field(default=600, ge=0)

    def too_short(self, ran_seconds: int | None) -> bool:
        """Whether a revision that ran ``ran_seconds`` before it was scaled down (None: it serves now) is not
        proof enough that it worked."""
        return ran_seconds is not None and ran_seconds < self.min_available_seconds


class StartupBounds(_Strict):
    """startupProbes sized for a slow start: the time to ready they may allow (estimate x margin)."""

    max_seconds: int = Field(default=900, ge=10, le=86_400)


class MetricsWindows(_Strict):
    """How far back from the alert's startsAt each kind of series is read (hours)."""

    memory: float = Field(default=72.0, gt=0, le=24 * 90)  # working set, memory limits, restarts
    cpu: float = Field(default=72.0, gt=0, le=24 * 90)  # CPU usage and throttling, CPU limits
    # requests, and the usage of a workload whose pods are Pending (a request is being sized: earlier revisions)
    requests: float = Field(default=168.0, gt=0, le=24 * 90)


class MetricsLabels(_Strict):
    """Label names of the series, where an install relabels them (old cAdvisor: pod_name, container_name)."""

    namespace: str = Field(default="namespace", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    pod: str = Field(default="pod", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    container: str = Field(default="container", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    image: str = Field(default="image", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class MetricsPolicy(_Strict):
    """Reading Prometheus in the evidence stage (AUTOFIX_PROMETHEUS_URL): windows, resolution, time allowed."""

    enabled: bool = True
    window_hours: MetricsWindows = Field(default_factory=MetricsWindows)
    max_points: int = Field(default=1000, ge=10, le=10_000)  # per series and query: step = window / this
    min_step_seconds: int = Field(default=60, ge=1)  # never finer than the scrape interval
    budget_seconds: float = Field(default=20.0, gt=0, le=300)  # all queries of one alert together
    labels: MetricsLabels = Field(default_factory=MetricsLabels)


class LlmPolicy(_Strict):
    """What the optional LLM may do: explain a rule's diagnosis, and propose changes on these paths only."""

    enabled: bool = True
    explain: bool = True  # write the root-cause narrative of a rule's PR
    propose: bool = True  # propose a change when no detector matched
    max_changes: int = Field(default=3, ge=1, le=5)
    max_ratio: float = Field(default=4.0, gt=1.0)  # a numeric value moves at most x4 (or /4) from git
    # Globs relative to each container (and init container) of a kind's pod template ...
    container_fields: list[str] = Field(default_factory=list)
    # ... plus globs over the whole workload object, per kind (e.g. spec.replicas).
    paths: dict[str, list[str]] = Field(default_factory=dict)


class EnvironmentPatterns(_Strict):
    """Globs (lower case) of the values that name an environment: a label's or annotation's value, an Argo CD
    project, a segment of a Flux Kustomization's path (app/risk.py ``_namespace``)."""

    production: list[str] = Field(default_factory=lambda: ["prod", "production", "prd", "live", "prod-*", "*-prod",
                                                           "production-*", "*-production"])
    staging: list[str] = Field(default_factory=lambda: ["staging", "stage", "stg", "preprod", "pre-prod", "uat",
                                                        "qa", "staging-*", "*-staging"])
    development: list[str] = Field(default_factory=lambda: ["dev", "development", "test", "testing", "sandbox",
                                                            "preview", "dev-*", "*-dev"])


class RiskPolicy(_Strict):
    weights: dict[str, float] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=lambda: {"medium": 0.3, "high": 0.6})
    production_namespaces: list[str] = Field(default_factory=lambda: ["prod*"])
    # Namespace labels, then annotations, whose value names the environment, most specific first.
    environment_keys: list[str] = Field(default_factory=lambda: [
        "environment", "env", "app.kubernetes.io/environment", "tier", "app.kubernetes.io/part-of"])
    environments: EnvironmentPatterns = Field(default_factory=EnvironmentPatterns)
    # No signal names the environment: a workload with at least this many replicas that a Service selects is
    # treated as production-like (it serves users, whatever its namespace is called).
    serving_replicas: int = Field(default=2, ge=1)

    @field_validator("weights")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, w in value.items() if w < 0]
        if bad:
            raise ValueError(f"weights must be >= 0: {', '.join(bad)}")
        return value


class DashboardPolicy(_Strict):
    """The dashboard issue (app/dashboard.py): one issue in the GitOps repository the bot keeps current."""

    enabled: bool = True
    title: str = Field(default="GitOps Autofix Dashboard", min_length=1, max_length=200)
    max_items: int = Field(default=25, ge=1, le=200)  # rows per section, newest first
    interval_seconds: float = Field(default=60.0, ge=0)  # serve: at most one update per interval


class CalibrationPolicy(_Strict):
    """`autofix calibrate` (app/calibration.py): the safe rates each risk level must meet, learned from outcomes.
    A fix is safe when it was merged, not reverted and not ineffective. It only proposes thresholds, as a diff."""

    target_safe_rate: float = Field(default=0.9, gt=0.0, lt=1.0)  # a low-risk fix is safe at least this often
    medium_safe_rate: float = Field(default=0.5, gt=0.0, lt=1.0)  # a medium-risk one at least this often
    min_samples: int = Field(default=50, ge=2)  # fewer finished outcomes: calibrate proposes nothing

    @model_validator(mode="after")
    def _ordered(self) -> CalibrationPolicy:
        if self.medium_safe_rate >= self.target_safe_rate:
            raise ValueError("medium_safe_rate must be below target_safe_rate")
        return self


class Policy(_Strict):
    version: int = 1
    namespaces: Namespaces = Field(default_factory=Namespaces)
    kinds: list[str] = Field(default_factory=lambda: ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"])
    causes: dict[Cause, CausePolicy] = Field(default_factory=dict)  # keyed by the cause's value: a typo is an error
    memory: MemoryBounds = Field(default_factory=MemoryBounds)
    cpu: CpuBounds = Field(default_factory=CpuBounds)
    hpa: HpaBounds = Field(default_factory=HpaBounds)
    requests: RequestBounds = Field(default_factory=RequestBounds)
    startup: StartupBounds = Field(default_factory=StartupBounds)
    rollback: RollbackPolicy = Field(default_factory=RollbackPolicy)
    risk: RiskPolicy = Field(default_factory=RiskPolicy)
    calibration: CalibrationPolicy = Field(default_factory=CalibrationPolicy)
    labels: list[str] = Field(default_factory=lambda: ["autofix"])
    limits: Limits = Field(default_factory=Limits)
    outcomes: OutcomesPolicy = Field(default_factory=OutcomesPolicy)
    llm: LlmPolicy = Field(default_factory=LlmPolicy)
    metrics: MetricsPolicy = Field(default_factory=MetricsPolicy)
    owners: list[Owners] = Field(default_factory=list)
    dashboard: DashboardPolicy = Field(default_factory=DashboardPolicy)
    digest: str = ""  # sha256 of the files it was loaded from: the "policy version" recorded in MLflow

    def namespace_allowed(self, namespace: str) -> bool:
        if any(fnmatch.fnmatchcase(namespace, pat) for pat in self.namespaces.deny):
            return False
        return any(fnmatch.fnmatchcase(namespace, pat) for pat in self.namespaces.allow)

    def namespace_denial(self, namespace: str, *, labels: dict[str, str] | None = None,
                         own: str | None = None) -> str | None:
        """Why the bot may not touch ``namespace`` (None when it may): deny globs, its own, protected."""
        if self.namespaces.deny_own and own and namespace == own:
            return f"namespace {namespace} is the bot's own namespace"
        if not self.namespace_allowed(namespace):
            return f"namespace {namespace} is denied by policy"
        if str((labels or {}).get(self.namespaces.protected_label, "")).lower() == "true":
            return f"namespace {namespace} is labelled {self.namespaces.protected_label}=true"
        return None

    def owners_for(self, namespace: str) -> tuple[list[str], list[str], list[str]]:
        """(labels, reviewers, teams) of every owners entry whose globs match ``namespace``."""
        labels: list[str] = []
        reviewers: list[str] = []
        teams: list[str] = []
        for entry in self.owners:
            if any(fnmatch.fnmatchcase(namespace, pat) for pat in entry.namespaces):
                labels += entry.labels
                reviewers += entry.reviewers
                teams += entry.teams
        return list(dict.fromkeys(labels)), list(dict.fromkeys(reviewers)), list(dict.fromkeys(teams))

    def llm_paths_for(self, kind: str) -> list[str]:
        """Globs a model's proposal may change on a ``kind``: none when the LLM is off or proposing is."""
        if not (self.llm.enabled and self.llm.propose):
            return []
        from app.kube import POD_TEMPLATE_PREFIX

        prefix = POD_TEMPLATE_PREFIX.get(kind)
        per_container = [f"{prefix}.spec.{key}[*].{f}" for key in ("containers", "initContainers")
                         for f in self.llm.container_fields] if prefix else []
        return [*self.llm.paths.get(kind, []), *per_container]

    def paths_for(self, cause: str) -> list[str]:
        try:
            cp = self.causes.get(Cause(cause))
        except ValueError:  # not a cause (a plan of a test, a layout check): nothing is allowed
            return []
        return list(cp.paths) if cp and cp.enabled else []


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# Files of the same directory that are not policy files: the GitOps repositories (app/repos.py) and the
# clusters (several clusters per install) are configured beside the policies, in the same ConfigMap.
NOT_POLICIES = frozenset({"repositories.yaml", "repositories.yml", "clusters.yaml", "clusters.yml"})


class Configured(Protocol):
    """What of app.settings.Settings the running policy needs (policies sit below settings)."""

    policy_dir: Path

    def policy_base(self) -> Path | None: ...


def configured(settings: Configured) -> Policy:
    """The running configuration's policy: AUTOFIX_POLICY_DIR over AUTOFIX_POLICY_DEFAULTS."""
    return load(settings.policy_dir, defaults=settings.policy_base())


def layered_over(directory: Path, defaults: Path | None) -> str:
    """``", over FILE"`` when ``load`` puts ``defaults`` under the directory's files (for the lines that show it)."""
    if defaults is None or not directory.is_dir() or (directory / defaults.name).exists():
        return ""
    return f", over {defaults}"


def load(directory: Path, *, setting: str = "AUTOFIX_POLICY_DIR", defaults: Path | None = None) -> Policy:
    """Load and validate every *.yaml in ``directory`` over ``defaults`` (unless the directory has a file of that
    name); ConfigError is one line naming the file and the reason.

    ``setting`` is where the directory came from, named first in each message ("" for a directory given on
    the command line, as `autofix policy check DIR` does).
    """
    prefix = f"{setting}: " if setting else ""
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        raise ConfigError(f"{prefix}{directory} {what}; use a directory of policy *.yaml files "
                          "(the shipped one is policies/)")
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.name not in NOT_POLICIES)
    if defaults is not None and defaults.name not in {p.name for p in files}:
        files.insert(0, defaults)
    merged: dict[str, Any] = {}
    digest = hashlib.sha256()
    for path in files:
        text = _read(path, prefix)
        digest.update(path.name.encode() + b"\0" + text.encode())
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(prefix + _yaml_problem(path, err)) from err
        if not isinstance(data, dict):
            raise ConfigError(f"{prefix}{path}: a policy file must be a mapping (keys such as version, memory)")
        try:
            Policy.model_validate(data)  # each file must be valid on its own, so errors name the file
        except ValidationError as err:
            raise ConfigError(prefix + _explain_at(path, text, err)) from err
        merged = _deep_merge(merged, data)
    return Policy.model_validate({**merged, "digest": digest.hexdigest()[:12]})


def _read(path: Path, prefix: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{prefix}{path}: cannot read the policy file: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{prefix}{path}: not a policy file (not UTF-8 text)") from err


def _yaml_problem(path: Path, err: yaml.YAMLError) -> str:
    """``file:line: not valid YAML: problem``, on one line (PyYAML's own message spans several, with a caret)."""
    mark, started = getattr(err, "problem_mark", None), getattr(err, "context_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None) or ""
    if context and started is not None and (mark is None or started.line != mark.line):
        context += f" (from line {started.line + 1})"  # an unclosed bracket: where it was opened
    return f"{where}: not valid YAML: {f'{context}, ' if context else ''}{problem}"


def _explain_at(path: Path, text: str, err: ValidationError) -> str:
    """``file:line: key.path: reason`` for each error, the line found by walking the YAML node tree."""
    root = yaml.compose(text)
    problems = []
    for e in err.errors():
        line = line_of(root, e["loc"])
        loc = e["loc"][:-1] if e["loc"][-1:] == ("[key]",) else e["loc"]  # a mapping key that is not allowed
        where = ".".join(str(p) for p in loc) or "(root)"
        problems.append(f"{path}:{line}: {where}: {e['msg']}")
    return "; ".join(problems)


def line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int:
    """1-based line of the deepest node along ``loc`` (a missing key points at its parent mapping)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
