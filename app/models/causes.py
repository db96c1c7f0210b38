"""Causes, defined once, and the facts each cause's detector hands its fixer.

A cause's value is an identifier the outside world keeps: it is part of branch names
(``autofix/<ns>/<name>/<cause>``), the MLflow ``cause`` tag, policy keys (``causes.<cause>.paths``), the
manifest opt-out annotation and the ledger's rows. Never change a value; add a member.

Facts are frozen, typed models: the numbers and names a fixer needs (the observed limit, the previous image),
serialised into diagnosis.json exactly as the dicts they replace were. Where a detector reports a cause it
cannot fix, its facts are the base class; the fixable finding carries the subclass with what the fix needs
(``ImageRollbackFacts`` adds the previous working image to ``ImagePullFacts``), so a fixer never meets a
missing key. The detector and the fixer of a cause are registered together in ``app/causes.py``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)


class Cause(StrEnum):
    OOM_KILLED = "oom_killed"
    IMAGE_PULL_AFTER_ROLLOUT = "image_pull_after_rollout"
    UNSCHEDULABLE = "unschedulable"
    CPU_THROTTLING = "cpu_throttling"
    HPA_MAXED_OUT = "hpa_maxed_out"
    PVC_STORAGE_CLASS = "pvc_storage_class"
    CONFIG_REFERENCE = "config_reference"
    MISSING_SECRET = "missing_secret"
    MISSING_CONFIG = "missing_config"
    PROBE_MISCONFIGURED = "probe_misconfigured"
    SLOW_START = "slow_start"
    BAD_COMMAND = "bad_command"
    APPLICATION_ERROR = "application_error"
    ROLLOUT_STUCK = "rollout_stuck"
    MODEL_PROPOSED = "model_proposed"


def _number_as_text(value: Any) -> Any:
    """A quantity written as a bare number (``cpu: 2``) is the same quantity as its text."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


Quantity = Annotated[str, BeforeValidator(_number_as_text)]
Port = int | str  # a number or a named container port (IntOrString)


class Facts(BaseModel):
    """What every finding may carry. ``rollout_stuck`` is set by app/detectors/rollout.py on the finding a
    stuck rollout puts in context; it is written last, and only when set, as the dict it replaces had it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rollout_stuck: bool = False
    # Fields added after diagnosis.json's format was set: written only when they hold a value.
    _omitted_when_none: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _rollout_last(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in self._omitted_when_none:
            if data.get(key, 0) is None:
                del data[key]
        if data.pop("rollout_stuck", False):
            data["rollout_stuck"] = True
        return data


# ---------------------------------------------------------------- resources


class KilledRun(BaseModel):
    """One pod's last OOM-killed run of the container: how long it lived, and over all its restarts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pod: str
    seconds: float  # lastState.terminated startedAt -> finishedAt
    restarts: int
    mean_seconds: float | None = None  # (finishedAt - pod startTime) / restartCount, with 2 restarts or more


class LogGrowth(BaseModel):
    """A size the killed run's log prints again and again (a cache, a queue, a backlog), in log order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pod: str
    what: str  # the line with its numbers as "#" (bounded): "order cache size: # entries"
    samples: int
    first: float
    last: float
    never_shrinks: bool


class LeakSigns(BaseModel):
    """What app/detectors/oom.py saw of memory growing between restarts; app/fixers/memory.py judges it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runs: tuple[KilledRun, ...] = ()
    growth: tuple[LogGrowth, ...] = ()


class EarlierImage(BaseModel):
    """The newest earlier ReplicaSet that ran another image of the container (app/detectors/revisions.py): where a
    release that made memory climb is rolled back to (app/fixers/memory.py), when the working set says so."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    failing_image: str  # what the container runs now
    image: str
    replicaset: str
    revision: int
    pod_template_hash: str | None  # how its pods' series are told apart (the revision app/curves.py names)
    ran_seconds: int | None = None  # None: its pods serve now; else how long it ran before it was scaled down
    unproven: str | None = None  # why the evidence does not show it worked (then no rollback)


class OomFacts(Facts):
    container: str
    init: bool
    observed_limit: Quantity | None  # None: no memory limit, the kill came from node pressure (no fix)
    observed_request: Quantity | None
    restarts: int
    pod: str
    leak_signs: LeakSigns | None = None  # only when a killed run's log shows a size growing
    earlier: EarlierImage | None = None  # only when Prometheus' series were read (a rollback may follow)
    _omitted_when_none: ClassVar[frozenset[str]] = frozenset({"leak_signs", "earlier"})


class CpuFacts(Facts):
    container: str
    init: bool
    observed_limit: Quantity | None  # None: no CFS quota, the throttling does not come from git (no fix)
    observed_request: Quantity | None
    throttled: str  # "87.5%" as the alert says it, or "more than 25%"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ResourceNeed(_Value):
    """One resource (cpu or memory, base units) the pod requests against the largest eligible node."""

    container: str  # the container requesting the most
    container_request: int
    others: int  # what the pod's other containers request
    pod_request: int
    allocatable: int
    allocatable_raw: str  # as the node reports it
    node: str
    unit: str  # "bytes" or "millicores"


class SchedulingFacts(Facts):
    pod: str
    resources: dict[str, ResourceNeed]  # "cpu"/"memory" -> need, only those no node can satisfy
    container: str | None


class HpaFacts(Facts):
    max_replicas: int
    current_replicas: int
    quota_room: int | None  # pods the namespace's ResourceQuotas still admit; None: no quota


class StorageClassFacts(Facts):
    claim: str
    missing_class: str
    storage_class: str | None  # the unique existing class with a near name
    template: str | None  # the StatefulSet volumeClaimTemplate the claim comes from


# ---------------------------------------------------------------- images and commands


class GitQuestion(_Value):
    """A rollback the cluster's evidence cannot prove (no earlier ReplicaSet left, or one scaled down with no trace
    of when): git's history of the field may (app/stages/revision.py). The earlier ReplicaSet the cluster does
    show, if any, and the image it ran: git's earlier value must be that one."""

    replicaset: str | None = None
    revision: int | None = None
    image: str | None = None


class ImagePullFacts(Facts):
    container: str
    init: bool
    failing_image: str
    pod: str
    # Only on an unfixable finding the revision stage may prove from git; never serialised (diagnosis.json keeps
    # its keys): the stage's own decision records that git was asked and what it said.
    ask_git: GitQuestion | None = Field(default=None, exclude=True)


class ImageRollbackFacts(ImagePullFacts):
    """The newest older ReplicaSet shown to have worked (app/detectors/revisions.py), and the image it ran; or,
    when no ReplicaSet shows it, the image git had before the failing one (``in_git``, app/stages/revision.py)."""

    previous_image: str
    previous_replicaset: str | None  # None: proven from git's history alone
    previous_revision: int | None
    # None: its pods serve now; else how long it ran before it was scaled down, or how long git had it (and the
    # GitOps controller ran it): held against the policy
    previous_ran_seconds: int | None = None
    in_git: str | None = None  # how git's history shows it: "git had ... until commit ..." (the plan's reason)
    _omitted_when_none: ClassVar[frozenset[str]] = frozenset({"previous_ran_seconds", "in_git"})


class CommandFacts(Facts):
    container: str
    init: bool
    executable: str  # what the runtime could not exec
    pod: str
    failing_command: list[str] | None
    failing_args: list[str] | None


class CommandRollbackFacts(CommandFacts):
    """The newest ReplicaSet shown to have worked (app/detectors/revisions.py) with another command or args."""

    previous_command: list[str] | None
    previous_args: list[str] | None
    previous_replicaset: str
    previous_revision: int
    previous_ran_seconds: int | None = None  # as in ImageRollbackFacts
    _omitted_when_none: ClassVar[frozenset[str]] = frozenset({"previous_ran_seconds"})


class CrashFacts(Facts):
    container: str
    pod: str
    exit_code: int
    exception: str
    restarts: int


class RolloutFacts(Facts):
    replicaset: str  # the new ReplicaSet whose pods never became ready


# ---------------------------------------------------------------- configuration references and probes


class ConfigRefFacts(Facts):
    """A ConfigMap, a Secret or one of their keys that a pod references and that does not exist."""

    kind: str  # "ConfigMap" or "Secret"
    missing: str
    key: str | None
    container: str | None
    pod: str
    references: list[str]  # field paths below the pod spec that name it


class ConfigTypoFacts(ConfigRefFacts):
    replacement: str  # the existing ConfigMap (or key) with the unique near name


class ProbeChange(_Value):
    """One more probe of the same container to correct the same way (two probes answering 404 at one path)."""

    probe: str
    handler: str
    field: str
    old: Port | None
    new: Port | None


class ProbeFacts(Facts):
    container: str
    init: bool
    probe: str  # livenessProbe, readinessProbe or startupProbe
    handler: str  # httpGet, tcpSocket or grpc
    field: str  # the handler's field that is wrong: "port" or "path"
    old: Port | None
    new: Port | None  # None: which port or path serves the probe is a guess (no fix)
    others: list[ProbeChange] | None = None  # further probes of the container failing the same way
    _omitted_when_none: ClassVar[frozenset[str]] = frozenset({"others"})


class SlowStartFacts(Facts):
    container: str
    init: bool
    observed_seconds: float
    allowed_seconds: float
    needed_seconds: int
    has_startup_probe: bool
    # How observed_seconds was read: None for a start time the log states, else "progress" (a counter's rate
    # until the kill) or "previous revision" (how long the last revision took to become ready).
    basis: str | None = None
    _omitted_when_none: ClassVar[frozenset[str]] = frozenset({"basis"})


# ---------------------------------------------------------------- the optional LLM


class ProposedChange(_Value):
    """One field a model proposed to set: untrusted until app/fixers/model.py has gated it."""

    path: str
    value: bool | int | float | str
    reason: str


class ProposalFacts(Facts):
    model: str
    changes: list[ProposedChange]
