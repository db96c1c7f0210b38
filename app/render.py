"""Branch name, commit message, PR title, body and comments: all rendered from the diagnosis and the change record.

Branch names are unique per (cluster, namespace, kind, name, cause) and always valid git ref names: the
readable ``autofix/<namespace>/<name>/<cause>`` when that is exact and valid, else shortened and sanitised
parts plus a short hash of the full identity (see ``branch``).

Anything that came from the cluster, an alert, the repository or a model is untrusted. Titles and commit
messages hold only validated identifiers and computed values (a value that is not a plain token is named,
never quoted). In the PR body every untrusted string is escaped for the place it lands in: prose
(``_text``: markdown punctuation escaped, URLs shown as code), inline code (``_code``: a backtick delimiter
longer than any run inside), table cells (pipes escaped, so a row keeps its columns) and code blocks
(``_fence``: a fence longer than any backtick run inside). Mentions and closing keywords are neutralised
everywhere with a zero-width space, so nothing pings a team or closes an issue on merge.

When the sizing read metrics (``Plan.curve``) the body has a Metrics section: a Mermaid ``xychart-beta`` of the
metric against its limit or request (app/charts.py makes the chart; its texts keep only a safe character set, so
no name can end a string, the fence or a statement, or start a directive), a one-row table of the statistics and
the verdict, and the query. The body stays within ``MAX_BODY_CHARS``: the chart is drawn with fewer points, then
left out, when the rest of the body is long.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from app import charts, redact
from app.models.causes import Cause, CommandRollbackFacts
from app.models.changes import ChangeSet, TrackRecord
from app.models.diagnosis import Diagnosis
from app.models.incident import WorkloadRef, utc
from app.models.metrics import MAX_CURVE_POINTS, Curve
from app.models.runs import RECORD_REF, record_ref

MAX_LINE = 300
MAX_EVIDENCE_LINES = 20
MAX_DIFF_CHARS = 20_000
MAX_TITLE = 250  # GitHub refuses titles over 256 characters
MAX_BODY_CHARS = 60_000  # GitHub refuses bodies over 65,536 characters; the ledger marker follows the body
CHART_POINTS = (MAX_CURVE_POINTS, 30, 15, 0)  # tried in turn until the body fits; 0: no chart, table and query only
MAX_PROMQL = 2000
PROMQL_LINE = 160
MAX_STATS = 8
# Our own Mermaid directive (nothing untrusted in it): the default theme draws the first line in near-white.
CHART_INIT = ('%%{init: {"xyChart": {"height": 400}, "themeVariables": {"xyChart": {"plotColorPalette": '
              '"#2563eb,#dc2626,#16a34a"}}}}%%')
CHART_COLORS = ("blue", "red", "green")  # the palette's names, for the caption
VALUE_STATS = ("min", "mean", "p50", "p90", "p95", "p99", "max", "peak")  # in the curve's unit, shown first, in order

BRANCH_PREFIX = "autofix/"
DEFAULT_KIND = "Deployment"  # the kind whose branches carry no kind suffix (the README's names)
READABLE_NAME = 63  # names up to this length are shown whole in a branch (the old cut: branches stay the same)
SHORT_NAME = 40  # a longer or sanitised name keeps this many characters, and the hash tells it apart
HASH_CHARS = 10
MAX_BRANCH = 200  # well inside what git, GitHub and GitLab take; the hashed form is at most 195
SHORT_CLUSTER = 30  # a hashed name keeps this much of the cluster
OWNER_CHARS = 16
ZWSP = "\u200b"

CAUSE_TITLES: dict[Cause, tuple[str, str, str]] = {
    # cause: (title with the value, title when the value is not a plain token, why)
    Cause.OOM_KILLED: ("Raise memory limit of {w} to {new}", "Raise memory limit of {w}", "after OOMKilled"),
    Cause.IMAGE_PULL_AFTER_ROLLOUT: ("Roll back image of {w} to {new}", "Roll back image of {w} to the previous "
                                     "revision", "after ImagePullBackOff"),
    Cause.MODEL_PROPOSED: ("Set {field} of {w} to {new}", "Set {field} of {w}", "(proposed by a model)"),
    Cause.CONFIG_REFERENCE: ("Fix ConfigMap reference of {w} to {new}", "Fix ConfigMap reference of {w}",
                             "after CreateContainerConfigError"),
    Cause.PROBE_MISCONFIGURED: ("Point {field} of {w} at {new}", "Correct {field} of {w}", "after probe failures"),
    Cause.SLOW_START: ("Give {w} time to start with a startupProbe", "Give {w} time to start with a startupProbe",
                       "after liveness kills during startup"),
    Cause.BAD_COMMAND: ("Roll back command of {w} to revision {revision}", "Roll back command of {w} to the "
                        "previous revision", "after executable not found"),
    Cause.UNSCHEDULABLE: ("Lower {field} of {w} to {new}", "Lower {field} of {w}",
                          "to fit the largest node (FailedScheduling)"),
    Cause.CPU_THROTTLING: ("Raise CPU limit of {w} to {new}", "Raise CPU limit of {w}", "after CPUThrottlingHigh"),
    Cause.HPA_MAXED_OUT: ("Raise maxReplicas of {w} to {new}", "Raise maxReplicas of {w}", "after KubeHpaMaxedOut"),
    Cause.PVC_STORAGE_CLASS: ("Use StorageClass {new} for {w}", "Correct the StorageClass of {w}",
                              "after ProvisioningFailed"),
}
# Kinds whose branch names stay readable (kind suffix in lower case); any other kind gets a hashed name.
KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "HorizontalPodAutoscaler", "Pod")

_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}\Z)[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
_IDENT = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_AMBIGUOUS_CAUSE = re.compile(f"_(?:[0-9a-f]{{{HASH_CHARS}}}|{'|'.join(k.lower() for k in KINDS)})$")
_LEGACY_SLUG = re.compile(r"[^a-z0-9.-]+")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
# Plain tokens a title or commit message may quote: quantities, numbers, names, image references.
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,99}|[A-Za-z0-9][A-Za-z0-9._/:-]{0,199}@sha256:[a-f0-9]{64}")
_FIELD = re.compile(r"[A-Za-z0-9_.\[\]=/-]{1,200}")
_PATH = re.compile(r"[A-Za-z0-9_.+/-]{1,200}")

# GitHub closes an issue on merge for "<keyword> #N", "<keyword>: owner/repo#N" or "<keyword> <issue URL>".
_CLOSING = re.compile(r"(?i)(?<![a-z0-9])(close[sd]?|fix(?:e[sd])?|resolve[sd]?)(?=[\s:\\]*(?:#|gh-\d|[\w.-]+/[\w.-]+#|"
                      r"https?://|www\.))")
_MENTION_CODE = re.compile(r"(?<![\w@])@(?=[A-Za-z0-9])")  # what GitHub would read as a mention
_MENTION_TEXT = re.compile(r"@(?=[A-Za-z0-9])")  # in prose also e-mail addresses, which GitHub links
_ISSUE_REF = re.compile(r"(?i)(#|\bgh-)(?=\d)")  # "#12" and "GH-12" link (and cross-reference) an issue
_URL = re.compile(r"(?i)(?:[a-z][a-z0-9+.-]*://|www\.|mailto:|xmpp:)\S*")
_MD_SPECIAL = re.compile(r"[\\`*_\[\]<>|#&~!]")
# A URL that may be a Markdown link target as is: http(s), no space, bracket, parenthesis, quote, backtick or
# "@" (a mention's start once the body is neutralised); Prometheus and runbook URLs are percent-encoded.
_SAFE_URL = re.compile(r"https?://[A-Za-z0-9\-._~:/?#!$&*+,;=%]+")
MAX_URL_CHARS = 2000
_BLOCK_START = re.compile(r"^(?:[-+=]|\d{1,9}(?=[.)]))")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_BACKTICKS = re.compile(r"`+")


# ---------------------------------------------------------------- branch names


def identity(workload: WorkloadRef, cause: str, *, cluster: str | None = None) -> str:
    """A digest of everything a branch stands for: cluster, namespace, kind, name, cause."""
    raw = json.dumps([cluster or None, workload.namespace, workload.kind, workload.name, cause])  # unambiguous
    return hashlib.sha256(raw.encode()).hexdigest()


def owner(workload: WorkloadRef, cause: str, *, cluster: str | None = None) -> str:
    """The id the bot's commits carry (``Autofix-Id`` trailer), so a push can tell whose change a branch holds."""
    return identity(workload, cause, cluster=cluster)[:OWNER_CHARS]


def branch(workload: WorkloadRef, cause: str, *, cluster: str | None = None) -> str:
    """``autofix/[<cluster>.]<namespace>/<name>/<cause>[-<kind>]`` when that is exact and a valid ref, else with a hash.

    The readable form is used only when every part is a valid Kubernetes name (namespace and cluster: DNS labels;
    name: DNS subdomain of at most ``READABLE_NAME`` characters), the cause an identifier, the kind known, and git
    accepts the result (``x.lock`` is a valid name but not a valid ref component). A namespace has no dot, so
    ``<cluster>.<namespace>`` never reads as another cluster's or a cluster-less name, and every name keeps four
    components (one branch is never the directory of another). Otherwise the parts are shortened to ``[a-z0-9-]``
    and the last one ends with ``-<10 hex>`` of the full identity: no readable name ends like that, so a hashed name
    never equals a readable one.
    """
    cluster = cluster or None
    tail = cause.replace("_", "-") + ("" if workload.kind == DEFAULT_KIND else f"-{workload.kind.lower()}")
    scope = workload.namespace if cluster is None else f"{cluster}.{workload.namespace}"
    readable = f"{BRANCH_PREFIX}{scope}/{workload.name}/{tail}"
    exact = (_readable_cause(cause) and workload.kind in KINDS
             and _DNS_LABEL.fullmatch(workload.namespace) is not None
             and (cluster is None or _DNS_LABEL.fullmatch(cluster) is not None)
             and _DNS_SUBDOMAIN.fullmatch(workload.name) is not None and len(workload.name) <= READABLE_NAME)
    if exact and len(readable) <= MAX_BRANCH and valid_branch(readable):
        return readable
    digest = identity(workload, cause, cluster=cluster)[:HASH_CHARS]
    scope = _component(workload.namespace, 63) if cluster is None else \
        f"{_component(cluster, SHORT_CLUSTER)}-{_component(workload.namespace, 63)}"  # no ".lock" ending
    return f"{BRANCH_PREFIX}{scope}/{_component(workload.name, SHORT_NAME)}/{_component(tail, 40)}-{digest}"


def _readable_cause(cause: str) -> bool:
    """A cause shown as is: an identifier that cannot be mistaken for another cause plus a kind or a hash."""
    return _IDENT.fullmatch(cause) is not None and _AMBIGUOUS_CAUSE.search(cause) is None


def legacy_branch(workload: WorkloadRef, cause: str) -> str:
    """The branch name of earlier versions (parts cut at 63 characters, no kind): to find their open PRs."""
    return f"autofix/{_legacy_slug(workload.namespace)}/{_legacy_slug(workload.name)}/" \
           f"{_legacy_slug(cause.replace('_', '-'))}"


def valid_branch(name: str) -> bool:
    """What ``git check-ref-format --branch`` accepts (git-check-ref-format(1), rules 1-10)."""
    if not name or name.startswith("-") or name == "@":
        return False
    if ".." in name or "@{" in name or _REF_FORBIDDEN.search(name) or name.endswith((".", "/")):
        return False
    return all(part and not part.startswith(".") and not part.endswith(".lock") for part in name.split("/"))


def _component(text: str, limit: int) -> str:
    """A branch path component that is always valid: lower-case letters, digits and inner dashes."""
    part = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return part or "x"


def _legacy_slug(value: str) -> str:
    return _LEGACY_SLUG.sub("-", value.lower()).strip("-")[:63] or "x"


# ---------------------------------------------------------------- title and commit message (identifiers only)


def title(workload: WorkloadRef, diagnosis: Diagnosis, changeset: ChangeSet) -> str:
    """One line of validated identifiers and computed values: never a raw string from outside."""
    first = changeset.plan.changes[0] if changeset.plan.changes else None
    cause = diagnosis.cause
    default = f"Fix {cause.replace('_', ' ')} in {{w}}" if _IDENT.fullmatch(cause) else "Fix {w}"
    # What is done follows the plan's cause (an OOM after a bad release is fixed by an image rollback), why it
    # is done follows the diagnosis: "Roll back image of shop/checkout to ... after OOMKilled".
    titles: dict[str, tuple[str, str, str]] = {str(k): v for k, v in CAUSE_TITLES.items()}
    _, _, why = titles.get(cause, (default, default, ""))
    with_value, without_value, _ = titles.get(changeset.plan.cause, titles.get(cause, (default, default, "")))
    field = _field_label(first.path) if first else None
    values = {"w": _workload_label(workload), "field": field or "a field",
              "new": _token(first.new) if first else None, "revision": _revision(diagnosis)}
    needed = re.findall(r"{(\w+)}", with_value)
    template = with_value if all(values.get(k) is not None for k in needed) else without_value
    text = template.format(**{k: v if v is not None else "" for k, v in values.items()})
    return _neutralise(f"{text} {why}".strip())[:MAX_TITLE]


def commit_message(workload: WorkloadRef, diagnosis: Diagnosis, changeset: ChangeSet) -> str:
    """Title, the fields changed (values only when they are plain tokens), cause and risk."""
    lines = [title(workload, diagnosis, changeset), ""]
    files = sorted({e.path for e in changeset.edits}) or [edited_file(changeset)]
    lines.append(f"Changes {len(changeset.plan.changes)} field(s) in " + ", ".join(_path_token(p) for p in files) + ":")
    for c in changeset.plan.changes:
        lines.append(f"- {_field_token(c.path)}: from {_value_token(c.old)} to {_value_token(c.new)}")
    detector = diagnosis.detector if _IDENT.fullmatch(diagnosis.detector) else "a"
    cause = diagnosis.cause if _IDENT.fullmatch(diagnosis.cause) else "unknown"
    lines += ["", f"Found by the {detector} detector. The root cause, the evidence and the checks are in the "
                  "pull request.", "", f"Cause: {cause}",
              f"Risk: {changeset.risk.level if _IDENT.fullmatch(changeset.risk.level) else 'unknown'} "
              f"({changeset.risk.score:.2f})"]
    return _neutralise("\n".join(lines)) + "\n"


def update_comment(*, title_text: str, run_url: str) -> str:
    """The comment on an open PR the bot updated with a new change."""
    return (f"Updated by GitOps Autofix with new evidence: {_text(title_text)}.\n\n"
            f"{record_line(run_url)}\n")


def prose(text: object) -> str:
    """Untrusted text as one line of a comment (what ``pr_body`` does for prose)."""
    return _text(text)


def code(text: object) -> str:
    """Untrusted text as inline code in a comment."""
    return _code(text)


def fence(lines: Iterable[str]) -> str:
    """Untrusted lines as a code block in a comment (at most ``MAX_EVIDENCE_LINES``)."""
    return _fence(list(lines)[:MAX_EVIDENCE_LINES])


def _workload_label(workload: WorkloadRef) -> str:
    ns, name = workload.namespace, workload.name
    ns = ns if _DNS_LABEL.fullmatch(ns) else _component(ns, 63)
    name = name if _DNS_SUBDOMAIN.fullmatch(name) else _component(name, READABLE_NAME)
    return f"{ns}/{name[:120]}" + ("…" if len(name) > 120 else "")


def _field_label(path: str) -> str | None:
    """The field's last segments (``resources.requests.memory``) when they are plain words."""
    label = path.rpartition("].")[2]
    return label if re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*){0,6}", label) else None


def _token(value: object) -> str | None:
    """A value a title or commit message may quote, or None."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and _TOKEN.fullmatch(value) and "://" not in value \
            and not value.lower().startswith("www."):
        return value
    return None


def _revision(diagnosis: Diagnosis) -> str | None:
    facts = diagnosis.finding.facts
    revision = facts.previous_revision if isinstance(facts, CommandRollbackFacts) else None
    return str(revision) if re.fullmatch(r"[0-9]{1,9}", str(revision)) else None


def _value_token(value: object) -> str:
    if value is None:
        return "(unset)"
    return _token(value) or "(a value shown in the pull request)"


def _field_token(path: str) -> str:
    return path if _FIELD.fullmatch(path) else "(a field shown in the pull request)"


def _path_token(path: str) -> str:
    return path if _PATH.fullmatch(path) else "(a file shown in the pull request)"


# ---------------------------------------------------------------- the PR body


def track_line(track: TrackRecord) -> str:
    """What became of the earlier fixes of this kind: "Track record: ..." (warm) or "Cold decision: ..."."""
    cause, every, here = _code(track.cause), track.overall, track.workload
    if track.cold:
        still = f" ({every.opened} still open)" if every.opened else ""
        return f"Cold decision: no earlier {cause} fix decided yet{still}."
    own = (f"this workload: {here.opened} earlier, {here.merged} merged, {here.effective} effective, "
           f"{here.reverted} reverted" if here.opened else "none for this workload")
    return (f"Track record: {every.opened} earlier {cause} fix(es): {every.merged} merged, {every.closed} closed "
            f"unmerged, {every.effective} effective, {every.reverted} reverted ({own}).")


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """The GitOps object that applies a merged change (from the evidence's Argo CD / Flux objects)."""

    tool: str  # "Argo CD" or "Flux"
    kind: str  # Application, Kustomization, HelmRelease
    name: str
    namespace: str = ""
    automated: bool = True  # Argo CD: spec.syncPolicy.automated (enabled); Flux: not spec.suspend
    interval: str = ""  # Flux: spec.interval; Argo CD: its reconciliation period
    interval_default: bool = False  # the interval is the controller's default, not read from the object


@dataclass(frozen=True, kw_only=True)
class NextSteps:
    """What merging or closing the PR does, and how a team opts the workload out."""

    delivery: Delivery | None
    cause: str
    cooldown_hours: float
    cooldown_until: datetime  # no new PR for this workload and cause before this, if the PR is closed now
    opt_out: str  # the annotation that opts a workload out (app/stages/change.py)
    opt_out_causes: str


@dataclass(frozen=True, kw_only=True)
class LogTail:
    """The last lines a container logged before it failed (redacted and bounded by the evidence)."""

    source: str  # "pod/container"
    lines: tuple[str, ...]
    previous: bool = True  # the previous (failed) container's log, not the running one's


def pr_body(*, workload: WorkloadRef, diagnosis: Diagnosis, changeset: ChangeSet, run_url: str, alert: str,
            model_note: str | None = None, explanation: str | None = None,
            context: Sequence[tuple[str, str]] = (), logs: LogTail | None = None,
            next_steps: NextSteps | None = None) -> str:
    f = diagnosis.finding
    out = ["## Root cause", "", _text(f.root_cause, limit=2 * MAX_LINE), ""]
    out += alert_section(alert, context)
    if explanation:
        # Raw HTML is ours only: the summary is HTML-escaped, the model's words go in a code block.
        note = html.escape(_flat(model_note or "LLM", 100))
        out += [f"<details><summary>Model's explanation ({note})</summary>", "", _fence(explanation.splitlines()), "",
                "</details>", ""]
    out += ["## Evidence", "",
            f"Alert {_code(alert)}; detector {_code(diagnosis.detector)} matched with confidence {f.confidence:.0%}.",
            "", _fence(f.evidence[:MAX_EVIDENCE_LINES]), ""]
    if diagnosis.others:
        out += ["Also seen (not fixed here): " + "; ".join(_text(o.root_cause) for o in diagnosis.others), ""]
    out += logs_section(logs)
    head, out = out, []
    out += ["## Change", "", *_change_table(changeset), ""]
    if changeset.plan.sizing_note:
        note = changeset.plan.sizing_note.strip()
        out += [_text(note[:1].upper() + note[1:].rstrip(".") + "."), ""]
    out += [f"Found by: {_text(changeset.location.note or changeset.location.source)}.", ""]
    out += _layout_lines(changeset)
    out += [_fence(changeset.diff[:MAX_DIFF_CHARS].splitlines(), info="diff"), ""]
    out += ["## Checks", ""] + [f"- {_code(v)}" for v in changeset.validation] + [""]
    r = changeset.risk
    out += [f"## Risk: {_text(r.level)} ({r.score:.2f})", "", "| factor | value | weight | why |",
            "| --- | --- | --- | --- |"]
    out += [f"| {x.name if _IDENT.fullmatch(x.name) else _text(x.name, cell=True)} | {x.value:.2f} | {x.weight:g} | {_text(x.explanation, cell=True)} |"
            for x in r.factors]
    if r.track is not None:
        out += ["", track_line(r.track)]
    out += [""]
    out += next_section(next_steps)
    out += ["## Record", "", record_line(run_url), ""]
    if diagnosis.proposed_by != "rule":
        out += [f"This change was proposed by a model ({_text(diagnosis.proposed_by)}) and passed the same "
                "validation and policy gates as a rule's.", ""]
    out += ["## Roll back", "", "Revert this pull request's merge commit; Argo CD or Flux rolls the previous "
            "values out again.", "", "---", "Opened by GitOps Autofix. It never changes the cluster: a human "
            "merges, the GitOps controller deploys."]
    curve = changeset.plan.curve
    body = ""
    for points in CHART_POINTS if curve is not None else (0,):
        metrics = _metrics_section(curve, points=points) if curve is not None else []
        body = _neutralise("\n".join([*head, *metrics, *out])) + "\n"
        if len(body) <= MAX_BODY_CHARS:
            break
    return body


def _metrics_section(curve: Curve, *, points: int) -> list[str]:
    """The chart (a Mermaid xychart), what its lines are, the statistics and verdict, the query."""
    out = ["## Metrics", ""]
    drawn = charts.chart(curve, max_points=points) if points >= 2 else None
    if drawn is not None:
        out += [mermaid(drawn), "", _caption(drawn), ""]
    out += _stats_table(curve)
    if curve.promql.strip():
        out += [_fence(_promql_lines(curve.promql), info="promql"), ""]
    return out


def mermaid(chart: charts.Chart) -> str:
    """The chart as a Mermaid ``xychart-beta`` block: every text quoted and reduced to charts.plain's characters,
    every number exponent-free; the x axis is numeric (minutes or hours before the alert), so Mermaid spaces
    the points evenly between its two ends and labels round ticks itself."""
    n = charts.number
    lines = [CHART_INIT, "xychart-beta", f'    title "{chart.title}"',
             f'    x-axis "{chart.x_title}" {n(chart.x[0])} --> {n(chart.x[-1])}',
             f'    y-axis "{chart.unit or "value"}" {n(chart.y_min)} --> {n(chart.y_max)}',
             f'    line "observed" [{", ".join(n(v) for v in chart.values)}]']
    for label, value in ((chart.threshold_label, chart.threshold), ("proposed", chart.proposed)):
        if value is not None:
            lines.append(f'    line "{label}" [{", ".join([n(value)] * len(chart.values))}]')
    return "```mermaid\n" + "\n".join(lines) + "\n```"


def _caption(chart: charts.Chart) -> str:
    unit = f" {chart.unit}" if chart.unit and chart.unit != "%" else chart.unit
    lines = [f"observed ({CHART_COLORS[0]}: the highest sample in each {chart.step_text} step)"]
    colors = iter(CHART_COLORS[1:])
    if chart.threshold is not None:
        lines.append(f"{chart.threshold_label} ({next(colors)}, {charts.number(chart.threshold)}{unit})")
    if chart.proposed is not None:
        lines.append(f"proposed ({next(colors)}, {charts.number(chart.proposed)}{unit})")
    return _text(f"{chart.x_title[0].upper()}{chart.x_title[1:]}: " + "; ".join(lines) + ".", limit=2 * MAX_LINE)


def _stats_table(curve: Curve) -> list[str]:
    """One row: the statistics (values in the curve's unit, growth per hour signed), threshold, proposed value
    and the verdict. The values are ours (numbers and charts.plain's unit): escaped, never cut."""
    unit = charts.unit(curve.unit)
    known = [k for k in VALUE_STATS if k in curve.stats]
    others = sorted(k for k in curve.stats if k not in VALUE_STATS and _IDENT.fullmatch(k))
    cells: list[tuple[str, str]] = []
    for key in [*known, *others][:MAX_STATS]:
        value = curve.stats[key]
        if key == "growth_per_hour":
            cells.append(("growth per hour", _quantity(value, f"{unit}/h" if unit else "/h", signed=True)))
        else:
            cells.append((key.replace("_", " "), _quantity(value, unit if key in VALUE_STATS else _stat_unit(key))))
    if curve.threshold is not None:
        cells.append((curve.threshold_label or "threshold", _quantity(curve.threshold, unit)))
    if curve.proposed is not None:
        cells.append(("proposed", _quantity(curve.proposed, unit)))
    if curve.verdict.strip():
        cells.append(("verdict", curve.verdict))
    if not cells:
        return []
    return ["| " + " | ".join(_text(name, cell=True, limit=60) for name, _ in cells) + " |",
            "| " + " | ".join("---" for _ in cells) + " |",
            "| " + " | ".join(_text(value, cell=True, limit=2 * MAX_LINE) if name == "verdict" else _escape(value)
                              for name, value in cells) + " |", ""]


def _stat_unit(key: str) -> str:
    """The unit of a statistic not in the curve's own (app/curves.py: shares in percent, times in hours)."""
    if key.startswith(("utilization_", "throttled_")) or key == "target":
        return "%"
    return "h" if key.startswith("hours_") or key.endswith("_hours") else ""


def _quantity(value: float, unit: str, *, signed: bool = False) -> str:
    text = charts.number(value)
    if signed and not text.startswith("-") and text != "0":
        text = "+" + text
    return f"{text}{unit}" if unit.startswith(("%", "/")) else f"{text} {unit}".rstrip()


def _promql_lines(promql: str) -> list[str]:
    """The query as sent, broken after commas and spaces outside string literals into lines a reviewer can
    read and copy (PromQL ignores the line breaks)."""
    pieces, current, quote, escaped = [], "", "", False
    for ch in _flat(promql, MAX_PROMQL):
        current += ch
        if quote:
            escaped, closed = ch == "\\" and not escaped, ch == quote and not escaped
            quote = "" if closed else quote
        elif ch in "\"'`":
            quote = ch
        elif ch in ", ":
            pieces.append(current)
            current = ""
    lines = [""]
    for piece in [*pieces, current]:
        if lines[-1].strip() and len(lines[-1]) + len(piece) > PROMQL_LINE:
            lines.append("")
        lines[-1] += piece
    return [line.strip() for line in lines if line.strip()]


def alert_section(alert: str, context: Sequence[tuple[str, str]]) -> list[str]:
    """The alert as it fired (app.models.incident.Incident.context): name, since when and for how long, severity,
    cluster and the Prometheus that fired it (external labels), its summary and description (untrusted text,
    escaped), the runbook and the Prometheus graph as links when they are plain http(s) URLs (else as code,
    never a link: a ``javascript:`` URL stays inert text)."""
    if not context:
        return []
    said = dict(context)
    head = f"{_code(alert)} firing"
    if "since" in said:
        head += f" since {_code(said['since'])}"
        if "for" in said:
            head += f" (for {_text(said['for'], limit=40)} when this was decided)"
    head += "".join(f", {name} {_code(said[name])}" for name in ("severity", "cluster") if name in said) + "."
    out = ["## Alert", "", head]
    source = [f"{label} {_code(said[name], limit=120)}" for name, label in
              (("prometheus", "Prometheus"), ("replica", "replica")) if name in said]
    if source:
        out += ["", "Fired by " + ", ".join(source) + "."]
    if "summary" in said:
        out += ["", _text(said["summary"], limit=2 * MAX_LINE)]
    if "description" in said and said["description"] != said.get("summary"):
        out += ["", _text(said["description"], limit=3 * MAX_LINE)]
    links = [_link(title, said[name]) for name, title in (("runbook", "Runbook"), ("graph", "Prometheus graph"))
             if name in said]
    if links:
        out += ["", " · ".join(links)]
    return [*out, ""]


def logs_section(logs: LogTail | None) -> list[str]:
    """The container's last log lines before the failure, folded away: a fence (nothing in it renders) inside a
    <details> whose summary is ours (the pod and container names HTML-escaped)."""
    if logs is None or not logs.lines:
        return []
    which = "previous container" if logs.previous else "running container"
    summary = (f"Last {len(logs.lines[-MAX_EVIDENCE_LINES:])} log lines before the failure "
               f"({html.escape(_flat(logs.source, 200))}, {which})")
    return [f"<details><summary>{summary}</summary>", "", _fence(logs.lines[-MAX_EVIDENCE_LINES:]), "",
            "</details>", ""]


def next_section(steps: NextSteps | None) -> list[str]:
    """What merging does (who applies it, how soon), what closing does (the cooldown and its end), how to opt out."""
    if steps is None:
        return []
    out = ["## What happens next", "", f"- **Merge:** {_delivery_line(steps.delivery)}"]
    hours = f"{steps.cooldown_hours:g} h"
    out.append(f"- **Close without merging:** GitOps Autofix takes it as a no and opens no new pull request for "
               f"this workload and cause ({_code(steps.cause)}) for {hours} after the close: closed now, not before "
               f"{_code(utc(steps.cooldown_until))}.")
    every, this = _code(steps.opt_out + ': "true"'), _code(f"{steps.opt_out_causes}: {steps.cause}")
    out.append(f"- **Opt out:** annotate the workload's manifest in git with {every} (no fix at all), or {this} "
               "(this cause only).")
    return [*out, ""]


def _delivery_line(d: Delivery | None) -> str:
    if d is None:
        return ("the GitOps controller applies it (no Argo CD Application or Flux object that manages this workload "
                "was found in the cluster).")
    what = f"{d.tool} {d.kind} {_code(d.name)}" + (f" in namespace {_code(d.namespace)}" if d.namespace else "")
    if d.tool == "Argo CD":
        if not d.automated:
            return (f"{what} has no automated sync (`spec.syncPolicy.automated` unset): it shows OutOfSync until "
                    "someone syncs it.")
        period = _code(d.interval) + (" (Argo CD's default `timeout.reconciliation`)" if d.interval_default else "")
        return f"{what} syncs it automatically; Argo CD looks at git every {period}, or at once on a webhook."
    if not d.automated:
        return f"{what} is suspended (`spec.suspend: true`): nothing is applied until it is resumed."
    if d.interval:
        return f"{what} applies it at its next reconciliation: every {_code(d.interval)} (`spec.interval`)."
    return f"{what} applies it at its next reconciliation."


def _link(title: str, url: str) -> str:
    if _SAFE_URL.fullmatch(url) and len(url) <= MAX_URL_CHARS:
        return f"[{title}]({url})"
    return f"{title}: {_code(url)}"


def _change_table(changeset: ChangeSet) -> list[str]:
    rows = ["| file | field | before | after | why |", "| --- | --- | --- | --- | --- |"]
    shown = edited_file(changeset)
    for c in changeset.plan.changes:
        cells = [_code(shown, cell=True, limit=120), _code(c.path, cell=True, limit=160),
                 _code_value(c.old), _code_value(c.new), _text(c.reason, cell=True, limit=160)]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def record_line(run_url: str) -> str:
    """A link when MLflow has a UI to link to (configured, not untrusted); else the run id and the store.

    Before the run is exported (app/exporter.py) the line names our record key and the tag to search by;
    the exporter swaps it for the link (``link_record``)."""
    if run_url.startswith(RECORD_REF):
        key = run_url.removeprefix(RECORD_REF)
        return (f"Every step of this decision is recorded in MLflow as the run tagged {_code(f'autofix_record={key}')}"
                "; its link takes this line's place once the record is exported.")
    if re.fullmatch(r"https?://[^\s<>()\[\]`|]+", run_url):
        return f"Every step of this decision is recorded in MLflow: {run_url}"
    store, _, run_id = run_url.partition("/#/")
    run_id = run_id.rsplit("/", 1)[-1]
    return (f"Every step of this decision is recorded in MLflow run {_code(run_id)} "
            f"(read it with {_code(f'autofix runs show {run_id}')}, or browse it with "
            f"{_code(f'mlflow ui --backend-store-uri {store}')} after installing the `ui` extra).")


def link_record(body: str, *, key: str, run_url: str) -> str | None:
    """The PR body with the pending record line replaced by the run's link; None when the line is not there
    (a human edited it, or it was linked already)."""
    pending = record_line(record_ref(key))
    if pending not in body:
        return None
    return body.replace(pending, record_line(run_url), 1)


def run_text(run_url: str) -> str:
    """The run as plain text for comments: the link, or the tag to search for while it is being exported."""
    if run_url.startswith(RECORD_REF):
        return f"MLflow run tagged autofix_record={run_url.removeprefix(RECORD_REF)}"
    return run_url


def edited_file(changeset: ChangeSet) -> str:
    """The file the change is written in (a patch or values file for overlays and charts)."""
    paths = sorted({e.path for e in changeset.edits})
    return paths[0] if len(paths) == 1 else changeset.location.path


def _layout_lines(changeset: ChangeSet) -> list[str]:
    """Where each field is written when that is not the workload manifest, what it reaches, render status."""
    out: list[str] = []
    for edit in changeset.edits:
        if edit.what != "workload manifest":
            keys = ", ".join(_code(c.path) for c in edit.changes)
            out.append(f"- Written in {_code(edit.path)} ({_text(edit.what)}): {keys}")
    if changeset.location.environments:
        out.append("- Environments this change reaches: "
                   + ", ".join(_code(e) for e in changeset.location.environments))
    if changeset.rendered and not changeset.rendered.startswith("not needed"):
        state, _, how = changeset.rendered.partition(":")
        label = "Render verified" if state == "verified" else "Render not verified"
        out.append(f"- {label}: {_text(how.strip())}")
    return [*out, ""] if out else []


def _code_value(value: object) -> str:
    """A field value as a reviewer reads it: mappings and lists as compact JSON, absent as "(unset)"."""
    if value is None:
        return "(unset)"
    if isinstance(value, dict | list):
        return _code(json.dumps(value, separators=(", ", ": ")), cell=True, limit=80)
    return _code(str(value), cell=True, limit=80)


# ---------------------------------------------------------------- escaping, one function per context


def _flat(text: object, limit: int) -> str:
    """One bounded line: secrets redacted, whitespace (newlines included) collapsed, control characters
    replaced. Every untrusted string of a PR, a comment or a commit passes here or through ``_fence``."""
    line = " ".join(_CONTROL.sub("\ufffd", redact.text(str(text))).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _text(text: object, *, cell: bool = False, limit: int = MAX_LINE) -> str:
    """Untrusted prose on one line: markup escaped, URLs as code (no autolink), mentions and refs broken."""
    line = _flat(text, limit)
    out: list[str] = []
    pos = 0
    for match in _URL.finditer(line):
        out += [_escape(line[pos:match.start()]), _code(match.group(0), cell=cell)]
        pos = match.end()
    out.append(_escape(line[pos:]))
    joined = "".join(out)
    # At the start of a line "-", "+", "=" and "1." would open a list or a heading.
    return _BLOCK_START.sub(lambda m: "\\" + m.group(0) if not m.group(0).isdigit() else m.group(0) + "\\", joined,
                            count=1) if joined else joined


def _escape(text: str) -> str:
    text = _CLOSING.sub(lambda m: m.group(0)[0] + ZWSP + m.group(0)[1:], text)
    text = _MENTION_TEXT.sub(ZWSP + "@" + ZWSP, text)  # before: no e-mail link; after: no mention
    text = _ISSUE_REF.sub(lambda m: m.group(0) + ZWSP, text)
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)


def _code(text: object, *, cell: bool = False, limit: int = MAX_LINE) -> str:
    """Inline code that no content can end early: a backtick delimiter longer than any run inside."""
    line = _neutralise(_flat(text, limit))
    if not line:
        return "(empty)"
    if cell:
        line = line.replace("|", "\\|")  # GFM splits cells before code spans are parsed
    ticks = "`" * (max((len(run) for run in _BACKTICKS.findall(line)), default=0) + 1)
    pad = " " if line.startswith("`") or line.endswith("`") else ""
    return f"{ticks}{pad}{line}{pad}{ticks}"


def _fence(lines: Iterable[str], *, info: str = "text") -> str:
    """A code block whose fence is longer than any backtick run inside, so nothing can close it early."""
    body = []
    # Redacted as one text: a key or a quoted value spanning lines is recognised whole (the diff's context
    # lines are the repository's own text, and a committed secret must not travel on into the PR and MLflow).
    for line in redact.text("\n".join(str(line) for line in lines)).split("\n"):
        for part in line.splitlines() or [""]:
            part = _CONTROL.sub("\ufffd", part.expandtabs(4)).rstrip()
            body.append(part if len(part) <= MAX_LINE else part[:MAX_LINE - 1] + "…")
    text = _neutralise("\n".join(body))
    fence = "`" * max(3, max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def _neutralise(text: str) -> str:
    """Mentions and closing keywords stop working (a zero-width space); what a reader sees is unchanged."""
    text = _CLOSING.sub(lambda m: m.group(0)[0] + ZWSP + m.group(0)[1:], text)
    return _MENTION_CODE.sub("@" + ZWSP, text)
