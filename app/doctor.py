"""`autofix doctor`: check every edge the bot talks to with the configuration it will run with.

Each check returns a row (name, status, detail) and never raises: one broken edge must not hide the state of
the others. The table is what an operator reads right after installing the chart, so every failing row says
what to fix. The cluster is checked with SelfSubjectAccessReviews (what the bot may do), not by trying:
the bot must be able to read every kind it reads, and must NOT be able to write or to read Secrets.
The git check pushes a scratch branch ``autofix/doctor/<random>`` and deletes it again. Prometheus (optional) is
asked two instant queries: whether the series the sizing reads are scraped now, with the policy's label names.
"""

from __future__ import annotations

import functools
import logging
import secrets
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from app.adapters.snapshot import RESOURCES

if TYPE_CHECKING:
    from app.settings import Settings
    from app.wiring import AuthHeader

log = logging.getLogger(__name__)

Status = Literal["ok", "fail", "skip"]
READ_VERBS = ("get", "list")  # the bot never watches: the shipped roles do not grant it (README security model)
SECRET_VERBS = ("get", "list", "watch")  # any of them would expose secret data
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
HTTP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


@dataclass(frozen=True)
class Permission:
    verb: str
    group: str
    resource: str
    subresource: str = ""

    def __str__(self) -> str:
        sub = f"/{self.subresource}" if self.subresource else ""
        return f"{self.verb} {self.resource}{sub}" + (f".{self.group}" if self.group else "")


def needed_permissions() -> list[Permission]:
    """What the bot reads: every kind of the adapters' table with get/list, and pod logs."""
    needed = [Permission(verb, r.group, r.plural) for r in RESOURCES.values() for verb in READ_VERBS]
    return [*needed, Permission("get", "", "pods", "log")]


def forbidden_permissions() -> list[Permission]:
    """What the bot must never be granted: any write on what it reads, and reading Secrets."""
    secrets_read = [Permission(verb, "", "secrets") for verb in SECRET_VERBS]
    return [*secrets_read, *(Permission(verb, r.group, r.plural) for r in RESOURCES.values() for verb in WRITE_VERBS)]


def run(settings: Settings) -> list[Check]:
    """All checks, in the order an operator fixes them."""
    rows = [_guard("policy", lambda: _policy(settings)), check_store(settings)]
    rows += cluster_rows(settings)
    configured, repo_rows = repository_rows(settings)
    if settings.git_url or configured is None:  # AUTOFIX_GIT_URL's repository (or its absence: a failure)
        forge_row, auth_header = _forge(settings)
        rows.append(forge_row)
        rows.append(_guard("git clone and push", lambda: _git(settings, auth_header)))
    rows += repo_rows
    rows.append(_guard("mlflow", lambda: _mlflow(settings)))
    rows.append(_guard("llm", lambda: _llm(settings)))
    rows.append(check_prometheus(settings))
    rows += renderer_rows()
    return rows


def render_table(rows: Iterable[Check]) -> str:
    rows = list(rows)
    width = max(len(row.name) for row in rows)
    lines = [f"{'check':<{width}}  status  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{row.name:<{width}}  {row.status.upper():<6}  {row.detail}" for row in rows]
    return "\n".join(lines)


def _guard(name: str, check: Callable[[], tuple[Status, str]]) -> Check:
    try:
        status, detail = check()
    except Exception as err:  # a doctor reports every failure as a row; it never crashes on one
        log.info("doctor check failed", extra={"check": name, "error": type(err).__name__})
        return Check(name, "fail", _describe(err))
    return Check(name, status, detail)


def _describe(err: Exception) -> str:
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    return " ".join(str(message).split())[:300]


# ---- the checks ---------------------------------------------------------------------------------------


def _policy(settings: Settings) -> tuple[Status, str]:
    from app import policies

    base = settings.policy_base()
    policy = policies.load(settings.policy_dir, defaults=base)
    return "ok", f"{settings.policy_dir}{policies.layered_over(settings.policy_dir, base)} (version {policy.digest})"


def cluster_rows(settings: Settings) -> list[Check]:
    """Reachable, then permissions: for the one cluster (KUBECONFIG or in-cluster), or for each cluster of
    clusters.yaml (rows ``cluster <name>``; one that cannot be loaded or reached fails alone)."""
    from app import clusters

    try:
        fleet = clusters.load(settings.policy_dir)
    except Exception as err:
        return [Check("clusters", "fail", _describe(err))]
    if fleet is None:
        from app.adapters.cluster import KubeCluster

        return _cluster_checks("cluster", lambda: KubeCluster.from_config(settings.kubeconfig))
    readers = clusters.ClusterSet(fleet, source=settings.policy_dir / clusters.FILE_NAME,
                                  factory=lambda entry, where: clusters.kube_reader(
                                      entry, where, default_kubeconfig=settings.kubeconfig))
    rows = []
    for name in fleet.names:
        role = " (Argo CD hub)" if name == fleet.hub else ""
        rows += _cluster_checks(f"cluster {name}", functools.partial(readers.reader, name), role=role)
    return rows


def _cluster_checks(name: str, build: Callable[[], Any], *, role: str = "") -> list[Check]:
    try:
        cluster = build()
        namespaces = cluster.list("Namespace", None)
    except Exception as err:
        return [Check(name, "fail", _describe(err)), Check(f"{name} permissions", "skip", "cluster not reachable")]
    reachable = Check(name, "ok", f"reachable, {len(namespaces)} namespace(s) visible{role}")
    return [reachable, _guard(f"{name} permissions", lambda: _permissions(cluster))]


def _permissions(cluster: Any) -> tuple[Status, str]:
    def allowed(p: Permission) -> bool:
        return bool(cluster.can_i(p.verb, p.resource, group=p.group, subresource=p.subresource))

    needed = needed_permissions()
    missing = [str(p) for p in needed if not allowed(p)]
    excess = [str(p) for p in forbidden_permissions() if allowed(p)]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing[:8])}")
    if excess:
        problems.append(f"must NOT have {len(excess)}: {', '.join(excess[:8])}")
    if problems:
        return "fail", "; ".join(problems)
    return "ok", f"{len(needed)} read permissions granted; no write verb, no Secrets"


def _forge(settings: Settings) -> tuple[Check, AuthHeader | None]:
    if settings.forge == "local":
        return Check("forge", "skip", f"local forge: PRs are written under {settings.data_dir / 'prs'}"), None
    from app.wiring import build_forge

    try:
        forge, auth_header = build_forge(settings)
        permissions = forge.repo_permissions()  # type: ignore[attr-defined]
    except Exception as err:
        return Check("forge", "fail", _describe(err)), None
    if settings.forge == "gitlab":
        return _gitlab_row(settings, forge, permissions), auth_header
    how = "GitHub App installation token" if settings.github_app_enabled else "token"
    if not permissions.get("push"):
        return Check("forge", "fail", f"{how} cannot push to {settings.github_repo} (permissions.push is "
                                      "false): grant Contents and Pull requests write"), auth_header
    return Check("forge", "ok", f"{how} can push to {settings.github_repo} at {settings.github_api_url}"), \
        auth_header


def repository_rows(settings: Settings) -> tuple[list[Any] | None, list[Check]]:
    """Each repository of repositories.yaml (the file's entries, None without it) and its two rows: ``repo <name>
    git``, the base branch asked of the remote with ``git ls-remote`` and the entry's credentials, and ``repo
    <name> forge``, the token's permissions there (as the ``forge`` row checks AUTOFIX_GIT_URL's). One
    repository that fails never hides another's."""
    from app import repos

    try:
        configured = repos.load(settings.policy_dir)
    except Exception as err:
        return [], [Check("repositories", "fail", _describe(err))]
    rows: list[Check] = []
    for config in configured or ():
        forge, auth_header, problem = _entry_forge(settings, config)
        rows.append(_guard(f"repo {config.name} git", functools.partial(_ls_remote, settings, config, auth_header)))
        if problem is not None:
            rows.append(problem)
        elif forge is None:
            rows.append(Check(f"repo {config.name} forge", "skip",
                              f"local forge: PRs are written under {settings.data_dir / 'prs' / config.name}"))
        else:
            rows.append(_guard(f"repo {config.name} forge", functools.partial(_entry_permissions, config, forge)))
    return configured, rows


def _entry_forge(settings: Settings, config: Any) -> tuple[Any, AuthHeader | None, Check | None]:
    """The entry's forge as the service builds it (credentials checked first), its git auth header, or the
    failed forge row naming the repository."""
    from app.wiring import ForgeSpec, make_forge

    if config.forge == "local":
        return None, None, None
    try:
        config.check_credentials()
        forge, auth_header = make_forge(ForgeSpec.of_entry(config), data_dir=settings.data_dir,
                                        where=f"repositories.yaml: entry {config.name!r}")
    except Exception as err:
        return None, None, Check(f"repo {config.name} forge", "fail", f"repository {config.name!r}: {_describe(err)}")
    return forge, auth_header, None


def _ls_remote(settings: Settings, config: Any, auth_header: AuthHeader | None) -> tuple[Status, str]:
    from app import redact
    from app.adapters.workspace import GitWorkspace

    where = redact.text(config.url)
    workspace = GitWorkspace(config.url, base=config.base, checkout=settings.data_dir / "doctor-unused",
                             author=settings.git_author, auth_header=auth_header)
    try:
        sha = workspace.remote_base()
    except Exception as err:
        return "fail", f"repository {config.name!r} unreachable at {where}: {_describe(err)}"
    if sha is None:
        return "fail", f"repository {config.name!r}: {where} has no branch {config.base} (base)"
    return "ok", f"{where}: {config.base} at {sha[:12]} (ls-remote)"


def _entry_permissions(config: Any, forge: Any) -> tuple[Status, str]:
    permissions = forge.repo_permissions()
    if config.forge == "gitlab":
        where = f"{forge.project} at {config.gitlab.url if config.gitlab is not None else 'https://gitlab.com'}"
        if not permissions.get("push"):
            return "fail", (f"repository {config.name!r}: GitLab token cannot push to {where} (its role is below "
                            "Developer): give the access token the Developer role and the api scope")
        return "ok", f"GitLab token can push and open merge requests on {where}"
    how = "GitHub App installation token" if config.credentials.app is not None else "token"
    if not permissions.get("push"):
        return "fail", (f"repository {config.name!r}: {how} cannot push to {config.github_repo} (permissions.push "
                        "is false): grant Contents and Pull requests write")
    return "ok", f"{how} can push to {config.github_repo}"


def _gitlab_row(settings: Settings, forge: Any, permissions: dict[str, bool]) -> Check:
    """The token's role on the project: a push and a merge request need Developer (30) or above."""
    where = f"{forge.project} at {settings.gitlab_url}"
    if not permissions.get("push"):
        return Check("forge", "fail", f"GitLab token cannot push to {where} (its role is below Developer): give the "
                                      "project or group access token the Developer role and the api scope")
    return Check("forge", "ok", f"GitLab token can push and open merge requests on {where}")


def _git(settings: Settings, auth_header: AuthHeader | None) -> tuple[Status, str]:
    from app.adapters.workspace import GitWorkspace

    if not settings.git_url:
        return "fail", "AUTOFIX_GIT_URL is not set"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    branch = f"autofix/doctor/{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="doctor-", dir=settings.data_dir) as scratch:
        workspace = GitWorkspace(settings.git_url, base=settings.git_base, checkout=Path(scratch) / "repo",
                                 author=settings.git_author, auth_header=auth_header)
        base = workspace.sync()
        workspace.push_branch(branch, {".autofix-doctor": f"written by autofix doctor on {branch}\n"},
                              message="autofix doctor: scratch branch, deleted right away")
        workspace.delete_remote_branch(branch)
    return "ok", f"cloned {settings.git_base} at {base[:12]}, pushed and deleted {branch}"


def _mlflow(settings: Settings) -> tuple[Status, str]:
    from app.adapters.tracking import MlflowTracker

    uri = settings.tracking_uri
    if uri.startswith(("http://", "https://")):
        # MLflow's client retries a dead server for minutes; a quick probe fails fast instead.
        _http_get(uri.rstrip("/") + "/health", headers={})
    tracker = MlflowTracker(uri, ui_url=settings.mlflow_ui_url,
                            artifact_root=(settings.data_dir / "mlartifacts").resolve())
    return "ok", f"{_redact_uri(uri)}: experiment id {tracker.experiment_id()}"


def _llm(settings: Settings) -> tuple[Status, str]:
    if settings.openai_api_key is None or not settings.llm_enabled:
        return "skip", "no OPENAI_API_KEY: diagnosis is deterministic only"
    from app.adapters.llm import OpenAIAdvisor

    advisor = OpenAIAdvisor(settings.openai_api_key.get_secret_value(), base_url=settings.openai_base_url,
                            model=settings.llm_model, timeout=HTTP_TIMEOUT, max_retries=0)
    where = settings.openai_base_url or "api.openai.com"
    return "ok", f"{where}: {advisor.check()}"  # lists the models: costs no tokens


# What the evidence stage reads (app/stages/metrics.py), by source: each must be scraped now, with the labels the
# policy names (metrics.labels), for fixes to be sized from the curve.
CADVISOR = ("container_memory_working_set_bytes", "container_cpu_usage_seconds_total",
            "container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_periods_total")
KUBE_STATE_METRICS = ("kube_pod_container_resource_limits", "kube_pod_container_resource_requests",
                      "kube_pod_container_status_restarts_total")


def check_store(settings: Settings) -> Check:
    """The job store: opened as the service opens it (migrated to the newest schema), then written and read back
    in a transaction that is rolled back (its readiness probe). A PostgreSQL URL is shown without its password."""
    return _guard("job store", lambda: _store(settings))


def _store(settings: Settings) -> tuple[Status, str]:
    from app import migrations
    from app.adapters.store import JobStore

    store = JobStore(settings.store_location)
    try:
        problem = store.readiness()
    finally:
        store.close()
    if problem is not None:
        return "fail", problem
    return "ok", f"{settings.store_display}: schema revision {migrations.HEAD}, read and write"


def check_prometheus(settings: Settings) -> Check:
    """Prometheus (AUTOFIX_PROMETHEUS_URL): reachable, and the series the sizing reads scraped now with the
    policy's label names. Read-only: two instant queries."""
    return _guard("prometheus", lambda: _prometheus(settings))


def _prometheus(settings: Settings) -> tuple[Status, str]:
    if not settings.prometheus_url:
        return "skip", "no AUTOFIX_PROMETHEUS_URL: fixes are sized without metrics (the PR says so)"
    from app import policies
    from app.adapters.prometheus import PrometheusReader

    try:
        labels = policies.configured(settings).metrics.labels
    except Exception:  # the policy row says what is wrong with it; the defaults are checked here meanwhile
        labels = policies.MetricsLabels()
    token = settings.prometheus_token.get_secret_value() if settings.prometheus_token is not None else None
    reader = PrometheusReader(settings.prometheus_url, token=token, ca_file=settings.prometheus_ca_file,
                              headers=settings.prometheus_header_map(), timeout=(HTTP_TIMEOUT, HTTP_TIMEOUT))
    try:
        now = time.time()
        expected = (*CADVISOR, *KUBE_STATE_METRICS)
        names = "|".join(expected)
        with_labels = (f'{labels.namespace}!="", {labels.pod}!="", {labels.container}!=""')
        found = _names(reader.query(f'count by (__name__) ({{__name__=~"{names}", {with_labels}}})', at=now))
        missing = [n for n in expected if n not in found]
        if not missing:
            return "ok", (f"{reader.source}: reachable; {len(expected)} of {len(expected)} series the sizing reads "
                          f"are scraped (cAdvisor, kube-state-metrics) with labels {labels.namespace}, "
                          f"{labels.pod}, {labels.container}")
        unlabelled = _names(reader.query(f'count by (__name__) ({{__name__=~"{"|".join(missing)}"}})', at=now))
    finally:
        reader.close()
    problems = []
    absent = [n for n in missing if n not in unlabelled]
    if absent:
        problems.append(f"not scraped now: {', '.join(absent)} ({_sources(absent)})")
    relabelled = [n for n in missing if n in unlabelled]
    if relabelled:
        problems.append(f"scraped without labels {labels.namespace}, {labels.pod}, {labels.container}: "
                        f"{', '.join(relabelled)} (set metrics.labels in the policy to this install's names)")
    return "fail", f"{reader.source}: reachable; " + "; ".join(problems) + ": those fixes are sized without metrics"


def renderer_rows(search_path: str | None = None) -> list[Check]:
    """One row per renderer: the program, its path and version. A missing kustomize, or one older than v4
    (kubectl 1.20 embeds v2), fails: modern overlays would not render, so their fixes would go out not
    verified. ``search_path`` replaces PATH (tests)."""
    from app.adapters import renderers

    found = renderers.renderer_versions(search_path)
    version, via = found["kustomize"], found["kustomize_via"]
    if version == renderers.ABSENT:
        kustomize = Check("kustomize", "fail", "neither kustomize nor kubectl on PATH: kustomize fixes are planned "
                                               "on the live object and not verified; install kustomize v5")
    elif renderers.too_old(version):
        kustomize = Check("kustomize", "fail", f"{via}: kustomize {version}, older than v4: modern overlays "
                                               "(patches:, components) do not render, their fixes are not "
                                               "verified; install kustomize v5 (first on PATH)")
    else:
        kustomize = Check("kustomize", "ok", f"{via}: kustomize {version}")
    if found["helm"] == renderers.ABSENT:
        helm = Check("helm", "fail", "neither helm nor helm-python-sdk: Helm fixes are not verified; install helm 3")
    else:
        helm = Check("helm", "ok", f"{found['helm_via']}: helm {found['helm']}")
    return [kustomize, helm]


def _names(found: Iterable[Any]) -> set[str]:
    return {series.labels.get("__name__", "") for series in found}


def _sources(names: list[str]) -> str:
    sources = []
    if any(n in CADVISOR for n in names):
        sources.append("cAdvisor, through the kubelet's /metrics/cadvisor")
    if any(n in KUBE_STATE_METRICS for n in names):
        sources.append("kube-state-metrics")
    return " and ".join(sources)


def _http_get(url: str, *, headers: dict[str, str]) -> None:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) URL from settings
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            response.read(1 << 16)
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"{_redact_uri(url)} answered HTTP {err.code}") from err
    except (urllib.error.URLError, OSError) as err:
        raise RuntimeError(f"{_redact_uri(url)} unreachable: {getattr(err, 'reason', err)}") from err


def _redact_uri(uri: str) -> str:
    from app import redact

    return redact.text(uri)  # credentials inside a tracking URI must not reach the terminal
