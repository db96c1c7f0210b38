"""The `autofix` command: serve, handle, demo, explain, runs show, calibrate, policy check; `autofix --version`.

Imports are lazy so `autofix --help` stays fast: a sub-command pays only for what it uses.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

# Cheap (its imports are lazy): what `autofix handle` and the demo share.
from app.payloads import read_payload

log = logging.getLogger("app.cli")


# Exit statuses (README): 0 every alert decided, 1 a configuration error (one line on stderr naming what is
# wrong), 2 a usage error (argparse), 3 `autofix handle` had a result `failed`; 141 (128 + SIGPIPE, as a shell
# reports it) when the reader of stdout went away (`autofix explain FP | head`): quietly, no traceback.
EXIT_CONFIG = 1
EXIT_FAILED = 3
EXIT_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from app.errors import ConfigError, StartupError

    try:
        _configure_logging(args)
        result: int = args.func(args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then ours to answer
        return result
    except (ConfigError, StartupError) as err:
        print(f"autofix: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        _stdout_to_devnull()
        return EXIT_PIPE


def _stdout_to_devnull() -> None:
    """What is left in stdout's buffer goes nowhere: Python's own flush at exit would report the closed pipe again
    (docs.python.org, signal module, "Note on SIGPIPE")."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _configure_logging(args: argparse.Namespace) -> None:
    """LOG_FORMAT (json|text) and LOG_LEVEL, the service at INFO and one-shot commands at WARNING by default, one
    step more per -v; redacted either way (app/logs.py). A wrong value is a configuration error (exit 1)."""
    import os

    from app import logs

    logs.from_env(os.environ, service=args.command == "serve", verbose=getattr(args, "verbose", 0) or 0)


OUTCOMES_EXPORT_SECONDS = 20.0  # `autofix outcomes sync`: how long the amendments may take to reach MLflow


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default; one that names it in words already (a path under the data
    dir, the kubeconfig) keeps its own wording instead of "(default: None)"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "(default" in action.help:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse's parser with our help formatter, for the sub-commands too (add_subparsers reuses the class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _version() -> str:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("gitops-autofix")
    except PackageNotFoundError:  # run from a checkout that was never installed
        ours = "unknown (not installed)"
    return f"autofix {ours} (gitops-autofix, Python {platform.python_version()})"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="autofix", description="Alertmanager alerts -> GitOps pull requests")
    parser.add_argument("--version", action="version", version=_version(),
                        help="print the version and Python's, then exit")
    parser.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the webhook service")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port to listen on")
    serve.set_defaults(func=_serve)

    handle = sub.add_parser("handle", help="run one webhook payload through the pipeline, print JSON results")
    handle.add_argument("payload", type=Path, help="an Alertmanager webhook payload (JSON file)")
    handle.add_argument("--snapshot", type=Path, help="read the cluster from a `kubectl get -o json` List dump "
                        "(default: the live cluster, from the in-cluster config or the kubeconfig)")
    handle.set_defaults(func=_handle)

    demo = sub.add_parser("demo", help="run the shipped example: no cluster, no GitHub, no LLM")
    demo.add_argument("--example", type=Path, default=None, help="example directory: alert.json, cluster.json and repo/ (default: examples/demo)")
    demo.set_defaults(func=_demo)

    explain = sub.add_parser("explain", help="show each stage's decision for the jobs of an alert fingerprint")
    explain.add_argument("fingerprint", help="the alert's fingerprint, as the demo and the PR body print it")
    explain.set_defaults(func=_explain)

    doctor = sub.add_parser("doctor", help="check cluster permissions, git push, forge, MLflow, policy and LLM")
    doctor.set_defaults(func=_doctor)

    report = sub.add_parser("report", help="per cause: PRs opened, merged, effective, reverted, no_fix by reason "
                            "and median times to merge, sync and resolve, over the last N days")
    report.add_argument("--days", type=_days, default=30.0, help="the window, in days back from now (default: 30)")
    report.add_argument("--json", action="store_true", help="print JSON instead of the table")
    report.set_defaults(func=_report)

    calibrate = sub.add_parser("calibrate", help="learn the risk thresholds from the outcomes in MLflow: "
                               "a table, a proposed diff of the policy (never applied) and the curve as a PNG")
    calibrate.add_argument("--png", type=Path, default=None,
                           help="where to draw the curve (default: <data dir>/calibration.png)")
    calibrate.add_argument("--policy-file", type=Path, default=None,
                           help="the policy file the diff is against (default: the last policy file that sets risk.thresholds)")
    calibrate.add_argument("--json", action="store_true", help="print JSON instead of the table")
    calibrate.set_defaults(func=_calibrate)

    dashboard = sub.add_parser("dashboard", help="the dashboard issue in the GitOps repository")
    dashboard_sub = dashboard.add_subparsers(dest="dashboard_command", required=True)
    dashboard_sync = dashboard_sub.add_parser("sync", help="act on its ticked boxes, then write it again now")
    dashboard_sync.set_defaults(func=_dashboard_sync)

    outcomes = sub.add_parser("outcomes", help="what became of each fix: merged, synced, rolled out, effective")
    outcomes_sub = outcomes.add_subparsers(dest="outcomes_command", required=True)
    outcomes_sync = outcomes_sub.add_parser("sync", help="follow every fix not decided yet once, print the table")
    outcomes_sync.set_defaults(func=_outcomes_sync)

    policy = sub.add_parser("policy", help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="validate a policy directory")
    check.add_argument("directory", type=Path, help="the policy directory (its *.yaml files, merged in name order)")
    check.set_defaults(func=_policy_check)

    runs = sub.add_parser("runs", help="the run records (MLflow, or the outbox before export), without a web UI")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    runs_show = runs_sub.add_parser("show", help="one run's params, metrics, tags and artifact names, read from "
                                    "MLFLOW_TRACKING_URI (default: <data dir>/mlflow.db) or the job store's outbox")
    runs_show.add_argument("run_id", metavar="RUN_ID", help="an MLflow run id, or the record key a PR body or "
                           "`autofix explain` names")
    runs_show.add_argument("--json", action="store_true", help="print JSON, values uncut")
    runs_show.set_defaults(func=_runs_show)
    _verbose_everywhere(parser)
    return parser


VERBOSE_HELP = ("log more to stderr: INFO for one-shot commands (WARNING without), DEBUG for serve (INFO without); "
                "LOG_LEVEL sets the base level, LOG_FORMAT=json|text the format")


def _verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """-v after the sub-command too (`autofix serve -v`). A sub-parser's count starts afresh and replaces the
    top-level one only when given (SUPPRESS otherwise), so `autofix -v serve` keeps the top-level one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                sub.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=VERBOSE_HELP)
                _verbose_everywhere(sub)


def _serve(args: argparse.Namespace) -> int:
    from app import settings as settings_mod
    from app.main import run

    run(settings_mod.load(), host=args.host, port=args.port)
    return 0


def _handle(args: argparse.Namespace) -> int:
    from app import settings as settings_mod
    from app.oneshot import handle_and_export

    payload = read_payload(args.payload)
    cluster = None
    if args.snapshot is not None:
        from app.adapters.snapshot import SnapshotCluster

        cluster = SnapshotCluster.from_file(args.snapshot)

    def show(results: list[dict[str, Any]]) -> None:
        # First, as soon as every alert is decided: the run records go to MLflow after (a bounded wait).
        print(json.dumps({"results": results}, indent=2), flush=True)

    results, left = handle_and_export(settings_mod.load(), payload, cluster=cluster, on_results=show)
    if left["pending"]:
        log.warning("run records not in MLflow yet: kept in the job store, the next serve or handle sends them",
                    extra={"records": int(left["pending"])})
    return EXIT_FAILED if any(r["outcome"] == "failed" for r in results) else 0


def _demo(args: argparse.Namespace) -> int:
    from app import demo

    return demo.run(args.example)


def _runs_show(args: argparse.Namespace) -> int:
    from app import runs
    from app import settings as settings_mod

    return runs.show(settings_mod.load(), args.run_id, out=sys.stdout, err=sys.stderr, as_json=args.json)


def _explain(args: argparse.Namespace) -> int:
    from app import settings as settings_mod
    from app.adapters.store import JobStore

    settings = settings_mod.load()
    store = JobStore(settings.store_location)
    jobs = store.find(args.fingerprint)
    if not jobs:
        print(f"no job for fingerprint {args.fingerprint} in {settings.store_display}", file=sys.stderr)
        return 1
    for job in jobs:
        print(f"job {job.id}: {job.alertname} {job.alert_status} state={job.state} attempts={job.attempts}")
        result = job.result or {}
        for stage in result.get("stages", []):
            print(f"  {stage['stage']:<10} {stage['seconds']:8.3f}s  {stage['decision']}")
        if result:
            print(f"  outcome: {result.get('outcome')}: {result.get('reason')}")
            if result.get("pr_url"):
                print(f"  pr: {result['pr_url']}")
        if job.error:
            print(f"  error: {job.error}")
        if result.get("record_id"):
            print(f"  record: {_export_line(store.export_of(str(result['record_id'])), str(result['record_id']))}")
        _print_ledger(store, result)
    return 0


def _export_line(export: Any, key: str) -> str:
    """Where the job's run record is: in MLflow (its link), waiting in the outbox (why), or refused."""
    if export is None:
        return f"{key}: not in the outbox (exported and purged after the retention period)"
    if export.state in ("done", "linking"):
        return f"{key}: in MLflow, {export.run_url}"
    waiting = "refused by MLflow, kept" if export.state == "failed" else "waiting in the outbox"
    return f"{key}: {waiting} after {export.attempts} attempt(s)" + (f" ({export.error})" if export.error else "")


def _print_ledger(store: Any, result: dict[str, Any]) -> None:
    """The PRs the bot proposed before for this workload and cause: why it escalated or kept quiet."""
    from app import ledger, render
    from app.models.incident import WorkloadRef

    kind, _, rest = str(result.get("workload") or "").partition("/")
    namespace, _, name = rest.partition("/")
    if not (name and result.get("cause")):
        return
    branch = render.branch(WorkloadRef(kind=kind, namespace=namespace, name=name), str(result["cause"]))
    for e in store.entries(branch=branch):
        ended = {"merged": e.merged_at, "closed": e.closed_at}.get(e.state)
        print(f"  ledger: PR #{e.pr_number} {e.state}" + (f" at {ledger.when(ended)}" if ended else "")
              + f", opened {ledger.when(e.opened_at)}: "
              + ", ".join(f"{path.rsplit('.', 2)[-2]}.{path.rsplit('.', 1)[-1]} {e.before.get(path)} -> {new}"
                          for path, new in e.after.items()))


def _days(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3660:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"days must be in (0, 3660]: {text}")
    return value


def _report(args: argparse.Namespace) -> int:
    import time

    from app import reports
    from app import settings as settings_mod
    from app.adapters.store import JobStore

    settings = settings_mod.load()
    store = JobStore(settings.store_location)
    try:
        report = reports.read(store, now=time.time(), days=args.days)
    finally:
        store.close()
    print(json.dumps(report.as_json(), indent=2) if args.json else reports.table(report))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from app import doctor
    from app import settings as settings_mod

    rows = doctor.run(settings_mod.load())
    print(doctor.render_table(rows))
    failed = [row.name for row in rows if row.status == "fail"]
    if failed:
        print(f"\n{len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _calibrate(args: argparse.Namespace) -> int:
    from app import calibration, policies
    from app import settings as settings_mod
    from app.adapters.tracking import MlflowTracker

    settings = settings_mod.load()
    policy = policies.configured(settings)
    runs = MlflowTracker(settings.tracking_uri, ui_url=settings.mlflow_ui_url).scored_runs()
    data = calibration.samples(runs)
    wanted = policy.calibration.min_samples
    if len(data) < wanted:
        line = f"{len(data)} finished fix(es) in MLflow, the policy's calibration.min_samples is {wanted}: " \
               "nothing proposed"
        print(json.dumps({"samples": len(data), "min_samples": wanted, "proposed": None}) if args.json else line)
        return 0
    result = calibration.calibrate(data, policy.calibration, current=policy.risk.thresholds)
    path = args.policy_file or _thresholds_file(settings.policy_dir)
    diff = calibration.policy_diff(path.read_text(encoding="utf-8"), result.proposed, name=path.name)
    png = args.png or settings.data_dir / "calibration.png"
    from app.adapters.png import draw_calibration

    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(draw_calibration(result, target=policy.calibration.target_safe_rate,
                                     medium_rate=policy.calibration.medium_safe_rate))
    if args.json:
        print(json.dumps(calibration.as_json(result, diff=diff, png=str(png)), indent=2))
        return 0
    print(calibration.table(result))
    print()
    print(calibration.summary(result, policy.calibration))
    print(f"curve: {png}")
    print()
    print(diff or f"{path.name}: the thresholds already match, no change proposed")
    return 0


def _thresholds_file(directory: Path) -> Path:
    """The policy file whose risk.thresholds win (the last in name order that sets them), else the first."""
    import yaml

    from app.errors import ConfigError

    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    if not files:
        raise ConfigError(f"{directory} has no policy file to propose a change to; name one with --policy-file")
    setting = [p for p in files
               if "thresholds" in ((yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("risk") or {})]
    return setting[-1] if setting else files[0]


def _dashboard_sync(args: argparse.Namespace) -> int:
    import time

    from app import dashboard, policies, repos
    from app import settings as settings_mod
    from app.adapters.store import JobStore
    from app.wiring import build_forge, build_repos

    settings = settings_mod.load()
    policy = policies.configured(settings)
    configured = repos.load(settings.policy_dir)  # repositories.yaml: the issue in its dashboard: true entry
    if configured is None:
        forge, _ = build_forge(settings)  # the one forge of the settings (no git URL needed for an issue)
    else:
        repo_set = build_repos(settings, configured)
        forge = repo_set.get(repo_set.dashboard.name).forge
    store = JobStore(settings.store_location)
    board: Any = forge  # GitHubForge, GitLabForge and LocalForge keep issues too (app.ports.IssueBoard)
    done = dashboard.sync(board=board, jobs=store, ledger=store, policy=policy, clock=time.time)
    if done is None:
        print("dashboard: off (policy dashboard.enabled is false)")
        return 0
    print(f"dashboard: issue #{done.issue.number} {'created' if done.created else 'updated'} ({done.issue.url}); "
          f"retried job(s): {list(done.retried) or 'none'}; cooldown(s) lifted: {list(done.lifted) or 'none'}")
    return 0


def _policy_check(args: argparse.Namespace) -> int:
    import os

    from app import policies
    from app.errors import ConfigError
    from app.settings import policy_base

    try:  # the directory is the argument, layered over the shipped defaults as the service will
        base = policy_base(os.environ.get("AUTOFIX_POLICY_DEFAULTS"))
        if base is not None and not base.is_file():
            raise ConfigError(f"AUTOFIX_POLICY_DEFAULTS: {base} is not a file")
        policy = policies.load(args.directory, setting="", defaults=base)
    except ConfigError as err:
        print(f"invalid policy: {err}", file=sys.stderr)
        return 1
    print(f"policy OK: {args.directory}{policies.layered_over(args.directory, base)} (version {policy.digest})")
    return 0


def _outcomes_sync(args: argparse.Namespace) -> int:
    """Follow each fix not decided yet once (app/outcomes.py), print every ledger row; decided outcomes wait in
    the outbox for MLflow and are sent within a short wait (what is left, the next serve or handle sends)."""
    from app import outcomes
    from app import settings as settings_mod
    from app.adapters.store import JobStore
    from app.wiring import build_exporter, build_outcomes

    settings = settings_mod.load()
    store = JobStore(settings.store_location)
    try:
        followed = {row.pr_number for row in build_outcomes(settings, store)()}
        rows = [row for row in store.entries() if row.opened_at > 0]
        print(outcomes.table(rows), end="")
        print(f"{len(followed)} followed now, {sum(1 for r in rows if r.final)} decided", file=sys.stderr)
        build_exporter(settings, store, forge=None).drain(seconds=OUTCOMES_EXPORT_SECONDS)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

