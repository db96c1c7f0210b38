"""Branch name, commit message, PR title and body: all rendered from the diagnosis and the change record.

Anything that came from the cluster or an alert is untrusted: it goes inside code blocks (no mentions,
no closing keywords, no HTML are interpreted there), with fences neutralised and lengths bounded.
"""

from __future__ import annotations

import json
import re

from app.models.changes import ChangeSet
from app.models.diagnosis import Diagnosis
from app.models.incident import WorkloadRef

MAX_LINE = 300
MAX_EVIDENCE_LINES = 20
MAX_DIFF_CHARS = 20_000
_SLUG = re.compile(r"[^a-z0-9.-]+")
_CLOSING = re.compile(r"(?i)\b(close[sd]?|fix(?:e[sd])?|resolve[sd]?)()(\s+)(#|[\w.-]+/[\w.-]+#)")

CAUSE_TITLES = {
    "oom_killed": ("Raise memory limit of {w} to {new}", "after OOMKilled"),
    "image_pull_after_rollout": ("Roll back image of {w} to {new}", "after ImagePullBackOff"),
    "model_proposed": ("Set {field} of {w} to {new}", "(proposed by a model)"),
    "config_reference": ("Fix ConfigMap reference of {w} to {new}", "after CreateContainerConfigError"),
    "probe_misconfigured": ("Point {field} of {w} at {new}", "after probe failures"),
    "slow_start": ("Give {w} time to start with a startupProbe", "after liveness kills during startup"),
    "bad_command": ("Restore command of {w} to {new}", "after executable not found"),
    "unschedulable": ("Lower {field} of {w} to {new}", "to fit the largest node (FailedScheduling)"),
    "cpu_throttling": ("Raise CPU limit of {w} to {new}", "after CPUThrottlingHigh"),
    "hpa_maxed_out": ("Raise maxReplicas of {w} to {new}", "after KubeHpaMaxedOut"),
    "pvc_storage_class": ("Use StorageClass {new} for {w}", "after ProvisioningFailed"),
}


def slug(value: str) -> str:
    return _SLUG.sub("-", value.lower()).strip("-")[:63] or "x"


def branch(workload: WorkloadRef, cause: str) -> str:
    return f"autofix/{slug(workload.namespace)}/{slug(workload.name)}/{slug(cause.replace('_', '-'))}"


def title(workload: WorkloadRef, diagnosis: Diagnosis, changeset: ChangeSet) -> str:
    new = changeset.plan.changes[0].new if changeset.plan.changes else ""
    what, why = CAUSE_TITLES.get(diagnosis.cause, (changeset.plan.summary + " in {w}", f"after {diagnosis.cause}"))
    field = changeset.plan.changes[0].path.rpartition("].")[2] if changeset.plan.changes else ""
    return f"{what.format(w=workload.short, new=new, field=field)} {why}"[:200]


def commit_message(workload: WorkloadRef, diagnosis: Diagnosis, changeset: ChangeSet) -> str:
    lines = [title(workload, diagnosis, changeset), "", _plain(diagnosis.finding.root_cause), ""]
    for c in changeset.plan.changes:
        lines.append(f"{edited_file(changeset)}: {c.path}: {c.old} -> {c.new}")
    lines += ["", f"Cause: {diagnosis.cause}", f"Risk: {changeset.risk.level} ({changeset.risk.score:.2f})"]
    return "\n".join(lines) + "\n"


def pr_body(*, workload: WorkloadRef, diagnosis: Diagnosis, changeset: ChangeSet, run_url: str, alert: str,
            model_note: str | None = None, explanation: str | None = None) -> str:
    f = diagnosis.finding
    loc = changeset.location
    out = [
        "## Root cause",
        "",
        _plain(f.root_cause),
        "",
    ]
    if explanation:
        out += ["<details><summary>Model's explanation (" + _plain(model_note or "LLM") + ")</summary>", "",
                _fence(explanation.splitlines()), "", "</details>", ""]
    out += [
        "## Evidence",
        "",
        f"Alert `{_inline(alert)}`; detector `{_inline(diagnosis.detector)}` matched "
        f"with confidence {f.confidence:.0%}.",
        "",
        _fence(f.evidence[:MAX_EVIDENCE_LINES]),
        "",
    ]
    if diagnosis.others:
        out += ["Also seen (not fixed here): " + "; ".join(_plain(o.root_cause) for o in diagnosis.others), ""]
    out += ["## Change", ""]
    out += ["| file | field | before | after | why |", "| --- | --- | --- | --- | --- |"]
    for c in changeset.plan.changes:
        out.append(f"| `{_inline(edited_file(changeset))}` | `{_inline(c.path)}` | `{_inline(_value(c.old))}` | "
                   f"`{_inline(_value(c.new))}` | {_cell(c.reason)} |")
    out += ["", f"Found by: {_plain(loc.note or loc.source)}.", ""]
    out += _layout_lines(changeset)
    out += ["```diff", _defence(changeset.diff[:MAX_DIFF_CHARS]).rstrip("\n"), "```", ""]
    out += ["## Checks", ""] + [f"- `{_inline(v)}`" for v in changeset.validation] + [""]
    r = changeset.risk
    out += [f"## Risk: {r.level} ({r.score:.2f})", "", "| factor | value | weight | why |", "| --- | --- | --- | --- |"]
    out += [f"| {x.name} | {x.value:.2f} | {x.weight:g} | {_cell(x.explanation)} |" for x in r.factors]
    out += ["", "## Record", "", _record_line(run_url), ""]
    if diagnosis.proposed_by != "rule":
        out += [f"This change was proposed by a model ({_plain(diagnosis.proposed_by)}) and passed the same "
                "validation and policy gates as a rule's.", ""]
    out += ["## Roll back", "", "Revert this pull request's merge commit; Argo CD or Flux rolls the previous "
            "values out again.", "", "---", "Opened by GitOps Autofix. It never changes the cluster: a human "
            "merges, the GitOps controller deploys."]
    return "\n".join(out) + "\n"


def _record_line(run_url: str) -> str:
    """A link when MLflow has a UI to link to; else the run id and how to open the local store."""
    if run_url.startswith(("http://", "https://")):
        return f"Every step of this decision is recorded in MLflow: {run_url}"
    store, _, run_id = run_url.partition("/#/")
    run_id = run_id.rsplit("/", 1)[-1]
    return (f"Every step of this decision is recorded in MLflow run `{_inline(run_id)}` "
            f"(open it with `mlflow ui --backend-store-uri {_inline(store)}`).")


def edited_file(changeset: ChangeSet) -> str:
    """The file the change is written in (a patch or values file for overlays and charts)."""
    paths = sorted({e.path for e in changeset.edits})
    return paths[0] if len(paths) == 1 else changeset.location.path


def _layout_lines(changeset: ChangeSet) -> list[str]:
    """Where each field is written when that is not the workload manifest, what it reaches, render status."""
    out: list[str] = []
    for edit in changeset.edits:
        if edit.what != "workload manifest":
            keys = ", ".join(f"`{_inline(c.path)}`" for c in edit.changes)
            out.append(f"- Written in `{_inline(edit.path)}` ({_plain(edit.what)}): {keys}")
    if changeset.location.environments:
        envs = ", ".join(f"`{_inline(e)}`" for e in changeset.location.environments)
        out.append(f"- Environments this change reaches: {envs}")
    if changeset.rendered and not changeset.rendered.startswith("not needed"):
        state, _, how = changeset.rendered.partition(":")
        label = "Render verified" if state == "verified" else "Render not verified"
        out.append(f"- {label}: {_plain(how.strip())}")
    return [*out, ""] if out else []


def _value(value: object) -> str:
    """A field value as a reviewer reads it: mappings and lists as compact JSON, absent as "(unset)"."""
    if value is None:
        return "(unset)"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def _plain(text: str) -> str:
    """One line of untrusted text outside code: no markup, mentions or closing keywords take effect."""
    text = " ".join(str(text).split())[:MAX_LINE]
    text = re.sub(r"[<>`*_\[\]|#\\]", lambda m: "\\" + m.group(0), text)
    text = text.replace("@", "@\u200b")  # no mention pings
    # "closes #12" would close an unrelated issue on merge: break the keyword.
    return _CLOSING.sub(lambda m: m.group(1) + "\u200b" + m.group(3) + m.group(4), text)


def _cell(text: str) -> str:
    return _plain(text).replace("|", "\\|")


def _inline(text: str) -> str:
    return " ".join(text.split()).replace("`", "'")[:MAX_LINE]


def _defence(text: str) -> str:
    """Inside a fence: break any ``` so untrusted text cannot close it."""
    return text.replace("```", "`\u200b``")


def _fence(lines: list[str]) -> str:
    body = "\n".join(_defence(line[:MAX_LINE]) for line in lines)
    return "```text\n" + body + "\n```"
