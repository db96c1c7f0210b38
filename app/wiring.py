"""Typed Settings -> the Pipeline: every adapter, forge and optional model built in one place.

Heavy libraries (kubernetes, PyGithub, MLflow, openai) are imported inside the builders, not at module
import, so `autofix --help` and the webhook's start stay fast.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app import policies, repos
from app.errors import ConfigError
from app.pipeline import Pipeline
from app.policies import Policy
from app.ports import Advisor, ClusterReader, Forge, Handler, MetricsReader, Remediation, RunSink
from app.settings import Settings

if TYPE_CHECKING:
    from app.adapters.store import JobStore
    from app.exporter import Exporter, HealthReport
    from app.ports import Workspace

log = logging.getLogger(__name__)
AuthHeader = Callable[[], str | None]  # an http.extraHeader for git over https, fresh at each call


def build_pipeline(settings: Settings, *, cluster: ClusterReader | None = None,
                   store: JobStore | None = None) -> Pipeline:
    """The real pipeline; ``cluster`` replaces the Kubernetes API (a snapshot for `autofix handle --snapshot`),
    ``store`` is the job store the caller opened already (its ledger). No MLflow here: see build_exporter."""
    from app.adapters.renderers import SandboxedRenderer
    from app.adapters.store import JobStore
    from app.sources.layouts import Layouts

    # first: an invalid policy stops everything, with its line
    policy = policies.configured(settings)
    configured = repos.load(settings.policy_dir)  # repositories.yaml, validated: None without the file
    if not settings.git_url and configured is None:
        raise ConfigError("AUTOFIX_GIT_URL: required (clone URL of the GitOps repo)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    repo_set = build_repos(settings, configured)
    if cluster is None:
        from app.adapters.cluster import KubeCluster

        cluster = KubeCluster.from_config(settings.kubeconfig)
    check_renderers()  # after the settings are known good: a wrong setting is the one line on stderr
    return Pipeline(policy=policy, cluster=cluster, repos=repo_set,
                    advisor=build_advisor(settings, policy),
                    ledger=store if store is not None else JobStore(settings.store_location),
                    layouts=Layouts(renderer=SandboxedRenderer()), own_namespace=settings.pod_namespace,
                    metrics=build_metrics(settings))


def build_repos(settings: Settings, configured: Sequence[repos.RepoConfig] | None) -> repos.RepoSet:
    """The GitOps repositories: AUTOFIX_GIT_URL's (built now: a missing token stops the start), named '', and
    with repositories.yaml each of its entries (credentials checked now, built on first use) matched first."""
    from app.sources.deployers.repo_urls import RepoIdentity

    built: list[repos.Repository] = []
    if settings.git_url:
        forge, auth_header = build_forge(settings)
        workspace = _workspace(settings, settings.git_url, base=settings.git_base,
                               checkout=settings.data_dir / "repo", forge=forge, auth_header=auth_header,
                               via=settings.commit_via, setting="AUTOFIX_COMMIT_VIA")
        identity = RepoIdentity(git_url=settings.git_url, github_repo=forge_path(settings))
        built.append(repos.Repository(name=repos.DEFAULT, workspace=workspace, forge=forge, identity=identity,
                                      base=settings.git_base))
        if configured is None:
            return repos.RepoSet.single(built[0])
    assert configured is not None, "build_pipeline asks for AUTOFIX_GIT_URL without repositories.yaml"
    for config in configured:
        config.check_credentials()  # every variable set, every file readable: read again at each use
    entries = [repos.entry_of(c) for c in configured]
    if settings.git_url:  # matched last: a repository of the file wins a URL both would match
        entries.append(repos.env_entry(settings.git_url, github_repo=forge_path(settings), base=settings.git_base))
    return repos.RepoSet(entries, build=functools.partial(_repository, settings), built=built, from_file=True)


def _repository(settings: Settings, entry: repos.Entry) -> repos.Repository:
    """A repositories.yaml entry's forge and checkout (data_dir/repos/<name>), built on its first alert."""
    config = entry.config
    assert config is not None, "the AUTOFIX_GIT_URL repository is built at start"
    where = f"{settings.policy_dir / repos.FILE_NAMES[0]}: entry {config.name!r}"
    spacing = settings.gitlab_write_spacing if config.forge == "gitlab" else settings.github_write_spacing
    forge, auth_header = make_forge(ForgeSpec.of_entry(config), data_dir=settings.data_dir, write_spacing=spacing,
                                    where=where)
    workspace = _workspace(settings, config.url, base=config.base, checkout=settings.data_dir / "repos" / config.name,
                           forge=forge, auth_header=auth_header, via=config.commit, setting=f"{where}: commit")
    return repos.Repository(name=config.name, workspace=workspace, forge=forge, identity=entry.identity,
                            base=config.base)


def _workspace(settings: Settings, url: str, *, base: str, checkout: Path, forge: Forge,
               auth_header: AuthHeader | None, via: str, setting: str) -> Workspace:
    from app.adapters.workspace import GitWorkspace

    return commit_workspace(GitWorkspace(url, base=base, checkout=checkout, author=settings.git_author,
                                         auth_header=auth_header),
                            forge, via=via, author=settings.git_author, setting=setting)


def build_handler(settings: Settings, *, cluster: ClusterReader | None = None,
                  store: JobStore | None = None) -> Handler:
    """What handles each alert: the pipeline, or with clusters.yaml in the policy directory one pipeline per
    cluster behind a router on the alert's cluster label (app/clusters.py). The pipelines share everything but
    the cluster they read (policy, store, forge, repositories, workspace); a ``cluster`` given (a snapshot)
    is the one cluster, whatever clusters.yaml says."""
    import functools

    from app import clusters

    # first, as build_pipeline does: an invalid policy is the error to see
    policies.configured(settings)
    fleet = clusters.load(settings.policy_dir) if cluster is None else None
    if fleet is None:
        return build_pipeline(settings, cluster=cluster, store=store)
    readers = clusters.ClusterSet(fleet, source=settings.policy_dir / clusters.FILE_NAME,
                                  factory=functools.partial(clusters.kube_reader,
                                                            default_kubeconfig=settings.kubeconfig))
    readers.check()  # every kubeconfig loaded now: one that cannot be stops the start, naming its entry
    first = build_pipeline(settings, cluster=readers.view(fleet.names[0]), store=store)
    pipelines = {name: _reading(first, readers.view(name), name=name) for name in fleet.names}
    follower = _reading(first, readers.fleet())
    return clusters.ClusterRouter(pipelines, label=fleet.label, default=fleet.default, follower=follower,
                                  stop=follower.stop)


def _reading(pipeline: Pipeline, cluster: ClusterReader, *, name: str | None = None) -> Pipeline:
    """The same pipeline reading another cluster (``name`` in clusters.yaml, part of its PRs' branch names): every
    other part (and its state) shared."""
    import copy

    twin = copy.copy(pipeline)
    twin.cluster = cluster
    twin.cluster_name = name
    return twin


def repo_set_of(handler: Handler) -> repos.RepoSet | None:
    """The repositories a handler (a pipeline, or a router over clusters) publishes to; None for a test's."""
    follower = follower_of(handler)
    return follower.repos if follower is not None else None


def follower_of(handler: Handler) -> Pipeline | None:
    """The pipeline that follows outcomes for ``handler``: itself, or a router's (reading every cluster)."""
    found = getattr(handler, "follower", handler)
    return found if isinstance(found, Pipeline) else None


def per_cluster(follower: Pipeline) -> Callable[[str], ClusterReader | None] | None:
    """Each cluster's own view, for the outcome of a fix the ledger says was for it (app/outcomes.reader_of): the
    follower reading every cluster (clusters.yaml) has them; one cluster has none (its rows are read from it)."""
    from app.clusters import FleetView

    return follower.cluster.of if isinstance(follower.cluster, FleetView) else None


def commit_workspace(workspace: Workspace, forge: Forge, *, via: str, author: str,
                     setting: str = "AUTOFIX_COMMIT_VIA") -> Workspace:
    """How the fix's commit reaches the repository: ``git`` push (any git server; the workspace as it is) or ``api``,
    created by GitHub through its Git Data API so GitHub signs it (app/forges/github_commits.py). ``setting`` names
    where ``via`` came from, for the error (a repositories.yaml entry's ``commit:``)."""
    if via == "git":
        return workspace
    from app.forges.github import GitHubForge

    if via != "api" or not isinstance(forge, GitHubForge):
        what = f"{via!r} is neither git nor api" if via != "api" else \
            f"api needs the github forge (the GitHub Git Data API), not {type(forge).__name__}"
        raise ConfigError(f"{setting}: {what}; use git (a plain git push) for any other server")
    from app.forges.github_commits import ApiCommitWorkspace

    return ApiCommitWorkspace(workspace, forge, author=author)


def check_renderers() -> None:
    """The renderers' versions, logged at start (`autofix serve`, `autofix handle`): a WARNING names a missing
    or too old kustomize and what it means for the PRs. Cached, so one check per process and program."""
    from app.adapters import renderers

    renderers.check_at_start()


def build_outcomes(settings: Settings, store: JobStore, *, pipeline: Pipeline | None = None,
                   clock: Callable[[], float] = time.time) -> Callable[[], list[Remediation]]:
    """One pass of app/outcomes.follow over the ledger, with the pipeline's forge, cluster and workspace (its own
    if none is given), decided outcomes queued in the store's outbox for MLflow. A repository's checkout is
    fetched only when its ledger has a row still to follow (open, or merged and not settled): an install with
    ten repositories and one open PR fetches one. Each pass logs which repositories were fetched."""
    from app import outcomes

    follower = pipeline if pipeline is not None else follower_of(build_handler(settings, store=store))
    assert follower is not None, "build_handler builds real pipelines"

    def once() -> list[Remediation]:
        fetched: list[str] = []
        if not follower.repos.from_file:
            workspace = follower.workspace
            rows = outcomes.follow(ledger=store, forge=follower.forge, cluster=follower.cluster,
                                   workspace=workspace, windows=follower.policy.outcomes, outbox=store.add_run,
                                   clock=clock, clusters=per_cluster(follower),
                                   fetch=_fetcher(workspace, repos.DEFAULT, fetched))
        else:
            rows = [row for name in follower.repos.names
                    for row in _follow_repository(follower, store, name, clock, fetched=fetched)]
        log.info("outcomes pass", extra={"fetched": [repos.shown(n) for n in fetched],
                                         "not_fetched": [repos.shown(n) for n in follower.repos.names
                                                         if n not in fetched], "rows": len(rows)})
        return rows

    return once


def _follow_repository(follower: Pipeline, store: JobStore, name: str, clock: Callable[[], float], *,
                       fetched: list[str]) -> list[Remediation]:
    """The rows of one repository of repositories.yaml, with its forge and checkout (fetched only when a row is
    still followed; its name then appended to ``fetched``): one repository's trouble (its forge or git away)
    never stops the others'."""
    from app import outcomes
    from app.errors import AutofixError

    try:
        repo = follower.repos.get(name)
        return outcomes.follow(ledger=repos.RepoLedger(store, name), forge=repo.forge, cluster=follower.cluster,
                               workspace=repo.workspace, windows=follower.policy.outcomes, outbox=store.add_run,
                               clock=clock, clusters=per_cluster(follower),
                               fetch=_fetcher(repo.workspace, name, fetched))
    except AutofixError as err:
        log.warning("outcomes of a repository not followed", extra={"repo": name, "error": err.message})
        return []


def _fetcher(workspace: Workspace, name: str, fetched: list[str]) -> Callable[[], str]:
    """The workspace's sync, noting the repository's name in ``fetched`` (the pass's log line)."""
    def fetch() -> str:
        fetched.append(name)
        return workspace.sync()

    return fetch


def build_metrics(settings: Settings) -> MetricsReader | None:
    """The optional metrics API: only with AUTOFIX_PROMETHEUS_URL set (the policy may still turn reading off)."""
    if not settings.prometheus_url:
        return None
    from app.adapters.prometheus import PrometheusReader

    token = settings.prometheus_token.get_secret_value() if settings.prometheus_token is not None else None
    return PrometheusReader(settings.prometheus_url, token=token, ca_file=settings.prometheus_ca_file,
                            headers=settings.prometheus_header_map())


def build_exporter(settings: Settings, store: JobStore, *, forge: Forge | None,
                   health: HealthReport | None = None, repos: repos.RepoSet | None = None) -> Exporter:
    """The outbox's exporter to MLflow; MLflow itself is imported when the first record is sent. With ``repos``
    (several repositories) a record's PR link is written with the forge of the repository its PR is in."""
    from app.exporter import Exporter

    def sink() -> RunSink:
        from app.adapters.tracking import MlflowTracker

        return MlflowTracker(settings.tracking_uri, ui_url=settings.mlflow_ui_url,
                             artifact_root=(settings.data_dir / "mlartifacts").resolve())

    forges = repos.forge_of if repos is not None and repos.from_file else None
    return Exporter(store, sink=sink, forge=forge, health=health, forges=forges)


def build_advisor(settings: Settings, policy: Policy) -> Advisor | None:
    """The optional LLM: only with OPENAI_API_KEY set and the policy's llm.enabled."""
    if settings.openai_api_key is None or not settings.llm_enabled or not policy.llm.enabled:
        return None
    from app.adapters.llm import OpenAIAdvisor

    return OpenAIAdvisor(settings.openai_api_key.get_secret_value(), base_url=settings.openai_base_url,
                         model=settings.llm_model)


def build_forge(settings: Settings) -> tuple[Forge, AuthHeader | None]:
    """The code host of AUTOFIX_GIT_URL's repository, and the header git needs to push to it (None: the remote
    needs none from us). Built by ``make_forge``, as every repository of repositories.yaml is."""
    if settings.forge == "local":
        return make_forge(ForgeSpec(kind="local"), data_dir=settings.data_dir)
    if settings.forge == "gitlab":
        project, secret = forge_path(settings), settings.gitlab_token
        if not project or secret is None:
            raise ConfigError("GITLAB_TOKEN and AUTOFIX_GITLAB_PROJECT (or an AUTOFIX_GIT_URL that names the project): "
                              "required with the gitlab forge (or set AUTOFIX_FORGE=local for a dry run)")
        return make_forge(ForgeSpec(kind="gitlab", repo=project, api_url=settings.gitlab_url,
                                    token=secret.get_secret_value), data_dir=settings.data_dir,
                          write_spacing=settings.gitlab_write_spacing, where="AUTOFIX_FORGE=gitlab")
    if not settings.github_repo or (settings.github_token is None and not settings.github_app_enabled):
        raise ConfigError("AUTOFIX_GITHUB_REPO and GITHUB_TOKEN (or AUTOFIX_GITHUB_APP_ID): required with the "
                          "github forge (or set AUTOFIX_FORGE=local for a dry run)")
    app = None
    if settings.github_app_id is not None:  # an App wins over a token: its installation tokens expire, a PAT not
        app = GitHubAppSpec(app_id=settings.github_app_id, private_key=settings.github_app_key(),
                            installation_id=settings.github_app_installation_id)
    secret = settings.github_token
    return make_forge(ForgeSpec(kind="github", repo=settings.github_repo, api_url=settings.github_api_url,
                                token=(lambda: secret.get_secret_value()) if secret is not None and app is None else None,
                                app=app), data_dir=settings.data_dir, write_spacing=settings.github_write_spacing)


def forge_path(settings: Settings) -> str:
    """AUTOFIX_GIT_URL's repository as its forge names it (GitHub owner/name; GitLab: AUTOFIX_GITLAB_PROJECT, else the
    path in AUTOFIX_GIT_URL): an Argo CD or Flux URL with that path is ours even when the clone URL is a mirror."""
    if settings.forge == "gitlab":
        from app.forges.gitlab import project_from_url

        return settings.gitlab_project or project_from_url(settings.git_url)
    return settings.github_repo


@dataclass(frozen=True)
class GitHubAppSpec:
    app_id: int
    private_key: str
    installation_id: int | None = None


@dataclass(frozen=True)
class ForgeSpec:
    """What a forge is built from, for AUTOFIX_GIT_URL's repository (settings) or a repositories.yaml entry."""

    kind: str  # github, gitlab, local
    name: str = ""  # the repository ('' = AUTOFIX_GIT_URL's): a local forge writes under data_dir/prs[/<name>]
    repo: str = ""  # github: owner/name; gitlab: the project's path
    api_url: str = "https://api.github.com"  # github: the API; gitlab: the instance's URL
    token: Callable[[], str] | None = None  # asked at each request (a mounted file: re-read once rotated)
    app: GitHubAppSpec | None = None

    @classmethod
    def of_entry(cls, config: repos.RepoConfig) -> ForgeSpec:
        creds = config.credentials
        app = None
        if creds is not None and creds.app is not None:
            installation = os.environ.get(creds.app.installation_id_env or "", "").strip()
            app = GitHubAppSpec(app_id=int(os.environ[creds.app.id_env].strip()),
                                private_key=repos.read_secret(creds.app.private_key_file,
                                                              what=f"entry {config.name!r}: credentials.app"),
                                installation_id=int(installation) if installation else None)
        token = config.token_provider() if creds is not None and creds.app is None else None
        if config.forge == "gitlab":
            return cls(kind="gitlab", name=config.name, repo=config.gitlab_project, token=token,
                       api_url=config.gitlab.url if config.gitlab is not None else "https://gitlab.com")
        return cls(kind=config.forge, name=config.name, repo=config.github_repo or "", token=token, app=app,
                   api_url=config.github.api_url if config.github is not None else "https://api.github.com")


def make_forge(spec: ForgeSpec, *, data_dir: Path, write_spacing: float = 1.0,
               where: str = "AUTOFIX_FORGE") -> tuple[Forge, AuthHeader | None]:
    """The one place a forge is built: github (a token or an App), gitlab, or local (PRs written under the data
    dir: a dry run). ``where`` names the setting or the repositories.yaml entry in a ConfigError."""
    if spec.kind == "local":
        from app.forges.local import LocalForge

        return LocalForge(data_dir / "prs" / spec.name if spec.name else data_dir / "prs"), None
    if spec.kind == "gitlab":
        return _gitlab(spec, where=where, write_spacing=write_spacing)
    if spec.kind != "github":
        raise ConfigError(f"{where}: forge {spec.kind!r} is not one of github, gitlab, local")
    from app.forges.github import AppCredentials, GitHubForge

    app = None if spec.app is None else AppCredentials(app_id=spec.app.app_id, private_key=spec.app.private_key,
                                                       installation_id=spec.app.installation_id)
    forge = GitHubForge(spec.repo, api_url=spec.api_url, token=spec.token if spec.token and app is None else "",
                        app=app, write_spacing=write_spacing)
    return forge, forge.auth_header


def _gitlab(spec: ForgeSpec, *, where: str, write_spacing: float) -> tuple[Forge, AuthHeader | None]:
    from app.forges.gitlab import GitLabForge

    if spec.token is None:
        raise ConfigError(f"{where}: credentials: a GitLab access token (token_env or token_file) is required")
    forge = GitLabForge(spec.repo, url=spec.api_url, token=spec.token, write_spacing=write_spacing)
    return forge, forge.auth_header
