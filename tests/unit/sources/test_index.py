"""The repository index over real git repositories: lookups, incremental updates, persistence, bad input.

A realistic small GitOps repo (multi-document files, a ``kind: List`` export, the same name in two
namespaces, cluster-scoped objects without a namespace, Kustomize and Helm directories, a Helm template,
broken YAML, an oversized file, a symlink) is pushed to a bare remote and cloned by the real GitWorkspace.
Every answer from the index must equal the answer of parsing the texts; an index updated through real
commits must equal a cold rebuild; a damaged persisted index must be rebuilt, never trusted.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from app.adapters.workspace import GitWorkspace
from app.models.incident import WorkloadRef
from app.sources import index as repo_index
from app.sources import manifests

AUTHOR = "gitops-autofix[bot] <bot@example.com>"

PAYMENTS = """# payments API: owned by #team-payments
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments-api
  namespace: payments
  labels:
    app.kubernetes.io/name: payments-api
spec:
  replicas: 3
  selector:
    matchLabels:
      app.kubernetes.io/name: payments-api
  template:
    metadata:
      labels:
        app.kubernetes.io/name: payments-api
    spec:
      containers:
        - name: api
          image: ghcr.io/acme/payments-api:2.14.1
          resources:
            limits:
              memory: "512Mi"
---
apiVersion: v1
kind: Service
metadata:
  name: payments-api
  namespace: payments
spec:
  selector:
    app.kubernetes.io/name: payments-api
  ports:
    - name: http
      port: 8080
      targetPort: http
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: payments-api
  namespace: payments
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: payments-api
  minReplicas: 3
  maxReplicas: 12
"""


def api(namespace: str, tag: str) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: {namespace}
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: api
          image: ghcr.io/acme/{namespace}-api:{tag}
"""


LEGACY_LIST = """# exported with kubectl get deploy,svc -o yaml before the migration
apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: ledger-worker
      namespace: ledger
    spec:
      replicas: 1
  - apiVersion: v1
    kind: Service
    metadata:
      name: ledger-worker
      namespace: ledger
    spec:
      ports:
        - port: 9000
"""

CLUSTER_SCOPED = """apiVersion: v1
kind: Namespace
metadata:
  name: payments
  labels:
    team: payments
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: payments-reader
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "list"]
"""

WEB_BASE = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  template:
    spec:
      containers:
        - name: web
          image: ghcr.io/acme/web:1.0.0
"""

HELM_TEMPLATE = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "web.fullname" . }}
  labels:
    {{- include "web.labels" . | nindent 4 }}
spec:
  replicas: {{ .Values.replicaCount }}
"""

REPO = {
    "apps/payments/all.yaml": PAYMENTS,
    "apps/search/api.yaml": api("search", "3.2.0"),
    "apps/billing/api.yaml": api("billing", "1.9.4"),
    "legacy/ledger.yaml": LEGACY_LIST,
    "platform/cluster.yaml": CLUSTER_SCOPED,
    "kustomize/web/base/deployment.yaml": WEB_BASE,
    "kustomize/web/base/kustomization.yaml": "resources:\n  - deployment.yaml\n",
    "kustomize/web/overlays/prod/kustomization.yaml": (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: web\nresources:\n"
        "  - ../../base\nimages:\n  - name: ghcr.io/acme/web\n    newTag: 1.0.1\n"),
    "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.3.0\n",
    "charts/web/values.yaml": "replicaCount: 1\nimage:\n  tag: \"1.0.0\"\n",
    "charts/web/values-prod.yaml": "replicaCount: 3\n",
    "charts/web/templates/deployment.yaml": HELM_TEMPLATE,
    "apps/scratch/broken.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\ndata:\n\tk: v\n",
    "platform/dashboards.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dashboards\ndata:\n"
                                "  all.json: |\n" + "    {\"panel\": \"rate(http_requests_total[5m])\"}\n" * 24000,
    "README.md": "# acme gitops\n",
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    out = subprocess.run(["git", "-c", "user.name=Human", "-c", "user.email=human@example.com", *args],
                         cwd=cwd, env=env, capture_output=True, check=True, timeout=30)
    return out.stdout.decode()


def push(seed: Path, message: str) -> str:
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", message)
    git(seed, "push", "-q", "origin", "HEAD:refs/heads/main")
    return git(seed, "rev-parse", "HEAD").strip()


def make_repo(root: Path) -> Path:
    """The bare remote ``root/gitops.git`` seeded with REPO; returns the seed clone to commit more from."""
    bare = root / "gitops.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    work = root / "seed"
    git(root, "clone", "-q", str(bare), str(work))
    for path, text in REPO.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    os.symlink("../search/api.yaml", work / "apps/payments/linked.yaml")  # never followed
    push(work, "seed")
    return work


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    return make_repo(tmp_path)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GitWorkspace]:
    """One repo and one synced workspace for the tests that only read."""
    root = tmp_path_factory.mktemp("index")
    seed = make_repo(root)
    ws = workspace(root)
    ws.sync()
    return seed, ws


def workspace(tmp_path: Path) -> GitWorkspace:
    """A new workspace object each time: what a restarted process sees (same data dir)."""
    return GitWorkspace(str(tmp_path / "gitops.git"), base="main", checkout=tmp_path / "data" / "repo",
                        author=AUTHOR)


def texts_at(seed: Path) -> dict[str, str]:
    """Every tracked YAML text, read by git (the slow path the index replaces)."""
    paths = [p for p in git(seed, "ls-files", "-s").splitlines() if not p.startswith("120000")]
    names = [p.split("\t", 1)[1] for p in paths]
    return {n: (seed / n).read_text() for n in names
            if n.endswith((".yaml", ".yml")) and (seed / n).stat().st_size <= repo_index.MAX_BYTES}


def hit(path: str, doc: int = 0, prefix: tuple[str | int, ...] = ()) -> repo_index.Hit:
    return repo_index.Hit(path, doc, prefix)


@pytest.mark.parametrize(("kind", "namespace", "name", "api_version", "default_ns", "expected"), [
    pytest.param("Deployment", "payments", "payments-api", "apps/v1", None,
                 [hit("apps/payments/all.yaml", 0)], id="multidoc-first"),
    pytest.param("HorizontalPodAutoscaler", "payments", "payments-api", "autoscaling/v2", None,
                 [hit("apps/payments/all.yaml", 2)], id="multidoc-third-other-group"),
    pytest.param("Service", "payments", "payments-api", "v1", None,
                 [hit("apps/payments/all.yaml", 1)], id="core-group"),
    pytest.param("Deployment", "search", "api", "apps/v1", None,
                 [hit("apps/search/api.yaml")], id="same-name-namespace-search"),
    pytest.param("Deployment", "billing", "api", "apps/v1", None,
                 [hit("apps/billing/api.yaml")], id="same-name-namespace-billing"),
    pytest.param("Deployment", "shop", "api", "apps/v1", None, [], id="same-name-other-namespace"),
    pytest.param("Deployment", "ledger", "ledger-worker", "apps/v1", None,
                 [hit("legacy/ledger.yaml", 0, ("items", 0))], id="list-item"),
    pytest.param("Service", "ledger", "ledger-worker", "v1", None,
                 [hit("legacy/ledger.yaml", 0, ("items", 1))], id="list-second-item"),
    pytest.param("Namespace", "", "payments", "v1", None, [hit("platform/cluster.yaml", 0)],
                 id="cluster-scoped-namespace"),
    pytest.param("ClusterRole", "", "payments-reader", "rbac.authorization.k8s.io/v1", None,
                 [hit("platform/cluster.yaml", 1)], id="cluster-scoped-group"),
    pytest.param("Deployment", "web", "web", "apps/v1", None, [hit("kustomize/web/base/deployment.yaml")],
                 id="namespace-less-any-namespace"),
    pytest.param("Deployment", "web", "web", "apps/v1", "web", [hit("kustomize/web/base/deployment.yaml")],
                 id="namespace-less-destination-matches"),
    pytest.param("Deployment", "web", "web", "apps/v1", "other", [], id="namespace-less-destination-differs"),
    pytest.param("Deployment", "payments", "payments-api", "extensions/v1beta1", None, [],
                 id="group-must-match"),
    pytest.param("ConfigMap", "", "oops", "v1", None, [], id="broken-yaml-skipped"),
    pytest.param("ConfigMap", "default", "dashboards", "v1", None, [], id="oversized-skipped"),
])
def test_lookup(shared: tuple[Path, GitWorkspace], kind: str, namespace: str, name: str, api_version: str,
                default_ns: str | None, expected: list[repo_index.Hit]) -> None:
    seed, ws = shared
    ref = WorkloadRef(kind=kind, namespace=namespace, name=name)
    assert manifests.hits(ws, ref, api_version=api_version, default_namespace=default_ns) == expected
    # The same question over the file texts (the old path) gives the same answer.
    assert manifests.hits(texts_at(seed), ref, api_version=api_version, default_namespace=default_ns) == expected
    # find() keeps its old contract: whole documents only, as (path, document index).
    assert manifests.find(ws, ref, api_version=api_version, default_namespace=default_ns) == \
        [(h.path, h.document_index) for h in expected if not h.prefix]


def test_index_agrees_with_parsing_every_text(shared: tuple[Path, GitWorkspace]) -> None:
    seed, ws = shared
    index = ws.index
    texts = texts_at(seed)
    assert len(index.by_key) >= 10
    for group, kind, namespace, name in index.by_key:
        ref = WorkloadRef(kind=kind, namespace=namespace or "default", name=name)
        api_version = f"{group}/v1" if group else "v1"
        assert manifests.hits(ws, ref, api_version=api_version, default_namespace=None) == \
            manifests.hits(texts, ref, api_version=api_version, default_namespace=None), (kind, name)
    only = ["apps/billing/api.yaml"]
    ref = WorkloadRef(kind="Deployment", namespace="search", name="api")
    assert manifests.find(ws, ref, api_version="apps/v1", default_namespace=None, paths=only) == []


def test_file_facts(shared: tuple[Path, GitWorkspace]) -> None:
    seed, ws = shared
    index = ws.index
    assert index.commit == git(seed, "rev-parse", "HEAD").strip()
    assert index.dirs_with("kustomization") == ["kustomize/web/base", "kustomize/web/overlays/prod"]
    assert index.dirs_with("chart") == ["charts/web"]
    assert index.dirs_with("values") == ["charts/web"]
    roles = {path: facts.role for path, facts in index.files.items()}
    assert roles["apps/scratch/broken.yaml"] == "broken"
    assert roles["charts/web/templates/deployment.yaml"] == "template"
    assert roles["platform/dashboards.yaml"] == "too_large"
    assert roles["README.md"] == "other"
    assert "apps/payments/linked.yaml" not in roles, "a symlink is never read through"
    counts = index.counts()
    assert (counts["broken"], counts["template"], counts["too_large"]) == (1, 1, 1)
    assert counts["objects"] == 10  # 3 + 1 + 1 in apps, 2 List items, 2 cluster-scoped, 1 base
    assert index.paths(under="charts/web") == ["charts/web/Chart.yaml", "charts/web/templates/deployment.yaml",
                                                "charts/web/values-prod.yaml", "charts/web/values.yaml"]
    assert ws.index is index, "a second question at the same commit is answered from memory"


def test_incremental_update_through_commits_equals_rebuild(seed: Path, tmp_path: Path) -> None:
    first = workspace(tmp_path)
    first.sync()
    assert first.index.how == "built"
    # modify, add, delete and rename in one commit, then more in a second one
    (seed / "apps/search/api.yaml").write_text(api("search", "3.3.0").replace("name: api", "name: api-v2"))
    (seed / "apps/shop/cart.yaml").parent.mkdir(parents=True)
    (seed / "apps/shop/cart.yaml").write_text(api("shop", "0.1.0").replace("name: api", "name: cart"))
    git(seed, "rm", "-q", "apps/billing/api.yaml")
    git(seed, "mv", "legacy/ledger.yaml", "legacy/ledger-export.yaml")
    push(seed, "touch four files")
    (seed / "apps/scratch/broken.yaml").write_text(api("scratch", "0.0.1"))  # fixed YAML now parses
    (seed / "README.md").write_text("# acme gitops\n\nNow with a cart.\n")
    head = push(seed, "fix the broken file")

    restarted = workspace(tmp_path)  # a new process: loads the persisted index, then reads only the diff
    restarted.sync()
    updated = restarted.index
    assert updated.how == "updated" and updated.commit == head
    rebuilt = repo_index.build(restarted, head)
    assert repo_index.equal(updated, rebuilt)

    def where(kind: str, ns: str, name: str) -> list[repo_index.Hit]:
        ref = WorkloadRef(kind=kind, namespace=ns, name=name)
        return manifests.hits(restarted, ref, api_version="apps/v1", default_namespace=None)

    assert where("Deployment", "search", "api") == []
    assert where("Deployment", "search", "api-v2") == [hit("apps/search/api.yaml")]
    assert where("Deployment", "shop", "cart") == [hit("apps/shop/cart.yaml")]
    assert where("Deployment", "billing", "api") == []
    assert where("Deployment", "ledger", "ledger-worker") == [hit("legacy/ledger-export.yaml", 0, ("items", 0))]
    assert where("Deployment", "scratch", "api") == [hit("apps/scratch/broken.yaml")]
    assert updated.counts().get("broken", 0) == 0
    assert repo_index.loads(index_file(tmp_path).read_bytes()).commit == head, "the update was persisted"


def index_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "repo.index.json"


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _wrong_shape(data: bytes) -> bytes:
    raw = json.loads(data)
    raw["files"]["apps/search/api.yaml"] = ["yaml", "abc", [["apps", "Deployment", "search"]]]
    return json.dumps(raw).encode()


def _older_format(data: bytes) -> bytes:
    raw = json.loads(data)
    raw["format"] = 0
    return json.dumps(raw).encode()


def _unknown_commit(data: bytes) -> bytes:
    raw = json.loads(data)
    raw["commit"] = "0123456789abcdef0123456789abcdef01234567"  # e.g. garbage-collected since
    return json.dumps(raw).encode()


@pytest.mark.parametrize("damage", [
    pytest.param(_truncate, id="truncated"),
    pytest.param(lambda data: b"\x00\xff" * 64, id="garbage"),
    pytest.param(lambda data: b"", id="empty"),
    pytest.param(_wrong_shape, id="wrong-shape"),
    pytest.param(_older_format, id="older-format"),
    pytest.param(_unknown_commit, id="unknown-commit"),
])
def test_damaged_persisted_index_is_rebuilt(seed: Path, tmp_path: Path, damage: object) -> None:
    ws = workspace(tmp_path)
    ws.sync()
    good = ws.index
    assert callable(damage)
    index_file(tmp_path).write_bytes(damage(index_file(tmp_path).read_bytes()))

    restarted = workspace(tmp_path)
    restarted.sync()
    again = restarted.index
    assert again.how == "built"
    assert repo_index.equal(again, good)
    assert repo_index.equal(repo_index.loads(index_file(tmp_path).read_bytes()), good), "rewritten whole"
    assert not list(index_file(tmp_path).parent.glob("*.tmp")), "no temporary file left behind"


def test_process_pool_gives_the_same_index(shared: tuple[Path, GitWorkspace],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _, ws = shared
    commit = ws.head()
    monkeypatch.setattr(repo_index, "POOL_MIN_FILES", 1)
    monkeypatch.setattr(repo_index, "BATCH", 3)
    assert repo_index.equal(repo_index.build(ws, commit, workers=2), repo_index.build(ws, commit, workers=1))


def test_repo_view_without_index_reads_the_files(shared: tuple[Path, GitWorkspace]) -> None:
    """Views that carry no index (another RepoView implementation) still get the right answer."""
    _, ws = shared

    class Plain:
        def list_files(self, *, suffixes: Sequence[str] = (".yaml", ".yml")) -> list[str]:
            return [p for p in ws.list_files(suffixes=suffixes) if p != "apps/payments/linked.yaml"]

        def read_text(self, path: str) -> str:
            return ws.read_text(path)

    ref = WorkloadRef(kind="Deployment", namespace="ledger", name="ledger-worker")
    assert manifests.hits(Plain(), ref, api_version="apps/v1", default_namespace=None) == \
        [hit("legacy/ledger.yaml", 0, ("items", 0))]
