"""The cause registry: one line per cause, its detector, the facts it hands over and its fixer.

A cause is a plugin with one typed contract and optional capabilities (the idea of renovate's
lib/modules/manager/api.ts): ``detect`` reads the evidence (absent: the cause is found elsewhere, by the
stuck-rollout context or by the optional LLM), ``fix`` turns the facts into a plan (absent: the cause is
reported, never fixed from git), ``reasons``/``alerts`` name what an alert says when it is about the cause.
``Plugin`` binds the fixer to the facts type, so mypy checks each line and ``plan`` narrows the facts once.
A fixer that sizes a value (memory, CPU, requests, maxReplicas) is also registered as ``size``: the same
function, handed what Prometheus said (``Evidence.metrics``, app/curves.py reads it) as a fourth argument.

Adding a cause: its member (and facts) in app/models/causes.py, its detector and fixer modules, one line
here, its paths in policies/default.yaml (a PR title in app/render.py's CAUSE_TITLES is optional).

Order matters: detectors run in the order of the lines, the most specific signal first (an OOM kill
explains a crash loop; an application crash is what is left when nothing else matched). A detector that
reports several causes (config_refs) runs once, at its first line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.detectors import (
    app_crash,
    commands,
    config_refs,
    cpu,
    hpa,
    image_pull,
    oom,
    probes,
    rollout,
    scheduling,
    storage,
)
from app.errors import NoFix
from app.fixers import commands as command_fix
from app.fixers import config_refs as config_fix
from app.fixers import cpu as cpu_fix
from app.fixers import hpa as hpa_fix
from app.fixers import image as image_fix
from app.fixers import memory as memory_fix
from app.fixers import model as model_fix
from app.fixers import probes as probe_fix
from app.fixers import requests as requests_fix
from app.fixers import storage as storage_fix
from app.models import causes as c
from app.models.causes import Cause
from app.models.changes import Plan
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.models.metrics import Metrics
from app.policies import Policy

F = TypeVar("F", bound=c.Facts)
Detect = Callable[[Evidence], Diagnosis | None]


@dataclass(frozen=True)
class Plugin(Generic[F]):
    cause: Cause
    facts: type[F]  # what the fixer needs (a fixable finding's facts are an instance of it)
    detect: Detect | None = None
    fix: Callable[[F, dict[str, Any], Policy], Plan] | None = None
    size: Callable[[F, dict[str, Any], Policy, Metrics | None], Plan] | None = None  # the fixer, with the metrics
    reasons: frozenset[str] = frozenset()  # the alert's `reason` label (kube-state-metrics' waiting reason)
    alerts: frozenset[str] = frozenset()  # alert names


REGISTRY = (  # not annotated: each line is type-checked on its own (fixer against facts)
    # alert-specific: they match only the alert that names their cause, so they explain it first
    Plugin(Cause.CPU_THROTTLING, c.CpuFacts, cpu.detect, cpu_fix.plan, cpu_fix.plan, alerts=cpu.ALERTS),
    Plugin(Cause.HPA_MAXED_OUT, c.HpaFacts, hpa.detect, hpa_fix.plan, hpa_fix.plan, alerts=hpa.ALERTS),
    Plugin(Cause.OOM_KILLED, c.OomFacts, oom.detect, memory_fix.plan, memory_fix.plan, reasons=oom.REASONS,
           alerts=oom.ALERTS),
    Plugin(Cause.IMAGE_PULL_AFTER_ROLLOUT, c.ImageRollbackFacts, image_pull.detect, image_fix.plan,
           reasons=image_pull.REASONS),
    Plugin(Cause.UNSCHEDULABLE, c.SchedulingFacts, scheduling.detect, requests_fix.plan, requests_fix.plan),
    Plugin(Cause.PVC_STORAGE_CLASS, c.StorageClassFacts, storage.detect, storage_fix.plan),
    Plugin(Cause.CONFIG_REFERENCE, c.ConfigTypoFacts, config_refs.detect, config_fix.plan,
           reasons=config_refs.REASONS),
    Plugin(Cause.MISSING_SECRET, c.ConfigRefFacts, config_refs.detect, reasons=config_refs.REASONS),
    Plugin(Cause.MISSING_CONFIG, c.ConfigRefFacts, config_refs.detect, reasons=config_refs.REASONS),
    Plugin(Cause.BAD_COMMAND, c.CommandRollbackFacts, commands.detect, command_fix.plan, reasons=commands.REASONS),
    Plugin(Cause.PROBE_MISCONFIGURED, c.ProbeFacts, probes.detect, probe_fix.plan),
    Plugin(Cause.SLOW_START, c.SlowStartFacts, probes.detect_slow_start, probe_fix.plan_slow_start),
    # the application crash is what is left when no specific signal explains the failure: keep it LAST
    Plugin(Cause.APPLICATION_ERROR, c.CrashFacts, app_crash.detect, alerts=app_crash.ALERTS),
    # found without a detector of their own
    Plugin(Cause.ROLLOUT_STUCK, c.RolloutFacts),  # rollout.annotate, when no detector explains a stuck rollout
    Plugin(Cause.MODEL_PROPOSED, c.ProposalFacts, fix=model_fix.plan),  # app/advice.py, gated by policy.llm
)
BY_CAUSE: dict[Cause, Plugin[Any]] = {p.cause: p for p in REGISTRY}
# Each detector once, at its first line.
DETECTORS: tuple[Detect, ...] = tuple(dict.fromkeys(p.detect for p in REGISTRY if p.detect is not None))


def diagnose(evidence: Evidence) -> list[Diagnosis]:
    """Every detector that matched, the one that best explains the alert first, the rest noted."""
    found = [d for detect in DETECTORS if (d := detect(evidence)) is not None]
    return rollout.annotate(evidence, rank(evidence, found))  # a stuck rollout is the first finding's context


def rank(evidence: Evidence, found: list[Diagnosis]) -> list[Diagnosis]:
    """Stable order: findings the alert's reason/name points at, then its container, then registry order."""
    labels = evidence.incident.labels
    reason, alertname = labels.get("reason", ""), evidence.incident.alertname
    wanted = {p.cause for p in REGISTRY if reason in p.reasons or alertname in p.alerts}
    container = labels.get("container")

    def key(d: Diagnosis) -> tuple[bool, bool]:
        return (bool(wanted) and d.cause not in wanted,
                bool(container) and d.finding.container not in (None, container))

    return sorted(found, key=key)


def plan(diagnosis: Diagnosis, document: dict[str, Any], policy: Policy, *, metrics: Metrics | None = None) -> Plan:
    """The fixer's plan for the diagnosis' cause; a rule's plan may touch the policy's paths for the cause, a
    model's carries the ``llm`` paths it was gated with. ``metrics``: what Prometheus said (None: not looked), for
    the fixers that size from it."""
    plugin = BY_CAUSE.get(diagnosis.cause)
    if plugin is None or plugin.fix is None:
        raise NoFix(f"no fixer knows how to change git for cause {diagnosis.cause}", code="no_fixer")
    facts = diagnosis.finding.facts
    if not isinstance(facts, plugin.facts):
        raise NoFix(f"the {diagnosis.cause} finding lacks what its fixer needs ({type(facts).__name__})",
                    code="no_fixer")
    result = plugin.size(facts, document, policy, metrics) if plugin.size else plugin.fix(facts, document, policy)
    if diagnosis.proposed_by != "rule":
        return result
    # The plan's own cause: an OOM kill after a release that made memory climb is fixed by an image rollback,
    # held to the image rollback's paths (app/fixers/memory.py), never to the memory fields'.
    return result.model_copy(update={"allowed_paths": policy.paths_for(result.cause)})
