"""The PR body, title, commit message and comments, judged as GitHub would read them.

Untrusted text (cluster messages, repository file names and values, alert names, a model's words) must
not change the PR's layout or reach GitHub's side effects: the body is parsed with markdown-it-py with GFM
tables, raw HTML and autolinks enabled, and the tokens are checked (no raw HTML but ours, no link but the
MLflow run's, no mention, no closing keyword, the change table keeps its columns). The concrete attack
strings of the finding are plain parametrized cases; hypothesis then fuzzes every untrusted input at once.

A metrics chart is a Mermaid block: it must be one fence, and each of its lines one xychart statement as
Mermaid's grammar (packages/mermaid/src/diagrams/xychart/parser/xychart.jison) reads it, whatever the curve's
title, unit and labels say (they come partly from workload and container names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

from app import ledger, render
from app.models.causes import CommandRollbackFacts, Facts
from app.models.changes import ChangeSet, FieldChange, FileChange, FileEdit, Location, Plan, Risk, RiskFactor
from app.models.diagnosis import Diagnosis, Finding
from app.models.incident import WorkloadRef
from app.models.metrics import Curve
from app.ports import Remediation

ZWSP = "\u200b"
RUN_URL = "https://mlflow.example/#/experiments/1/runs/0123456789abcdef"
WORKLOAD = WorkloadRef(kind="Deployment", namespace="shop", name="api")
HEADINGS = ["Root cause", "Evidence", "Change", "Checks", "Risk: low (0.29)", "Record", "Roll back"]
CONTAINER_PATH = "spec.template.spec.containers[name=api]"

MENTION = re.compile(r"(?<![\w@])@[A-Za-z0-9]")
MENTION_OR_EMAIL = re.compile(r"@[A-Za-z0-9]")
CLOSING = re.compile(r"(?i)\b(close[sd]?|fix(e[sd])?|resolve[sd]?)[\s:]*([\w.-]+/[\w.-]+)?#\d")
AUTOLINK_TEXT = re.compile(r"(?i)(https?|ftp)://|www\.|mailto:")
OUR_HTML = re.compile(r"<details><summary>Model's explanation \([^<>]*\)</summary>\n|</details>\n")


def markdown() -> MarkdownIt:
    """GitHub-flavoured: tables, raw HTML, autolinks (GitHub links www. and scheme URLs, not bare domains)."""
    md = MarkdownIt("gfm-like")
    md.linkify.set({"fuzzy_link": False})
    return md


MD = markdown()


# ---- building the change record ---------------------------------------------------------------------------


@dataclass
class Untrusted:
    """Every string of a PR that comes from outside the bot."""

    root_cause: str = "Container api of shop/api was killed by the kernel (OOMKilled, exit code 137)."
    evidence: list[str] = field(default_factory=lambda: ["pod api-1 container api: reason=OOMKilled exitCode=137"])
    alert: str = "KubePodCrashLooping"
    file: str = "apps/api/deployment.yaml"
    container: str = "api"
    old: Any = "512Mi"
    new: Any = "768Mi"
    reason: str = "x1.5 of the observed limit 512Mi"
    note: str = "Argo CD Application api: https://github.com/acme/gitops.git path apps/api"
    checks: list[str] = field(default_factory=lambda: ["parses: 1 documents, others unchanged"])
    environments: list[str] = field(default_factory=list)
    rendered: str | None = None
    what: str = "workload manifest"
    explanation: str | None = None
    risk_why: str = "3 replica(s); serves traffic through Service(s) api"
    others: list[str] = field(default_factory=list)
    diff_line: str = '              memory: "768Mi"'
    cause: str = "oom_killed"
    facts: Facts = field(default_factory=Facts)
    curve: Curve | None = None
    sizing_note: str = ""


def rollback(revision: int) -> CommandRollbackFacts:
    """The facts of a bad_command finding whose previous revision ``revision`` ran fine."""
    return CommandRollbackFacts(container="api", init=False, executable="gunicron", pod="api-0",
                                failing_command=["gunicron"], failing_args=None, previous_command=["gunicorn"],
                                previous_args=None, previous_replicaset="api-7d9f", previous_revision=revision)


def record(u: Untrusted) -> tuple[Diagnosis, ChangeSet]:
    finding = Finding(cause=u.cause, confidence=0.95, root_cause=u.root_cause, evidence=u.evidence, facts=u.facts)
    others = [Finding(cause="image_pull_after_rollout", confidence=0.5, root_cause=o) for o in u.others]
    diagnosis = Diagnosis(detector="oom", finding=finding, others=others,
                          proposed_by="rule" if u.explanation is None else "model:gpt-test")
    path = f"spec.template.spec.containers[name={u.container}].resources.limits.memory"
    change = FieldChange(path=path, old=u.old, new=u.new, reason=u.reason)
    diff = f"--- a/{u.file}\n+++ b/{u.file}\n@@ -1,1 +1,1 @@\n-{u.diff_line}\n+{u.diff_line}\n"
    changeset = ChangeSet(
        location=Location(path=u.file, source="argocd", note=u.note, environments=tuple(u.environments)),
        plan=Plan(cause=u.cause, summary="Raise memory limit", changes=[change], curve=u.curve,
                  sizing_note=u.sizing_note),
        files=[FileChange(path=u.file, old_text="a: 1\n", new_text="a: 2\n", diff=diff)],
        risk=Risk(score=0.29, level="low", factors=[RiskFactor(name="blast_radius", value=0.37, weight=1,
                                                               explanation=u.risk_why)]),
        validation=u.checks, edits=[FileEdit(path=u.file, changes=[change], what=u.what)], rendered=u.rendered)
    return diagnosis, changeset


def body_of(u: Untrusted) -> str:
    diagnosis, changeset = record(u)
    body = render.pr_body(workload=WORKLOAD, diagnosis=diagnosis, changeset=changeset, run_url=RUN_URL,
                          alert=u.alert, model_note="model gpt-test" if u.explanation else None,
                          explanation=u.explanation)
    entry = Remediation(workload=str(WORKLOAD), cause=u.cause, branch="autofix/shop/api/oom-killed", pr_number=0,
                        pr_url="", state="open", before={changeset.plan.changes[0].path: u.old},
                        after={changeset.plan.changes[0].path: u.new})
    return body + "\n" + ledger.marker(entry) + "\n"  # as the pipeline sends it


# ---- reading the body as GitHub does ------------------------------------------------------------------------


def walk(tokens: list[Token]) -> list[Token]:
    out: list[Token] = []
    for token in tokens:
        out.append(token)
        out += walk(token.children or [])
    return out


def tables(tokens: list[Token]) -> list[list[list[list[Token]]]]:
    """Each table as rows of cells, each cell the inline tokens it holds (header row first)."""
    found: list[list[list[list[Token]]]] = []
    for i, token in enumerate(tokens):
        if token.type == "table_open":
            rows: list[list[list[Token]]] = []
            for t in tokens[i:]:
                if t.type == "table_close":
                    break
                if t.type == "tr_open":
                    rows.append([])
                elif t.type == "inline":
                    rows[-1].append(t.children or [])
            found.append(rows)
    return found


def flat(value: object) -> str:
    """What a one-line rendering of an untrusted value must show (independent of the renderer)."""
    return " ".join(re.sub(r"[\x00-\x08\x0e-\x1f\x7f]", "\ufffd", str(value)).split())


def assert_safe(body: str, u: Untrusted) -> None:
    tokens = MD.parse(body)
    every = walk(tokens)
    html = [t for t in every if t.type in ("html_block", "html_inline")]
    marker = [t for t in html if t.content.startswith(ledger.MARKER_PREFIX)]
    assert len(marker) == 1 and marker[0].type == "html_block" and marker[0].content.count("\n") == 1, marker
    foreign = [t.content for t in html if t not in marker and not OUR_HTML.fullmatch(t.content)]
    assert not foreign, f"raw HTML from outside: {foreign}"
    links = [t.attrs.get("href") for t in every if t.type == "link_open"]
    assert all(href == RUN_URL for href in links), f"links from outside: {links}"
    assert not [t for t in every if t.type == "image"], "an image from outside"
    prose = [t.content for t in every if t.type == "text" and t.content != RUN_URL]  # the run's link: ours
    code = [t.content for t in every if t.type in ("code_inline", "fence", "code_block")]
    for text in prose:
        assert not MENTION_OR_EMAIL.search(text), f"mention or e-mail link in {text!r}"
        assert not AUTOLINK_TEXT.search(text), f"GitHub would autolink {text!r}"
    for text in prose + code:
        assert not CLOSING.search(text), f"closing keyword in {text!r}"
        assert not MENTION.search(text), f"mention in {text!r}"
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    expected = HEADINGS if u.curve is None else [*HEADINGS[:2], "Metrics", *HEADINGS[2:]]
    assert headings == expected, "the layout is ours, not the attacker's"
    charts_seen = [t.content for t in tokens if t.type == "fence" and t.info == "mermaid"]
    assert len(charts_seen) <= (0 if u.curve is None else 1), charts_seen
    for chart in charts_seen:
        assert_mermaid(chart)
    *stats, change, risk = tables(tokens)  # the statistics come with the chart, before the change
    assert len(stats) <= (0 if u.curve is None else 1), stats
    for table in stats:
        assert len(table) == 2 and len(table[0]) == len(table[1]) >= 1, table
    assert [len(row) for row in change] == [5, 5], change
    file_cell, field_cell, before, after, _ = change[1]
    assert_code_cell(file_cell, u.file, limit=120)
    assert_code_cell(field_cell, f"{CONTAINER_PATH.replace('api', u.container)}.resources.limits.memory", limit=160)
    for cell, value in ((before, u.old), (after, u.new)):
        if isinstance(value, str):
            assert_code_cell(cell, value, limit=80)
    assert [len(row) for row in risk] == [4, 4], risk
    shown = body.split(ledger.MARKER_PREFIX)[0]  # the marker is the ledger's hidden record, not rendered
    assert max(len(line) for line in shown.splitlines()) <= 1200, "every line is bounded"


def assert_code_cell(cell: list[Token], value: str, *, limit: int) -> None:
    """The cell holds exactly one code span showing (a prefix of) the value: nothing split the row."""
    expected = flat(value)
    if not expected:
        assert [t.content for t in cell] == ["(empty)"], cell
        return
    assert [t.type for t in cell] == ["code_inline"], [(t.type, t.content) for t in cell]
    shown = cell[0].content.replace(ZWSP, "")
    assert expected.startswith(shown.removesuffix("…")) and len(shown) <= limit, (shown, expected)


# ---- a chart as Mermaid reads it ----------------------------------------------------------------------------

# xychart.jison's tokens: NUMBER_WITH_DECIMAL, and a STR between double quotes (any character but a quote; our
# texts keep a safe set, so a quote, a backtick, "%%", "#", ";" or a bracket cannot appear in one). The
# zero-width space is _neutralise's, breaking "fix GH-4" in the whole body.
NUM = r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)"
STR = '"[A-Za-z0-9 ._/()+,%\u200b-]*"'  # and the zero-width space that breaks a closing keyword
STATEMENTS = [  # one statement per line, in this order (the grammar allows others; we write only these)
    ("title", re.compile(rf"    title (?P<text>{STR})")),
    ("x-axis", re.compile(rf"    x-axis {STR} (?:(?P<lo>{NUM}) --> (?P<hi>{NUM})|\[{STR}(?:, {STR})*\])")),
    ("y-axis", re.compile(rf"    y-axis {STR} (?P<lo>{NUM}) --> (?P<hi>{NUM})")),
    ("line", re.compile(rf"    line {STR} \[(?P<values>{NUM}(?:, {NUM})*)\]")),
]


def assert_mermaid(block: str) -> dict[str, list[re.Match[str]]]:
    """One xychart: our directive, the header, then title, x-axis, y-axis and one to three lines, each line of
    the block one statement of the grammar; ranges ascending, every line as long as the others and inside the
    y range. Returns the statements by kind."""
    init, header, *lines = block.rstrip("\n").split("\n")
    assert init == render.CHART_INIT and header == "xychart-beta", block
    found: dict[str, list[re.Match[str]]] = {}
    for line in lines:
        kind, match = next(((k, m) for k, r in STATEMENTS if (m := r.fullmatch(line))), ("", None))
        assert match is not None, f"not one xychart statement: {line!r}"
        found.setdefault(kind, []).append(match)
    assert [k for k, _ in STATEMENTS if k in found] == list(found), "title, x-axis, y-axis, lines: in order"
    assert [len(found.get(k, [])) for k in ("title", "x-axis", "y-axis")] == [1, 1, 1], block
    assert 1 <= len(found["line"]) <= 3, block
    for axis in (found["x-axis"][0], found["y-axis"][0]):
        assert axis["lo"] is None or float(axis["lo"]) < float(axis["hi"]), axis.group(0)
    series = [[float(v) for v in m["values"].split(", ")] for m in found["line"]]
    assert len({len(values) for values in series}) == 1 and len(series[0]) >= 2, block
    lo, hi = float(found["y-axis"][0]["lo"]), float(found["y-axis"][0]["hi"])
    assert all(lo <= v <= hi for values in series for v in values), (lo, hi, series)
    assert "%%" not in "\n".join(lines) and "`" not in block, "no directive, comment or fence of the curve's own"
    return found


# ---- the finding's attack strings ---------------------------------------------------------------------------

PAYLOAD = "<img src=x onerror=alert(1)> @acme/sre Closes #1 [click](https://evil.example) www.evil.example"
ALERT_AT = 1_795_965_329.0  # 2026-11-29T15:15:29Z, the alert's startsAt: the chart's time 0
MIB = 1024 * 1024
QUERY = ('max by (pod) (container_memory_working_set_bytes{job="kubelet", metrics_path="/metrics/cadvisor", '
         'namespace="shop", pod=~"api-7d9f8b6c5-.*", container="api", container!="POD"}) / 1048576')


def sawtooth(hours: float = 72, *, every: float = 300, restart_hours: float = 12, start: float = 180,
             per_hour: float = 27) -> list[tuple[float, float]]:
    """A working set (MiB) that grows until the container is restarted: one sample per ``every`` seconds
    before the alert, as a range query over cAdvisor's series answers it."""
    count = int(hours * 3600 / every)
    return [(ALERT_AT - hours * 3600 + i * every, start + per_hour * ((i * every / 3600) % restart_hours))
            for i in range(count)]


def curve(**changes: Any) -> Curve:
    fields: dict[str, Any] = {
        "title": "memory working set of api (all pods)", "unit": "MiB", "points": sawtooth(),
        "threshold": 512.0, "threshold_label": "limit 512Mi", "proposed": 768.0, "end": ALERT_AT,
        "stats": {"min": 180.0, "p50": 341.5, "p95": 478.2, "max": 504.9, "growth_per_hour": 27.0},
        "promql": QUERY, "verdict": "undersized: a plateau near the limit with spikes"}
    return Curve(**{**fields, **changes})


HOSTILE_NAME = ('api"\n    line "x" [1, 2]\n%%{init: {"securityLevel": "loose"}}%%\n```\n</details> @team closes #1 '
                '`click` #quot; ; [x] {y} <b>')
ATTACKS = {
    "pipe-in-file-name": Untrusted(file=f"apps/a|{PAYLOAD}|x/deployment.yaml"),
    "pipe-in-previous-command": Untrusted(cause="bad_command", old="gunicorn", facts=rollback(3),
                                          new=f"sh -c 'echo ok | {PAYLOAD}'"),
    "command-list-with-pipes": Untrusted(cause="bad_command", old=["gunicron", "app:wsgi"],
                                         new=["sh", "-c", f"x | {PAYLOAD} | y"], facts=rollback(3)),
    "backticks-in-values": Untrusted(old="``` `x` ````", new="`` </details> ``"),
    "html-in-root-cause": Untrusted(root_cause=f"exec: {PAYLOAD} <script>steal()</script> &#64;team"),
    "closing-keywords": Untrusted(root_cause="fixes #12, Resolves: acme/other#7, closed GH-3, fix https://github.com"
                                             "/acme/gitops/issues/4", reason="closes #9"),
    "mentions-everywhere": Untrusted(alert="@acme/sre-oncall", container="@octocat", note="@acme/team owns this",
                                     evidence=["@acme/security-team please look", "user@example.com"]),
    "headings-and-lists": Untrusted(root_cause="\n## Injected heading\n- [x] approved\n1. step\n---",
                                    evidence=["```", "## not a heading", "</details>"]),
    "line-breaks-in-cells": Untrusted(file="apps/a\nb\r\n| x | y |\u2028z.yaml", reason="one\ntwo | three"),
    "fence-breaking-diff": Untrusted(diff_line="````` ``` ~~~ <b>x</b> @team closes #5"),
    "model-explanation": Untrusted(explanation="```\n</details>\n<script>x</script>\n@team Fixes #3"),
    "layout-text": Untrusted(what="values file <b>x</b> | @team", environments=["overlays/prod|<i>x</i>"],
                             rendered="verified: kubectl kustomize https://evil.example @team"),
    "empty-values": Untrusted(old="", new="   "),
    "hostile-chart": Untrusted(curve=curve(title=HOSTILE_NAME, unit=HOSTILE_NAME, threshold_label=HOSTILE_NAME,
                                           verdict=HOSTILE_NAME + PAYLOAD, promql=QUERY + " ```` " + PAYLOAD,
                                           stats={"p95; <b>": 1.0, "max": 2.0}),
                               sizing_note=PAYLOAD),
}


@pytest.mark.parametrize("u", list(ATTACKS.values()), ids=list(ATTACKS))
def test_attack_strings_do_not_change_the_pr_layout(u: Untrusted) -> None:
    assert_safe(body_of(u), u)


def test_pipe_in_previous_command_stays_in_its_cell_and_shows_whole() -> None:
    body = body_of(ATTACKS["pipe-in-previous-command"])
    row = tables(MD.parse(body))[0][1]
    assert row[3][0].content.replace(ZWSP, "") == flat(ATTACKS["pipe-in-previous-command"].new)[:79] + "…"
    assert "sh -c 'echo ok \\| <img src=x" in body, "the pipe is escaped inside the code span, the text kept"


def test_demo_body_reads_as_before() -> None:
    """The escaping is invisible for ordinary text: an on-call engineer reads the same PR."""
    body = body_of(Untrusted())
    assert "Container api of shop/api was killed by the kernel (OOMKilled, exit code 137)." in body
    assert ("| `apps/api/deployment.yaml` | `spec.template.spec.containers[name=api].resources.limits.memory` | "
            "`512Mi` | `768Mi` | x1.5 of the observed limit 512Mi |") in body
    assert "```text\npod api-1 container api: reason=OOMKilled exitCode=137\n```" in body
    assert "Found by: Argo CD Application api: `https://github.com/acme/gitops.git` path apps/api." in body
    assert "| blast_radius | 0.37 | 1 | 3 replica(s); serves traffic through Service(s) api |" in body
    assert f"Every step of this decision is recorded in MLflow: {RUN_URL}" in body


def test_a_fence_is_longer_than_any_backtick_run_inside() -> None:
    body = body_of(Untrusted(evidence=["a ````` b", "```"]))
    assert "``````text\na ````` b\n```\n``````" in body
    [fence] = [t for t in MD.parse(body) if t.type == "fence" and t.info == "text"]
    assert fence.content == "a ````` b\n```\n"


def test_local_mlflow_store_is_shown_as_code_not_linked() -> None:
    diagnosis, changeset = record(Untrusted())
    body = render.pr_body(workload=WORKLOAD, diagnosis=diagnosis, changeset=changeset, alert="KubePodCrashLooping",
                          run_url="sqlite:////data/mlflow.db/#/experiments/1/runs/abc123")
    assert "MLflow run `abc123` (read it with `autofix runs show abc123`, or browse it with `mlflow ui --backend-store-uri sqlite:////data/mlflow.db` after installing the `ui` extra)" in body
    assert not [t for t in walk(MD.parse(body)) if t.type == "link_open"]


# ---- title, commit message and comments: identifiers and computed values only ---------------------------------


@pytest.mark.parametrize(("u", "expected"), [
    pytest.param(Untrusted(), "Raise memory limit of shop/api to 768Mi after OOMKilled", id="oom"),
    pytest.param(ATTACKS["pipe-in-previous-command"],
                 "Roll back command of shop/api to revision 3 after executable not found", id="command"),
    pytest.param(Untrusted(cause="bad_command", new="gunicorn"),
                 "Roll back command of shop/api to the previous revision after executable not found",
                 id="command-without-revision"),
    pytest.param(Untrusted(cause="image_pull_after_rollout", new="ghcr.io/acme/api:1.4.2"),
                 "Roll back image of shop/api to ghcr.io/acme/api:1.4.2 after ImagePullBackOff", id="image"),
    pytest.param(Untrusted(cause="image_pull_after_rollout", new="ghcr.io/acme/api:1.4.2 @team closes #1"),
                 "Roll back image of shop/api to the previous revision after ImagePullBackOff", id="hostile-image"),
    pytest.param(Untrusted(new="https://evil.example/x"), "Raise memory limit of shop/api after OOMKilled",
                 id="url-value"),
    pytest.param(Untrusted(cause="pvc_storage_class", new="fast-ssd|<b>"),
                 "Correct the StorageClass of shop/api after ProvisioningFailed", id="hostile-storage-class"),
    # a cause without a title of its own (causes are an enum now: any new one starts here)
    pytest.param(Untrusted(cause="rollout_stuck"), "Fix rollout stuck in shop/api", id="cause-without-title"),
])
def test_title_holds_only_identifiers_and_computed_values(u: Untrusted, expected: str) -> None:
    diagnosis, changeset = record(u)
    assert render.title(WORKLOAD, diagnosis, changeset) == expected


@pytest.mark.parametrize("u", list(ATTACKS.values()), ids=list(ATTACKS))
def test_commit_message_and_title_carry_no_untrusted_text(u: Untrusted) -> None:
    diagnosis, changeset = record(u)
    hostile = WorkloadRef(kind="Deployment", namespace="shop", name="api")
    text = render.title(hostile, diagnosis, changeset) + "\n" + render.commit_message(hostile, diagnosis, changeset)
    for needle in ("<", ">", "|", "`", "@", "#", "://", "www.", "\r", "\u2028", "evil", "steal"):
        assert needle not in text, (needle, text)
    assert not CLOSING.search(text)
    assert text.count("\n\n") >= 2 and "Cause: " in text and "Risk: low (0.29)" in text


def test_commit_message_names_fields_and_plain_values() -> None:
    diagnosis, changeset = record(Untrusted())
    assert render.commit_message(WORKLOAD, diagnosis, changeset) == (
        "Raise memory limit of shop/api to 768Mi after OOMKilled\n\n"
        "Changes 1 field(s) in apps/api/deployment.yaml:\n"
        f"- {CONTAINER_PATH}.resources.limits.memory: from 512Mi to 768Mi\n\n"
        "Found by the oom detector. The root cause, the evidence and the checks are in the pull request.\n\n"
        "Cause: oom_killed\nRisk: low (0.29)\n")


def test_hostile_workload_names_are_sanitised_in_titles() -> None:
    diagnosis, changeset = record(Untrusted())
    hostile = WorkloadRef(kind="Deployment", namespace="shop", name="api @team <b> closes #1")
    assert render.title(hostile, diagnosis, changeset) == \
        "Raise memory limit of shop/api-team-b-closes-1 to 768Mi after OOMKilled"


def test_update_comment_escapes_and_neutralises() -> None:
    comment = render.update_comment(title_text="Raise memory limit of shop/api to 768Mi after OOMKilled",
                                    run_url=RUN_URL)
    assert comment.startswith("Updated by GitOps Autofix with new evidence: Raise memory limit of shop/api to "
                              "768Mi after OOMKilled.")
    assert RUN_URL in comment


def assert_safe_comment(comment: str) -> None:
    every = walk(MD.parse(comment))
    assert not [t for t in every if t.type in ("html_block", "html_inline", "image")], comment
    assert [t.attrs.get("href") for t in every if t.type == "link_open"] in ([], [RUN_URL]), comment
    for t in every:
        if t.type in ("text", "code_inline", "fence") and t.content != RUN_URL:
            assert not CLOSING.search(t.content) and not MENTION.search(t.content), t.content
            assert t.type != "text" or not AUTOLINK_TEXT.search(t.content), t.content


@pytest.mark.parametrize("u", list(ATTACKS.values()), ids=list(ATTACKS))
def test_escalation_and_resolved_comments_escape_untrusted_text(u: Untrusted) -> None:
    merged = Remediation(workload=str(WORKLOAD), cause="oom_killed", branch="autofix/shop/api/oom-killed",
                         pr_number=3, pr_url="", state="merged", merged_at=1.0)
    verdict = ledger.Verdict("escalate", "escalated", merged)
    assert_safe_comment(ledger.escalation_comment(verdict, alert=u.alert, root_cause=u.root_cause,
                                                  evidence=u.evidence, run_url=RUN_URL))
    assert_safe_comment(ledger.resolved_comment(alert=u.alert + u.root_cause, resolved_at="2026-11-23T16:02:44Z",
                                                closing=False))


# ---- fuzzing every untrusted input at once -------------------------------------------------------------------

PIECES = ["|", "\\|", "`", "```", "~~~", "<img src=x onerror=alert(1)>", "<script>", "</details>", "<!--", "-->",
          "@team", "@acme/sre", "me@example.com", "Closes #1", "fixes acme/repo#2", "Resolved: #3", "fix GH-4",
          "https://evil.example/x", "www.evil.example", "mailto:x@y.z", "[x](javascript:alert(1))", "![i](h://x)",
          "<http://x.y>", "\n", "\r\n", "\r", "\u2028", "\x00", "\x1b[31m", "\t", "\n## H\n", "- [x] ", "1. ",
          "> ", "---", "===", "*", "_", "~~", "&#64;team", "&lt;b&gt;", "\\", "#", ":", " ", "    ", "{w}", "%s"]
untrusted_text = st.lists(st.sampled_from(PIECES) | st.text(max_size=8), max_size=12).map("".join)
values = untrusted_text | st.lists(untrusted_text, max_size=3) | st.none() | st.integers(-10, 10)
samples = st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 1e4) | st.integers(-5, 10**6)
instants = st.floats(ALERT_AT - 8 * 86400, ALERT_AT) | st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def curves(draw: st.DrawFn) -> Curve:
    """Any curve a fixer could make: hostile texts, samples of any size (NaN, infinities), any window."""
    points = draw(st.lists(st.tuples(instants, samples), max_size=80))
    return Curve(title=draw(untrusted_text), unit=draw(untrusted_text), points=points,
                 threshold=draw(st.none() | samples), threshold_label=draw(untrusted_text),
                 proposed=draw(st.none() | samples), end=draw(st.none() | instants),
                 stats=draw(st.dictionaries(st.sampled_from(["min", "p95", "max", "growth_per_hour", "a b"])
                                            | untrusted_text, samples, max_size=4)),
                 promql=draw(untrusted_text), verdict=draw(untrusted_text))


@st.composite
def untrusted(draw: st.DrawFn) -> Untrusted:
    return Untrusted(
        root_cause=draw(untrusted_text), evidence=draw(st.lists(untrusted_text, max_size=3)),
        alert=draw(untrusted_text), file=draw(untrusted_text), container=draw(untrusted_text),
        old=draw(values), new=draw(values), reason=draw(untrusted_text), note=draw(untrusted_text),
        checks=draw(st.lists(untrusted_text, max_size=2)), environments=draw(st.lists(untrusted_text, max_size=2)),
        rendered=draw(st.none() | untrusted_text.map(lambda t: "verified: " + t)), what=draw(untrusted_text),
        explanation=draw(st.none() | untrusted_text), risk_why=draw(untrusted_text),
        others=draw(st.lists(untrusted_text, max_size=2)), diff_line=draw(untrusted_text),
        cause=draw(st.sampled_from(["oom_killed", "bad_command", "model_proposed", "pvc_storage_class"])),
        # a revision is an int by type now (CommandRollbackFacts); the title still takes 1 to 9 digits only
        facts=rollback(draw(st.integers(0, 99) | st.integers(-10**12, 10**12))),
        curve=draw(st.none() | curves()), sizing_note=draw(st.just("") | untrusted_text))


@pytest.mark.e2e  # slow: the fast part stays under a minute
@settings(derandomize=True, max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(untrusted())
def test_fuzzed_untrusted_text_never_changes_the_pr_layout(u: Untrusted) -> None:
    assert_safe(body_of(u), u)
    diagnosis, changeset = record(u)
    text = render.title(WORKLOAD, diagnosis, changeset) + "\n" + render.commit_message(WORKLOAD, diagnosis, changeset)
    assert not CLOSING.search(text) and not MENTION_OR_EMAIL.search(text)
    assert not re.search(r"[<>|`\r\x00]|://|www\.", text), text
    assert len(render.title(WORKLOAD, diagnosis, changeset)) <= 250


# ---- the alert's own context ------------------------------------------------------------------------------------

GRAPH = ("http://prometheus-k8s.monitoring.svc:9090/graph?g0.expr=max_over_time%28kube_pod_container_status_waiting"
         "_reason%7Breason%3D%22CrashLoopBackOff%22%7D%5B5m%5D%29+%3E%3D+1&g0.tab=1")
RUNBOOK = "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"


def body_with_context(context: list[tuple[str, str]]) -> str:
    diagnosis, changeset = record(Untrusted())
    return render.pr_body(workload=WORKLOAD, diagnosis=diagnosis, changeset=changeset, run_url=RUN_URL,
                          alert="KubePodCrashLooping", context=context)


def test_the_alert_section_says_where_how_bad_since_when_and_links_runbook_and_graph() -> None:
    body = body_with_context([("cluster", "prod-eu-1"), ("severity", "warning"), ("since", "2026-11-23T15:15:29Z"),
                              ("summary", "Pod is crash looping."), ("runbook", RUNBOOK), ("graph", GRAPH)])
    assert ("## Alert\n\n`KubePodCrashLooping` firing since `2026-11-23T15:15:29Z`, severity `warning`, cluster "
            "`prod-eu-1`.\n\nPod is crash looping.\n\n"
            f"[Runbook]({RUNBOOK}) · [Prometheus graph]({GRAPH})\n") in body
    hrefs = [t.attrs.get("href") for t in walk(MD.parse(body)) if t.type == "link_open"]
    assert hrefs == [RUNBOOK, GRAPH, RUN_URL]


@pytest.mark.parametrize("url", [
    "javascript:alert(1)", "http://evil.example/a) [click](http://x", "https://x.example/@team", "http://a b",
], ids=["scheme", "markdown-break", "mention", "space"])
def test_a_runbook_that_is_not_a_plain_url_is_shown_as_code_never_linked(url: str) -> None:
    body = body_with_context([("summary", "closes #1 @team <b>x</b>"), ("runbook", url)])
    tokens = walk(MD.parse(body))
    assert [t.attrs.get("href") for t in tokens if t.type == "link_open"] == [RUN_URL]
    assert not [t for t in tokens if t.type in ("html_inline", "html_block")]
    assert not MENTION.search(body.replace("`@" + ZWSP, "")) and "closes #1" not in body


def test_no_context_no_section() -> None:
    assert "## Alert" not in body_with_context([])


# ---- the metrics the sizing read -------------------------------------------------------------------------------


def metrics_of(body: str) -> str:
    return body[body.index("## Metrics"):body.index("## Change")]


def test_the_chart_shows_the_metric_against_its_limit_and_the_proposed_value() -> None:
    """What a reviewer reads first: a sawtooth climbing to the limit for three days, the new limit above it."""
    shown = metrics_of(body_of(Untrusted(curve=curve())))
    chart = [t for t in MD.parse(shown) if t.type == "fence" and t.info == "mermaid"]
    assert len(chart) == 1, "one fence holds the whole chart"
    found = assert_mermaid(chart[0].content)
    assert found["title"][0].group(0) == '    title "memory working set of api (all pods)"'
    assert found["x-axis"][0].group(0) == '    x-axis "hours before the alert" -72 --> 0'
    assert found["y-axis"][0].group(0) == '    y-axis "MiB" 0 --> 800'
    observed, limit, proposed = ([float(v) for v in m["values"].split(", ")] for m in found["line"])
    assert len(observed) == 37, "2 h steps: the smallest round step within MAX_CURVE_POINTS"
    assert set(limit) == {512.0} and set(proposed) == {768.0}
    assert max(observed) == pytest.approx(max(v for _, v in sawtooth()), abs=0.05), "the peak is kept"
    assert ("Hours before the alert: observed (blue: the highest sample in each 2 h step); limit 512Mi (red, "
            "512 MiB); proposed (green, 768 MiB).") in shown
    assert ("| min | p50 | p95 | max | growth per hour | limit 512Mi | proposed | verdict |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
            "| 180 MiB | 341.5 MiB | 478.2 MiB | 504.9 MiB | +27 MiB/h | 512 MiB | 768 MiB | undersized: a plateau "
            "near the limit with spikes |") in shown
    [query] = [t for t in MD.parse(shown) if t.type == "fence" and t.info == "promql"]
    assert query.content.replace("\n", " ").strip() == QUERY, "the query as sent, whole, to run it again"


def test_hostile_names_stay_inside_their_chart_strings() -> None:
    u = ATTACKS["hostile-chart"]
    body = body_of(u)
    [chart] = [t for t in walk(MD.parse(body)) if t.type == "fence" and t.info == "mermaid"]
    found = assert_mermaid(chart.content)
    title = found["title"][0]["text"]
    assert title.startswith('"api line x 1, 2 % init securityLevel loose % /details team closes 1 click')
    assert chart.content.count("%%") == 2, "our directive only"
    assert [m.group(0).split(" [")[0] for m in found["line"]] == [
        '    line "observed"', '    line "api line x 1, 2 % init securityLevel..."', '    line "proposed"']
    assert "%%{init: {\"securityLevel\"" not in chart.content


def test_a_short_window_reads_in_minutes_and_ends_at_the_last_sample_without_the_alert() -> None:
    points = [(ALERT_AT - 5400 + i * 15, 0.2 + (i % 40) / 100) for i in range(360)]
    shown = metrics_of(body_of(Untrusted(curve=curve(points=points, unit="cores", end=None, proposed=None,
                                                     threshold=0.5, threshold_label="limit 500m", stats={}))))
    found = assert_mermaid([t for t in MD.parse(shown) if t.type == "fence" and t.info == "mermaid"][0].content)
    assert found["x-axis"][0].group(0) == '    x-axis "minutes before the last sample" -88 --> 0'
    assert len(found["line"]) == 2 and len(found["line"][0]["values"].split(", ")) == 45  # 2 min steps
    assert "| limit 500m | verdict |\n| --- | --- |\n| 0.5 cores | undersized" in shown


def test_a_curve_of_one_step_has_no_chart_but_its_table_and_query() -> None:
    shown = metrics_of(body_of(Untrusted(curve=curve(points=[(ALERT_AT - 20, 500.0), (ALERT_AT - 5, 510.0)]))))
    assert "```mermaid" not in shown and "| min | p50 |" in shown and "```promql" in shown


def test_sized_without_metrics_is_one_line_under_the_change() -> None:
    body = body_of(Untrusted(sizing_note="sized without metrics: prometheus: connection refused"))
    assert "## Metrics" not in body
    change = body[body.index("## Change"):body.index("Found by:")]
    assert change.endswith("|\n\nSized without metrics: prometheus: connection refused.\n\n"), change


def test_the_body_stays_within_the_forge_limit_by_drawing_fewer_points() -> None:
    """A long model explanation leaves little room: the chart is drawn with fewer points, then left out."""
    def explained(chars: int) -> str:
        line = "the cache grows between restarts " * 7
        return "\n".join([line] * (chars // (len(line) + 1)) + ["pace " * (chars % (len(line) + 1) // 5)])

    room = render.MAX_BODY_CHARS - len(body_of(Untrusted(curve=curve(), explanation="x")).split(ledger.MARKER_PREFIX)[0])
    drawn: list[int] = []
    for chars in range(room - 200, room + 1300, 25):
        body = body_of(Untrusted(curve=curve(), explanation=explained(chars))).split(ledger.MARKER_PREFIX)[0]
        assert len(body) - 1 <= render.MAX_BODY_CHARS  # the newline before the marker is the pipeline's
        fences = [t.content for t in MD.parse(body) if t.type == "fence" and t.info == "mermaid"]
        drawn.append(len(assert_mermaid(fences[0])["line"][0]["values"].split(", ")) if fences else 0)
        assert "| min | p50 |" in metrics_of(body) and "```promql" in body, "the table and query stay"
    assert drawn == sorted(drawn, reverse=True) and drawn[0] == 37 and drawn[-1] == 0, drawn
    assert {0 < n < 37 for n in drawn} == {True, False}, f"fewer points before none: {drawn}"


def test_an_oom_fixed_by_a_rollback_is_titled_by_what_is_done_and_why() -> None:
    diagnosis, changeset = record(Untrusted(new="ghcr.io/acme/api:1.4.1"))
    plan = changeset.plan.model_copy(update={"cause": "image_pull_after_rollout"})
    title = render.title(WORKLOAD, diagnosis, changeset.model_copy(update={"plan": plan}))
    assert title == "Roll back image of shop/api to ghcr.io/acme/api:1.4.1 after OOMKilled"


# ---- for how long, the last log lines, what happens next ------------------------------------------------------

DECIDED = datetime(2026, 11, 23, 17, 20, 29, tzinfo=UTC)
OUR_DETAILS = re.compile(r"<details><summary>Last \d+ log lines before the failure \([^<>]*\)</summary>\n|</details>\n")


def test_the_alert_section_says_for_how_long_and_which_prometheus_fired_it() -> None:
    body = body_with_context([("severity", "critical"), ("prometheus", "monitoring/k8s"),
                              ("replica", "prometheus-k8s-0"), ("since", "2026-11-23T15:15:29Z"),
                              ("for", "2 h 5 min")])
    assert ("`KubePodCrashLooping` firing since `2026-11-23T15:15:29Z` (for 2 h 5 min when this was decided), "
            "severity `critical`.\n\nFired by Prometheus `monitoring/k8s`, replica `prometheus-k8s-0`.") in body


def body_with(*, logs: render.LogTail | None = None, steps: render.NextSteps | None = None) -> str:
    diagnosis, changeset = record(Untrusted())
    return render.pr_body(workload=WORKLOAD, diagnosis=diagnosis, changeset=changeset, run_url=RUN_URL,
                          alert="KubePodCrashLooping", logs=logs, next_steps=steps)


HOSTILE_LOG = ["{\"level\":30,\"msg\":\"request completed\",\"url\":\"/api/v1/checkout\"}",
               "</details><img src=x onerror=alert(1)>", "```", "ping @acme/sre, fixes #12",
               "password=hunter2 token: ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"]


def test_the_last_log_lines_are_folded_in_a_fence_nothing_can_leave() -> None:
    lines = tuple(f"line {i}" for i in range(30)) + tuple(HOSTILE_LOG)
    body = body_with(logs=render.LogTail(source="api-1/<b>api</b>", lines=lines))
    every = walk(MD.parse(body))
    html_tokens = [t.content for t in every if t.type in ("html_block", "html_inline")]
    assert html_tokens and all(OUR_DETAILS.fullmatch(h) for h in html_tokens), html_tokens
    assert "(api-1/&lt;b&gt;api&lt;/b&gt;, previous container)" in body
    [fence] = [t for t in every if t.type == "fence" and "line " in t.content]
    shown = fence.content.splitlines()
    assert len(shown) == render.MAX_EVIDENCE_LINES and shown[-len(HOSTILE_LOG) + 1] == "</details><img src=x " \
        "onerror=alert(1)>" and "line 29" not in shown[0]
    assert "hunter2" not in body and "ghp_0123456789" not in body  # redacted as evidence is
    assert not MENTION.search(body) and not CLOSING.search(body)
    assert body.index("## Evidence") < body.index("<details>") < body.index("## Change")


def test_no_log_no_details() -> None:
    assert "<details>" not in body_with(logs=render.LogTail(source="api-1/api", lines=()))


def steps(delivery: render.Delivery | None) -> render.NextSteps:
    return render.NextSteps(delivery=delivery, cause="oom_killed", cooldown_hours=72,
                            cooldown_until=DECIDED + timedelta(hours=72), opt_out="autofix.io/ignore",
                            opt_out_causes="autofix.io/ignore-causes")


ARGO = render.Delivery(tool="Argo CD", kind="Application", name="checkout", namespace="argocd", interval="3m",
                       interval_default=True)


@pytest.mark.parametrize(("delivery", "said"), [
    (ARGO, "Argo CD Application `checkout` in namespace `argocd` syncs it automatically; Argo CD looks at git every "
           "`3m` (Argo CD's default `timeout.reconciliation`), or at once on a webhook."),
    (render.Delivery(tool="Argo CD", kind="Application", name="checkout", automated=False),
     "Argo CD Application `checkout` has no automated sync (`spec.syncPolicy.automated` unset): it shows OutOfSync "
     "until someone syncs it."),
    (render.Delivery(tool="Flux", kind="Kustomization", name="apps", namespace="flux-system", interval="10m"),
     "Flux Kustomization `apps` in namespace `flux-system` applies it at its next reconciliation: every `10m` "
     "(`spec.interval`)."),
    (render.Delivery(tool="Flux", kind="HelmRelease", name="podinfo", automated=False, interval="5m"),
     "Flux HelmRelease `podinfo` is suspended (`spec.suspend: true`): nothing is applied until it is resumed."),
    (None, "the GitOps controller applies it (no Argo CD Application or Flux object"),
], ids=["argocd-auto", "argocd-manual", "flux-interval", "flux-suspended", "unknown"])
def test_what_happens_next_says_who_applies_it_and_when(delivery: render.Delivery | None, said: str) -> None:
    body = body_with(steps=steps(delivery))
    section = body.split("## What happens next\n\n")[1].split("\n\n## ")[0]
    merge, close, opt_out = section.splitlines()
    assert merge.startswith("- **Merge:** ") and said in merge
    assert close == ("- **Close without merging:** GitOps Autofix takes it as a no and opens no new pull request "
                     "for this workload and cause (`oom_killed`) for 72 h after the close: closed now, not before "
                     "`2026-11-26T17:20:29Z`.")
    assert opt_out == ('- **Opt out:** annotate the workload\'s manifest in git with `autofix.io/ignore: "true"` '
                       "(no fix at all), or `autofix.io/ignore-causes: oom_killed` (this cause only).")
    assert body.index("## Risk") < body.index("## What happens next") < body.index("## Record")


def test_a_hostile_gitops_object_name_stays_code() -> None:
    body = body_with(steps=steps(render.Delivery(tool="Flux", kind="Kustomization", name="x` [a](http://e) @team",
                                                 interval="1m`<b>")))
    every = walk(MD.parse(body))
    assert [t.attrs.get("href") for t in every if t.type == "link_open"] == [RUN_URL]
    assert not [t for t in every if t.type in ("html_inline", "html_block")]
    assert not MENTION.search(body)
