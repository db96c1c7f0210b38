"""OOMKilled: the container hit its memory limit. Fix: raise the limit (policy step, capped).

Unless memory grows steadily between restarts (a leak): the detector reads the signs, app/fixers/memory.py
judges them against the policy (``memory.leak``) and escalates instead of raising. The signs are
- how long each pod's last OOM-killed run lived (``lastState.terminated`` startedAt -> finishedAt) and, with 2
  restarts or more, the mean run over all its restarts ((finishedAt - pod ``startTime``) / restartCount: the
  kubelet keeps only the last termination, and its "Started" events live an hour);
- a size the killed run's log prints again and again, next to a word such as cache, queue, backlog, buffer,
  heap, pending, entries or "in memory" ("order cache size: 1200 entries"; a JSON line's message and its numeric
  fields): per line shape (numbers as "#") and position, whether it never shrinks and how much it grew.
They are kept (``OomFacts.leak_signs``) only when such a size grows, so other OOM kills read as before.

When Prometheus' series were read (``Evidence.metrics`` usable) the working set decides (app/fixers/memory.py,
app/curves.py); for a release that made memory climb the facts carry where a rollback would go
(``OomFacts.earlier``: the newest earlier ReplicaSet that ran another image, judged as the image rollback judges it).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from app import kube
from app.detectors import revisions
from app.models.causes import Cause, EarlierImage, KilledRun, LeakSigns, LogGrowth, OomFacts
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence

# What an alert says when it is about this cause (app/causes.py ranks the findings by it).
REASONS = frozenset({"OOMKilled"})
ALERTS = frozenset({"KubernetesContainerOomKiller", "KubeJobFailed"})


def detect(ev: Evidence) -> Diagnosis | None:
    hits = _oom_kills(ev)
    if not hits:
        return None
    # Prefer the container the alert names; else the one killed most often.
    wanted = ev.incident.container
    hits.sort(key=lambda h: (h["container"] != wanted, -h["restarts"]))
    hit = hits[0]
    container, pod = hit["container"], hit["pod"]
    spec, init = kube.container_spec(kube.pod_spec_of(ev.object, _template_kind(ev)), container)
    limits = ((spec or {}).get("resources") or {}).get("limits") or {}
    requests = ((spec or {}).get("resources") or {}).get("requests") or {}
    lines = [
        f"pod {pod} container {container}: lastState.terminated reason=OOMKilled exitCode={hit['exit_code']}"
        f" finishedAt={hit['finished_at']}",
        f"restartCount={hit['restarts']} across {len({h['pod'] for h in hits})} pod(s)",
        f"memory limit={limits.get('memory', 'none')} request={requests.get('memory', 'none')}",
        *[kube.event_line(e) for e in ev.events_for("Pod", pod) if e.get("type") == "Warning"][:5],
    ]
    signs = leak_signs(ev, container, hits)
    lines += _sign_lines(signs)
    # With Prometheus' series a release that made memory climb is rolled back: where to, from the ReplicaSets.
    usable = ev.metrics is not None and ev.metrics.usable and not init
    earlier = _earlier(ev, container, str((spec or {}).get("image") or "")) if usable else None
    finding = Finding(
        cause=Cause.OOM_KILLED,
        confidence=0.95,
        container=container,
        root_cause=(f"Container {container} of {ev.workload.short} was killed by the kernel for exceeding its "
                    f"memory limit of {limits.get('memory', 'none')} (OOMKilled, exit code 137)."),
        evidence=lines,
        facts=OomFacts(container=container, init=init, observed_limit=limits.get("memory"),
                       observed_request=requests.get("memory"), restarts=hit["restarts"], pod=pod,
                       leak_signs=signs, earlier=earlier),
    )
    if "memory" not in limits:
        return Diagnosis(detector="oom", finding=finding, fixable=False,
                         no_fix_reason=(f"container {container} has no memory limit: the OOM kill came from node "
                                        "memory pressure, not from a limit in git"))
    return Diagnosis(detector="oom", finding=finding)


def _earlier(ev: Evidence, container: str, failing: str) -> EarlierImage | None:
    """The newest earlier ReplicaSet that ran another image of ``container``, judged as the image rollback judges
    it (app/detectors/revisions.py); None when no earlier revision ran another image."""
    if not failing:
        return None

    def image_of(rs: dict[str, Any]) -> str:
        found, _ = kube.container_spec(kube.pod_spec_of(rs, "ReplicaSet"), container)
        return str((found or {}).get("image") or "")

    found = revisions.previous(ev, differs=lambda rs: image_of(rs) not in ("", failing), ran=image_of)
    if found is None:
        return None
    rs = found.replicaset
    ran, unproven = (None, found.reason) if isinstance(found, revisions.Unproven) else (found.ran_seconds, None)
    return EarlierImage(failing_image=failing, image=image_of(rs), replicaset=kube.name(rs),
                        revision=kube.revision(rs), pod_template_hash=kube.labels_of(rs).get("pod-template-hash"),
                        ran_seconds=ran, unproven=unproven)


def _template_kind(ev: Evidence) -> str:
    return str(ev.object.get("kind") or ev.workload.kind)


def _oom_kills(ev: Evidence) -> list[dict[str, Any]]:
    hits = []
    for pod in ev.pods:
        for cs, init in kube.container_statuses(pod):
            for state_key in ("lastState", "state"):
                term = (cs.get(state_key) or {}).get("terminated") or {}
                if term.get("reason") == "OOMKilled":
                    hits.append({"pod": kube.name(pod), "container": cs.get("name"), "init": init,
                                 "exit_code": term.get("exitCode"), "finished_at": term.get("finishedAt"),
                                 "started_at": term.get("startedAt"),
                                 "pod_started": (pod.get("status") or {}).get("startTime"),
                                 "restarts": int(cs.get("restartCount") or 0)})
                    break
    return hits


# ---- leak signs -------------------------------------------------------------------------------------------

_SIZE_WORDS = (r"cache[sd]?|queue[sd]?|queue[ _-]?(?:size|length|depth)|backlog|buffer(?:ed|s)?|pending|heap|"
               r"retained|entries|items|objects|sessions|goroutines|in[ _-]memory|size|len|length|depth")
_WORD_BEFORE = re.compile(rf"(?i)(?<![A-Za-z])(?:{_SIZE_WORDS})(?![A-Za-z])[^0-9\n]{{0,24}}$")
_WORD_AFTER = re.compile(rf"(?i)^\s*(?:[A-Za-z]+\s+)?(?:{_SIZE_WORDS})(?![A-Za-z])")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
_DIGITS = re.compile(r"\d+(?:\.\d+)?")
_SKIPPED_FIELDS = frozenset({"time", "timestamp", "ts", "pid", "level", "severity", "line", "port", "status",
                             "statuscode", "code", "duration", "latency", "responsetime", "elapsed"})
MAX_SERIES = 5
MAX_WHAT = 80


def leak_signs(ev: Evidence, container: str, hits: list[dict[str, Any]]) -> LeakSigns | None:
    """The runs the kernel ended and the sizes their logs show growing; None when no size grows."""
    growth: list[LogGrowth] = []
    for hit in hits:
        if hit["container"] == container:
            growth += _growth(str(hit["pod"]), ev.logs.get(f"{hit['pod']}/{container}", ""))
    if not growth:
        return None
    runs = [run for hit in hits if hit["container"] == container and (run := _run(hit)) is not None]
    growth.sort(key=lambda g: -(g.last / g.first if g.first else 0.0))
    return LeakSigns(runs=tuple(runs), growth=tuple(growth[:MAX_SERIES]))


def _run(hit: dict[str, Any]) -> KilledRun | None:
    started, finished = _time(hit.get("started_at")), _time(hit.get("finished_at"))
    if started is None or finished is None or finished < started:
        return None
    restarts, pod_started = int(hit["restarts"]), _time(hit.get("pod_started"))
    mean = (finished - pod_started) / restarts if restarts >= 2 and pod_started is not None and \
        pod_started <= started else None
    return KilledRun(pod=str(hit["pod"]), seconds=finished - started, restarts=restarts, mean_seconds=mean)


def _time(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() if value else None
    except ValueError:
        return None


def _growth(pod: str, log: str) -> list[LogGrowth]:
    """Per line shape and number position, the values next to a size word, in log order."""
    series: dict[tuple[str, int], list[float]] = {}
    what: dict[tuple[str, int], str] = {}
    for line in log.splitlines():
        text = _message(line)
        shape = _DIGITS.sub("#", text)  # timestamps and ids too: lines of one shape differ in numbers only
        for position, match in enumerate(_NUMBER.finditer(text)):
            if _WORD_BEFORE.search(text[:match.start()]) or _WORD_AFTER.match(text[match.end():]):
                key = (shape, position)
                series.setdefault(key, []).append(float(match.group()))
                what.setdefault(key, _around(text, match))
    found = []
    for key, values in series.items():
        if len(values) >= 2 and values[-1] > values[0]:
            found.append(LogGrowth(pod=pod, what=what[key], samples=len(values), first=values[0], last=values[-1],
                                   never_shrinks=all(b >= a for a, b in zip(values, values[1:], strict=False))))
    return found


def _around(text: str, match: re.Match[str]) -> str:
    """The words around a size, its numbers as "#": what the reason quotes ("loaded # transactions, # in memory")."""
    start = text.rfind(" ", 0, max(0, match.start() - 40)) + 1
    end = text.find(" ", match.end() + 16)
    window = " ".join(_DIGITS.sub("#", text[start:end if end > 0 else len(text)]).split())
    return window[:MAX_WHAT]


def _message(line: str) -> str:
    """A JSON line's message and its numeric fields as ``key=value`` (not its time, pid or latency); else the
    line as it is."""
    stripped = line.strip()
    if not stripped.startswith("{"):
        return stripped
    try:
        data = json.loads(stripped)
    except ValueError:
        return stripped
    if not isinstance(data, dict):
        return stripped
    message = str(data.get("message") or data.get("msg") or "")
    fields = [f"{k}={v}" for k, v in data.items() if isinstance(v, int | float) and not isinstance(v, bool)
              and k.lower().replace("_", "") not in _SKIPPED_FIELDS]
    return " ".join([message, *fields]).strip()


def _sign_lines(signs: LeakSigns | None) -> list[str]:
    if signs is None:
        return []
    lines = [f"pod {r.pod}: the OOM-killed run lived {_duration(r.seconds)}"
             + (f"; {r.restarts} restarts, {_duration(r.mean_seconds)} per run on average"
                if r.mean_seconds is not None else "") for r in signs.runs]
    lines += [f"log of pod {g.pod}: \"{g.what}\" went from {g.first:g} to {g.last:g} over {g.samples} lines"
              + (", never shrinking" if g.never_shrinks else "") for g in signs.growth]
    return lines


def _duration(seconds: float) -> str:
    """2 h 01 min, 14 min: how long a run lived, as an on-call reads it."""
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
