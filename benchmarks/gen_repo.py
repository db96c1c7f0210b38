"""Generate a realistic GitOps repository of N Kubernetes manifests (deterministic for a seed).

    python benchmarks/gen_repo.py DIR [--manifests 20000] [--seed 7]

The mix follows what platform teams really keep in one repo: plain per-app directories, multi-document
files, Kustomize bases and overlays (with strategic-merge patches), Helm charts (Chart.yaml, values files,
Go-templated templates that are not YAML), Argo CD Applications, Flux Kustomizations and HelmReleases,
legacy ``kind: List`` files, cluster-scoped objects without a namespace, CI workflows and a few broken or
oversized files. ``manifests`` counts Kubernetes objects (documents and List items), not files.
The result is a git repository with one commit on ``main``.
"""

from __future__ import annotations

import argparse
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

TEAMS = ["payments", "search", "checkout", "identity", "catalog", "ledger", "messaging", "media", "growth",
         "risk", "platform", "data", "ml", "support", "billing", "shipping"]
WORDS = ["api", "worker", "gateway", "web", "cron", "indexer", "router", "cache", "sync", "auth", "export",
         "import", "notifier", "scheduler", "reporter", "ingest", "proxy", "admin", "events", "stream",
         "ranker", "pricing", "orders", "users", "sessions", "feeds", "images", "mailer", "audit", "quota"]
ENVS = ["staging", "production"]
LAYOUTS = [("plain", 35), ("multidoc", 20), ("kustomize", 20), ("helm", 15), ("list", 5), ("cluster", 5)]


@dataclass
class Repo:
    """Files to write and the number of Kubernetes objects they hold."""

    files: dict[str, str] = field(default_factory=dict)
    objects: int = 0

    def add(self, path: str, text: str, objects: int = 0) -> None:
        self.files[path] = text
        self.objects += objects


def deployment(name: str, ns: str | None, rnd: random.Random, *, tag: str) -> str:
    mem = rnd.choice([128, 256, 384, 512, 768, 1024])
    ns_line = f"  namespace: {ns}\n" if ns else ""
    return f"""# {name}: owned by #team-{ns or 'platform'}
# Resource changes need a load test first (see docs/runbooks/{name}.md)
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
{ns_line}  labels:
    app.kubernetes.io/name: {name}
    app.kubernetes.io/part-of: {ns or 'platform'}
spec:
  replicas: {rnd.randint(1, 6)}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app.kubernetes.io/name: {name}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {name}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "9090"
    spec:
      serviceAccountName: {name}
      containers:
        - name: {name}
          image: ghcr.io/acme/{name}:{tag}
          ports:
            - name: http
              containerPort: 8080
            - name: metrics
              containerPort: 9090
          env:
            - name: LOG_LEVEL
              value: info
            - name: OTEL_EXPORTER_OTLP_ENDPOINT
              value: http://otel-collector.observability.svc:4317
          resources:
            requests:
              cpu: {rnd.choice(['50m', '100m', '250m', '500m'])}
              memory: "{mem // 2}Mi"
            limits:
              memory: "{mem}Mi"
          readinessProbe:
            httpGet:
              path: /ready
              port: http
            periodSeconds: 5
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            initialDelaySeconds: 15
            periodSeconds: 10
"""


def service(name: str, ns: str | None) -> str:
    ns_line = f"  namespace: {ns}\n" if ns else ""
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
{ns_line}  labels:
    app.kubernetes.io/name: {name}
spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/name: {name}
  ports:
    - name: http
      port: 8080
      targetPort: http
"""


def configmap(name: str, ns: str | None, rnd: random.Random) -> str:
    ns_line = f"  namespace: {ns}\n" if ns else ""
    return f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}-config
{ns_line}data:
  FEATURE_FLAGS: "checkout-v2,{rnd.choice(['fast-path', 'new-ranker', 'dark-mode'])}"
  CACHE_TTL_SECONDS: "{rnd.choice([30, 60, 300])}"
  application.yaml: |
    server:
      port: 8080
    upstream:
      timeout: 2s
"""


def hpa(name: str, ns: str) -> str:
    return f"""apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {name}
  namespace: {ns}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {name}
  minReplicas: 2
  maxReplicas: 10
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 70
"""


def application(app: str, ns: str, path: str, *, helm: bool = False) -> str:
    helm_block = "\n    helm:\n      valueFiles:\n        - values-production.yaml" if helm else ""
    return f"""apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {app}
  namespace: argocd
  finalizers:
    - resources-finalizer.argocd.argoproj.io
spec:
  project: {ns}
  source:
    repoURL: https://github.com/acme/gitops.git
    targetRevision: main
    path: {path}{helm_block}
  destination:
    server: https://kubernetes.default.svc
    namespace: {ns}
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
"""


def unit(repo: Repo, layout: str, name: str, ns: str, rnd: random.Random) -> None:
    tag = f"{rnd.randint(1, 4)}.{rnd.randint(0, 30)}.{rnd.randint(0, 9)}"
    base = f"apps/{ns}/{name}"
    if layout == "plain":
        repo.add(f"{base}/deployment.yaml", deployment(name, ns, rnd, tag=tag), 1)
        repo.add(f"{base}/service.yaml", service(name, ns), 1)
        repo.add(f"{base}/configmap.yaml", configmap(name, ns, rnd), 1)
        repo.add(f"argocd/applications/{ns}-{name}.yaml", application(f"{ns}-{name}", ns, base), 1)
    elif layout == "multidoc":
        docs = [deployment(name, ns, rnd, tag=tag), service(name, ns), hpa(name, ns), configmap(name, ns, rnd)]
        repo.add(f"{base}/all.yaml", "---\n" + "---\n".join(docs), 4)
        repo.add(f"argocd/applications/{ns}-{name}.yaml", application(f"{ns}-{name}", ns, base), 1)
    elif layout == "kustomize":
        kbase = f"kustomize/{ns}/{name}"
        repo.add(f"{kbase}/base/kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1beta1\n"
                 "kind: Kustomization\nresources:\n  - deployment.yaml\n  - service.yaml\n")
        repo.add(f"{kbase}/base/deployment.yaml", deployment(name, None, rnd, tag=tag), 1)
        repo.add(f"{kbase}/base/service.yaml", service(name, None), 1)
        for env in ENVS:
            repo.add(f"{kbase}/overlays/{env}/kustomization.yaml", f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: {ns}
resources:
  - ../../base
patches:
  - path: patch-replicas.yaml
images:
  - name: ghcr.io/acme/{name}
    newTag: {tag}
""")
            repo.add(f"{kbase}/overlays/{env}/patch-replicas.yaml", f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {3 if env == 'production' else 1}
""", 1)
        repo.add(f"clusters/production/apps/{ns}-{name}.yaml", f"""apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {ns}-{name}
  namespace: flux-system
spec:
  interval: 10m
  path: ./{kbase}/overlays/production
  prune: true
  sourceRef:
    kind: GitRepository
    name: gitops
  targetNamespace: {ns}
""", 1)
    elif layout == "helm":
        chart = f"charts/{ns}/{name}"
        repo.add(f"{chart}/Chart.yaml", f"apiVersion: v2\nname: {name}\nversion: 0.{rnd.randint(1, 20)}.0\n"
                 f"appVersion: \"{tag}\"\n")
        repo.add(f"{chart}/values.yaml", f"""replicaCount: 1
image:
  repository: ghcr.io/acme/{name}
  tag: "{tag}"
resources:
  limits:
    memory: 256Mi
""")
        repo.add(f"{chart}/values-production.yaml", "replicaCount: 3\nresources:\n  limits:\n    memory: 512Mi\n")
        repo.add(f"{chart}/templates/deployment.yaml", """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "chart.fullname" . }}
  labels:
    {{- include "chart.labels" . | nindent 4 }}
spec:
  replicas: {{ .Values.replicaCount }}
  template:
    spec:
      containers:
        - name: {{ .Chart.Name }}
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
""")
        repo.add(f"{chart}/templates/_helpers.tpl", '{{- define "chart.fullname" -}}{{ .Release.Name }}{{- end }}\n')
        repo.add(f"clusters/production/releases/{ns}-{name}.yaml", f"""apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: {name}
  namespace: {ns}
spec:
  interval: 10m
  chart:
    spec:
      chart: ./{chart}
      sourceRef:
        kind: GitRepository
        name: gitops
        namespace: flux-system
  values:
    replicaCount: 2
""", 1)
    elif layout == "list":
        items = [deployment(name, ns, rnd, tag=tag), service(name, ns), configmap(name, ns, rnd)]
        body = "".join("  - " + _indent(_strip_comments(doc), 4).lstrip() for doc in items)
        repo.add(f"legacy/{ns}/{name}.yaml", f"# exported from the old cluster\napiVersion: v1\nkind: List\n"
                 f"items:\n{body}", 3)
    else:  # cluster-scoped objects: no namespace in the manifest
        repo.add(f"platform/rbac/{ns}-{name}.yaml", f"""apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {ns}-{name}-reader
rules:
  - apiGroups: [""]
    resources: ["configmaps", "services"]
    verbs: ["get", "list", "watch"]
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: {ns}-{name}
value: {rnd.randint(1000, 100000)}
globalDefault: false
""", 2)


def _strip_comments(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))


def _indent(text: str, n: int) -> str:
    return "".join(" " * n + line if line.strip() else line for line in text.splitlines(keepends=True))


def extras(repo: Repo, rnd: random.Random) -> None:
    """Files every real repo has: namespaces, CI, docs, a few broken and one oversized file."""
    for ns in TEAMS:
        repo.add(f"platform/namespaces/{ns}.yaml", f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
                 f"  labels:\n    team: {ns}\n", 1)
    repo.add(".github/workflows/validate.yaml", "name: validate\non:\n  pull_request:\njobs:\n  kubeconform:\n"
             "    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n")
    repo.add("README.md", "# acme gitops\n\nEverything that runs in our clusters.\n")
    repo.add(".yamllint.yml", "extends: default\nrules:\n  line-length: disable\n")
    for i in range(5):
        repo.add(f"apps/scratch/broken-{i}.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n"
                 "data:\n\tkey: value\n")
    blob = "".join(f'    "panel{i}": {{"title": "p{i}", "expr": "rate(http_requests_total[5m])"}},\n'
                   for i in range(16000))
    repo.add("platform/dashboards/all-dashboards.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
             "  name: grafana-dashboards\n  namespace: observability\ndata:\n  all.json: |\n    {\n" + blob
             + "    }\n")
    rnd.random()


def generate(manifests: int, seed: int) -> Repo:
    rnd = random.Random(seed)
    repo = Repo()
    extras(repo, rnd)
    layouts = [name for name, weight in LAYOUTS for _ in range(weight)]
    taken: set[tuple[str, str]] = set()
    while repo.objects < manifests:
        ns = rnd.choice(TEAMS)
        name = f"{rnd.choice(WORDS)}-{rnd.choice(WORDS)}"
        if (ns, name) in taken:  # the same name in another namespace is fine (and realistic)
            name = f"{name}-{len(taken)}"
        taken.add((ns, name))
        unit(repo, rnd.choice(layouts), name, ns, rnd)
    return repo


def write(repo: Repo, root: Path) -> None:
    for path, text in repo.files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def git(*argv: str, cwd: Path) -> str:
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin",
           "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
           "GIT_AUTHOR_DATE": "2026-11-23T15:20:00Z", "GIT_COMMITTER_DATE": "2026-11-23T15:20:00Z"}
    return subprocess.run(["git", *argv], cwd=cwd, env=env, check=True, capture_output=True, text=True,
                          timeout=600).stdout


def create(root: Path, *, manifests: int = 20000, seed: int = 7) -> Repo:
    """Write the repository under ``root`` and commit it on ``main``."""
    repo = generate(manifests, seed)
    root.mkdir(parents=True, exist_ok=True)
    write(repo, root)
    git("init", "--quiet", "-b", "main", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "--quiet", "-m", f"{manifests} manifests (seed {seed})", cwd=root)
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--manifests", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    repo = create(args.dir, manifests=args.manifests, seed=args.seed)
    print(f"{len(repo.files)} files, {repo.objects} Kubernetes objects in {args.dir}")


if __name__ == "__main__":
    main()
