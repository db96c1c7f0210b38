"""Several GitOps repositories and a workload no Argo CD or Flux object deploys (plain YAML applied by kubectl), in
process: real bare repositories with real checkouts (GitWorkspace), a local forge per repository, the job store.

The workload is Online Boutique's checkoutservice, OOM-killed at 192Mi, applied with ``kubectl apply -n
onlineboutique`` (tests/fixtures/real-history-checkoutservice: GoogleCloudPlatform/microservices-demo's
kubernetes-manifests verbatim, raised from 128Mi five days ago). The other repository holds argoproj/
argocd-example-apps' guestbook verbatim (tests/scenarios/real-bare-untracked-oom/README.md names the commit), or
examples/demo's shop. The repository stage asks each configured repository's manifest index for it: the one
defining it gets the PR; two defining it is no fix naming both; none is no fix naming every repository searched.
With one repository, nothing is searched (no clone). The outcome follower fetches only the repositories whose
ledger has a row still to follow.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from app import policies, targets, wiring
from app.adapters.renderers import SandboxedRenderer
from app.adapters.snapshot import SnapshotCluster
from app.adapters.store import JobStore
from app.adapters.workspace import GitWorkspace
from app.demo import seed_bare_repo
from app.forges.local import LocalForge
from app.models.evidence import Evidence
from app.models.incident import Incident
from app.models.outcome import StageRecord
from app.pipeline import Pipeline
from app.repos import Entry, RepoSet, Repository
from app.settings import DEFAULT_POLICY_DIR, Settings
from app.sources.deployers.repo_urls import PatternIdentity
from app.sources.layouts import Layouts
from app.stages import repository
from app.stages.evidence import gather
from tests.conftest import EXAMPLES, ROOT
from tests.e2e.test_foreign_history import FILE, FIXTURE, HOUR, raised, shifted
from tests.gitrepo import Commit, seed_history
from tests.stages.world import incidents

GUESTBOOK = ROOT / "tests" / "scenarios" / "real-bare-untracked-oom" / "repo"  # argoproj/argocd-example-apps
WORKLOAD = "Deployment/onlineboutique/checkoutservice"
BRANCH = "autofix/onlineboutique/checkoutservice/oom-killed"
AUTHOR = "gitops-autofix[bot] <gitops-autofix@users.noreply.github.com>"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60,
                          env={"GIT_AUTHOR_NAME": "Dana Ops", "GIT_AUTHOR_EMAIL": "dana@example.com",
                               "GIT_COMMITTER_NAME": "Dana Ops", "GIT_COMMITTER_EMAIL": "dana@example.com",
                               "HOME": str(cwd), "PATH": "/usr/bin:/bin"}).stdout.strip()


def boutique(bare: Path, now: float) -> Path:
    """The Online Boutique's manifests with the raise to 192Mi committed five days ago (outside the 24 h window)."""
    seed_history(FIXTURE / "repo", bare, first_at=now - 41 * 24 * HOUR,
                 commits=[Commit(subject="checkoutservice: memory limit 192Mi", files={FILE: raised()},
                                 at=now - 5 * 24 * HOUR)])
    return bare


def plain(source: Path, bare: Path) -> Path:
    seed_bare_repo(source, bare)
    return bare


@dataclass
class Install:
    """Repositories of repositories.yaml (already built, as RepoSet.get builds them), the cluster, the ledger."""

    tmp: Path
    bares: dict[str, Path]
    repos: RepoSet
    cluster: SnapshotCluster
    incident: Incident
    ledger: JobStore
    now: float

    def pipeline(self) -> Pipeline:
        return Pipeline(policy=policies.load(DEFAULT_POLICY_DIR), cluster=self.cluster, repos=self.repos,
                        ledger=self.ledger, layouts=Layouts(renderer=SandboxedRenderer()), clock=time.time)

    def checkout(self, name: str) -> Path:
        return self.tmp / "data" / "repos" / name

    def prs(self, name: str) -> list[Path]:
        return sorted((self.tmp / "data" / "prs" / name).glob("*/"))

    def branches(self, name: str) -> list[str]:
        return sorted(_git(self.bares[name], "branch", "--format=%(refname:short)").split())


Make = Callable[[dict[str, Path], float], "Install"]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    stores: list[JobStore] = []

    def build(bares: dict[str, Path], now: float) -> Install:
        built = []
        for name, bare in bares.items():
            workspace = GitWorkspace(str(bare), base="main", checkout=tmp_path / "data" / "repos" / name,
                                     author=AUTHOR)
            built.append(Repository(name=name, workspace=workspace, forge=LocalForge(tmp_path / "data" / "prs" / name),
                                    identity=PatternIdentity((str(bare),)), base="main"))
        entries = [Entry(name=r.name, identity=r.identity, base=r.base) for r in built]
        scenario = tmp_path / "scenario"
        scenario.mkdir(exist_ok=True)
        cluster = SnapshotCluster.from_file(shifted(FIXTURE / "cluster-raised-5d.json", scenario / "cluster.json", now))
        shifted(FIXTURE / "alert.json", scenario / "alert.json", now)
        [incident] = incidents(scenario)
        stores.append(JobStore(tmp_path / "data" / "jobs.sqlite3"))
        return Install(tmp=tmp_path, bares=bares, repos=RepoSet(entries, built=built, from_file=True),
                       cluster=cluster, incident=incident, ledger=stores[-1], now=now)

    yield build
    for store in stores:
        store.close()


def _stage(stages: Sequence[StageRecord], name: str) -> str:
    return next(s.decision for s in stages if s.stage == name)


def test_a_plain_yaml_workload_gets_its_pr_in_the_only_repository_defining_it(tmp_path: Path, make: Make) -> None:
    now = time.time()
    install = make({"platform": plain(GUESTBOOK, tmp_path / "platform.git"),
                             "boutique": boutique(tmp_path / "boutique.git", now)}, now)

    outcome = install.pipeline().handle(install.incident)

    assert outcome.outcome == "pr_opened", outcome.reason
    assert _stage(outcome.stages, "repository") == (
        "repository boutique (base main): the only one of platform, boutique defining it "
        f"({FILE}#0); no Argo CD or Flux object deploys it")
    assert install.branches("boutique") == [BRANCH, "main"] and install.branches("platform") == ["main"]
    assert _git(install.bares["boutique"], "diff", "main", BRANCH).count("+              memory: 288Mi") == 1
    assert [p.name for p in install.prs("boutique")] == [f"1-{BRANCH.replace('/', '__')}"]
    assert install.prs("platform") == []
    assert [(r.repo, r.pr_number, r.branch) for r in install.ledger.entries()] == [("boutique", 1, BRANCH)]


def test_a_workload_defined_in_two_repositories_is_no_fix_naming_both(tmp_path: Path, make: Make) -> None:
    now = time.time()
    install = make({"platform": boutique(tmp_path / "platform.git", now),
                             "boutique": boutique(tmp_path / "boutique.git", now)}, now)

    outcome = install.pipeline().handle(install.incident)

    assert (outcome.outcome, outcome.code) == ("no_fix", "ambiguous_manifest"), outcome.reason
    assert outcome.reason == (f"{WORKLOAD} is defined in more than one configured repository (platform: {FILE}#0, "
                              f"boutique: {FILE}#0) and no Argo CD or Flux object says which one is deployed: "
                              "not guessing")
    assert install.branches("platform") == ["main"] and install.branches("boutique") == ["main"]
    assert install.prs("platform") == install.prs("boutique") == []
    assert install.ledger.entries() == []


def test_a_workload_no_repository_defines_is_no_fix_naming_every_repository_searched(tmp_path: Path,
                                                                                     make: Make) -> None:
    now = time.time()
    install = make({"platform": plain(GUESTBOOK, tmp_path / "platform.git"),
                             "shop": plain(EXAMPLES / "demo" / "repo", tmp_path / "shop.git")}, now)

    outcome = install.pipeline().handle(install.incident)

    assert (outcome.outcome, outcome.code) == ("no_fix", "no_manifest"), outcome.reason
    assert outcome.reason == f"no manifest for {WORKLOAD} was found in the GitOps repos searched (platform, shop)"
    assert install.branches("platform") == install.branches("shop") == ["main"]


def test_one_repository_is_the_one_without_a_clone_by_the_repository_stage(tmp_path: Path, make: Make) -> None:
    now = time.time()
    install = make({"boutique": boutique(tmp_path / "boutique.git", now)}, now)
    evidence = _evidence(install)

    chosen = repository.choose(repos=install.repos, evidence=evidence)

    assert (chosen.name, chosen.decision) == ("boutique", "repository boutique (base main)")
    assert not install.checkout("boutique").exists(), "nothing searched, nothing cloned: the source stage clones it"
    outcome = install.pipeline().handle(install.incident)
    assert outcome.outcome == "pr_opened", outcome.reason
    assert install.branches("boutique") == [BRANCH, "main"]


def test_a_workload_its_gitops_objects_name_is_chosen_by_url_without_a_search(tmp_path: Path, make: Make) -> None:
    """The demo's shop/checkout, deployed by an Argo CD Application: matched by URL, no repository cloned here."""
    now = time.time()
    install = make({"platform": plain(GUESTBOOK, tmp_path / "platform.git"),
                             "boutique": boutique(tmp_path / "boutique.git", now)}, now)
    data = json.loads((EXAMPLES / "demo" / "cluster.json").read_text())
    [app] = [item for item in data["items"] if item["kind"] == "Application"]
    app["spec"]["source"]["repoURL"] = str(install.bares["platform"])
    demo = SnapshotCluster(data["items"], logs=data.get("logs"))
    incident = incidents(EXAMPLES / "demo")[0]
    evidence = gather(demo, targets.resolve(demo, incident), incident)
    assert evidence.gitops, "the demo's Application deploys it"

    chosen = repository.choose(repos=install.repos, evidence=evidence)

    assert chosen.name == "platform"
    assert not install.checkout("platform").exists() and not install.checkout("boutique").exists()


def test_the_follower_fetches_only_repositories_with_rows_to_follow(tmp_path: Path, make: Make,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    now = time.time()
    install = make({"platform": plain(GUESTBOOK, tmp_path / "platform.git"),
                             "boutique": boutique(tmp_path / "boutique.git", now)}, now)
    assert install.pipeline().handle(install.incident).outcome == "pr_opened"
    # The search synced both checkouts; both remotes move on since.
    before = {name: _remote_main(install.checkout(name)) for name in install.bares}
    heads = {name: _commit_to(bare, tmp_path / f"human-{name}") for name, bare in install.bares.items()}
    assert all(before[n] != heads[n] for n in heads)

    with caplog.at_level(logging.INFO, logger="app.wiring"):
        followed = wiring.build_outcomes(Settings(data_dir=tmp_path / "data"), install.ledger,
                                         pipeline=install.pipeline())()

    assert [(r.repo, r.pr_number, r.state) for r in followed] == [("boutique", 1, "open")]
    assert _remote_main(install.checkout("boutique")) == heads["boutique"], "fetched: a row to follow"
    assert _remote_main(install.checkout("platform")) == before["platform"], "not fetched: nothing to follow"
    [line] = [r for r in caplog.records if r.getMessage() == "outcomes pass"]
    assert (line.fetched, line.not_fetched, line.rows) == (["boutique"], ["platform"], 1)  # type: ignore[attr-defined]


def _evidence(install: Install) -> Evidence:
    return gather(install.cluster, targets.resolve(install.cluster, install.incident), install.incident)


def _remote_main(checkout: Path) -> str:
    return _git(checkout, "rev-parse", "refs/remotes/origin/main")


def _commit_to(bare: Path, clone: Path) -> str:
    """A teammate's commit on main (a README line), pushed: the remote's new head."""
    _git(bare.parent, "clone", "-q", str(bare), str(clone))
    (clone / "NOTES.md").write_text("Owned by the platform team.\n")
    _git(clone, "add", "NOTES.md")
    _git(clone, "commit", "-q", "-m", "Add notes")
    _git(clone, "push", "-q", "origin", "main")
    return _git(clone, "rev-parse", "HEAD")
