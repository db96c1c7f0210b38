"""Typed Settings -> the Pipeline: every adapter, forge and optional model built in one place.

Heavy libraries (kubernetes, PyGithub, MLflow, openai) are imported inside the builders, not at module
import, so `autofix --help` and the webhook's start stay fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from app import policies
from app.errors import ConfigError
from app.pipeline import Pipeline
from app.policies import Policy
from app.ports import Advisor, ClusterReader, Forge, MetricsReader, Remediation, RunSink
from app.settings import Settings

if TYPE_CHECKING:
    from app.adapters.store import JobStore
    from app.exporter import Exporter, HealthReport

AuthHeader = Callable[[], str | None]  # an http.extraHeader for git over https, fresh at each call


def build_pipeline(settings: Settings, *, cluster: ClusterReader | None = None,
                   store: JobStore | None = None) -> Pipeline:
    """The real pipeline; ``cluster`` replaces the Kubernetes API (a snapshot for `autofix handle --snapshot`),
    ``store`` is the job store the caller opened already (its ledger). No MLflow here: see build_exporter."""
    from app.adapters.renderers import SandboxedRenderer
    from app.adapters.store import JobStore
    from app.adapters.workspace import GitWorkspace
    from app.sources.deployers.repo_urls import RepoIdentity
    from app.sources.layouts import Layouts

    policy = policies.load(settings.policy_dir)  # first: an invalid policy stops everything, with its line
    if not settings.git_url:
        raise ConfigError("AUTOFIX_GIT_URL: required (clone URL of the GitOps repo)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    forge, auth_header = build_forge(settings)
    if cluster is None:
        from app.adapters.cluster import KubeCluster

        cluster = KubeCluster.from_config(settings.kubeconfig)
    check_renderers()  # after the settings are known good: a wrong setting is the one line on stderr
    workspace = GitWorkspace(settings.git_url, base=settings.git_base, checkout=settings.data_dir / "repo",
                             author=settings.git_author, auth_header=auth_header)
    return Pipeline(policy=policy, cluster=cluster, workspace=workspace, forge=forge,
                    advisor=build_advisor(settings, policy),
                    identity=RepoIdentity(git_url=settings.git_url, github_repo=settings.github_repo),
                    base=settings.git_base, ledger=store if store is not None else JobStore(settings.store_path),
                    layouts=Layouts(renderer=SandboxedRenderer()), own_namespace=settings.pod_namespace,
                    metrics=build_metrics(settings))


def check_renderers() -> None:
    """The renderers' versions, logged at start (`autofix serve`, `autofix handle`): a WARNING names a missing
    or too old kustomize and what it means for the PRs. Cached, so one check per process and program."""
    from app.adapters import renderers

    renderers.check_at_start()


def build_outcomes(settings: Settings, store: JobStore, *, pipeline: Pipeline | None = None,
                   clock: Callable[[], float] = time.time) -> Callable[[], list[Remediation]]:
    """One pass of app/outcomes.follow over the ledger, with the pipeline's forge, cluster and workspace (its own
    if none is given): the workspace synced first, decided outcomes queued in the store's outbox for MLflow."""
    from app import outcomes

    follower = pipeline if pipeline is not None else build_pipeline(settings, store=store)

    def once() -> list[Remediation]:
        follower.workspace.sync()
        return outcomes.follow(ledger=store, forge=follower.forge, cluster=follower.cluster,
                               workspace=follower.workspace, windows=follower.policy.outcomes, outbox=store.add_run,
                               clock=clock)

    return once


def build_metrics(settings: Settings) -> MetricsReader | None:
    """The optional metrics API: only with AUTOFIX_PROMETHEUS_URL set (the policy may still turn reading off)."""
    if not settings.prometheus_url:
        return None
    from app.adapters.prometheus import PrometheusReader

    token = settings.prometheus_token.get_secret_value() if settings.prometheus_token is not None else None
    return PrometheusReader(settings.prometheus_url, token=token, ca_file=settings.prometheus_ca_file,
                            headers=settings.prometheus_header_map())


def build_exporter(settings: Settings, store: JobStore, *, forge: Forge | None,
                   health: HealthReport | None = None) -> Exporter:
    """The outbox's exporter to MLflow; MLflow itself is imported when the first record is sent."""
    from app.exporter import Exporter

    def sink() -> RunSink:
        from app.adapters.tracking import MlflowTracker

        return MlflowTracker(settings.tracking_uri, ui_url=settings.mlflow_ui_url,
                             artifact_root=(settings.data_dir / "mlartifacts").resolve())

    return Exporter(store, sink=sink, forge=forge, health=health)


def build_advisor(settings: Settings, policy: Policy) -> Advisor | None:
    """The optional LLM: only with OPENAI_API_KEY set and the policy's llm.enabled."""
    if settings.openai_api_key is None or not settings.llm_enabled or not policy.llm.enabled:
        return None
    from app.adapters.llm import OpenAIAdvisor

    return OpenAIAdvisor(settings.openai_api_key.get_secret_value(), base_url=settings.openai_base_url,
                         model=settings.llm_model)


def build_forge(settings: Settings) -> tuple[Forge, AuthHeader | None]:
    """The code host, and the header git needs to push to it (None: the remote needs none from us)."""
    if settings.forge == "local":
        from app.forges.local import LocalForge

        return LocalForge(settings.data_dir / "prs"), None
    if not settings.github_repo or (settings.github_token is None and not settings.github_app_enabled):
        raise ConfigError("AUTOFIX_GITHUB_REPO and GITHUB_TOKEN (or AUTOFIX_GITHUB_APP_ID): required with the "
                          "github forge (or set AUTOFIX_FORGE=local for a dry run)")
    from app.forges.github import AppCredentials, GitHubForge

    app = None
    if settings.github_app_id is not None:  # an App wins over a token: its installation tokens expire, a PAT not
        app = AppCredentials(app_id=settings.github_app_id, private_key=settings.github_app_key(),
                             installation_id=settings.github_app_installation_id)
    token = settings.github_token.get_secret_value() if settings.github_token is not None and app is None else ""
    forge = GitHubForge(settings.github_repo, api_url=settings.github_api_url, token=token, app=app,
                        write_spacing=settings.github_write_spacing)
    return forge, forge.auth_header
