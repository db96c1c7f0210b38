"""Several clusters per install: ``clusters.yaml`` in the policy directory, one reader per cluster, and the
alert's cluster label choosing which cluster (and so which pipeline) handles it.

Without the file the install has one cluster (KUBECONFIG or the pod's service account) and nothing here is
used. With it::

    label: cluster            # the alert label naming the cluster (kube-prometheus-stack: an external label)
    hub: hub                  # the cluster whose Argo CD deploys to the others (null: each cluster's own)
    default: null             # the cluster of an alert without the label (null: such alerts are skipped)
    clusters:
      - name: hub             # as the alert's label says it
        kubeconfig: /var/run/autofix/clusters/hub/kubeconfig   # a mounted file (relative: to this file)
        context: admin@hub    # optional: a context of that file (or of KUBECONFIG)
      - name: prod-eu
        kubeconfig: /var/run/autofix/clusters/prod-eu/kubeconfig
        argocd: {server: "https://prod-eu.example:6443", name: prod-eu}  # as the hub's Argo CD knows it

Readers are built on first use (``ClusterSet.reader``) and kept: `autofix doctor` reports a cluster whose
kubeconfig cannot be loaded as its own failed row, the service builds them all at start (``check``).
With a hub, a cluster's view (``ClusterSet.view``) reads the workload, pods, events, logs and Flux objects
from the cluster itself and Argo CD Applications from the hub, keeping only those whose
``spec.destination`` (``server`` or ``name``) is that cluster.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.errors import ConfigError
from app.models.incident import Incident
from app.models.outcome import Outcome, StageRecord
from app.policies import _explain_at, _yaml_problem  # the policy files' messages: file:line: key: reason
from app.ports import ClusterReader, Handler, K8sObject
from app.stages import End

log = logging.getLogger(__name__)

FILE_NAME = "clusters.yaml"
FILE_NAMES = (FILE_NAME, "clusters.yml")
# How Argo CD names the cluster it runs in (its default destination): server or name.
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
IN_CLUSTER_NAME = "in-cluster"
# Kinds an Argo CD hub holds for its spokes: read from the hub, filtered by destination.
HUB_KINDS = frozenset({"Application"})
CLUSTER_NAME = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$"
LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"  # a Prometheus label name


class ArgoDestination(BaseModel):
    """How the hub's Argo CD names a cluster in an Application's ``spec.destination``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1)


class ClusterEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=CLUSTER_NAME)
    kubeconfig: Path | None = None  # None: KUBECONFIG, else the pod's service account
    context: str | None = Field(default=None, min_length=1)  # None: the file's current-context
    argocd: ArgoDestination | None = None  # None: destination.name equal to ``name``


class ClustersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(default="cluster", pattern=LABEL_NAME)
    hub: str | None = None
    default: str | None = None
    clusters: list[ClusterEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_known(self) -> ClustersFile:
        names = [c.name for c in self.clusters]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"cluster names must be unique: {', '.join(twice)} more than once")
        for field in ("hub", "default"):
            value = getattr(self, field)
            if value is not None and value not in names:
                raise ValueError(f"{field}: {value!r} is not one of the clusters ({', '.join(names)})")
        return self

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.clusters]

    def entry(self, name: str) -> ClusterEntry:
        return next(c for c in self.clusters if c.name == name)


def load(directory: Path) -> ClustersFile | None:
    """``directory/clusters.yaml`` validated, or None when there is none (one cluster, as without it).

    ConfigError names the file, the line and the field; a kubeconfig that is missing names its entry."""
    found = [directory / name for name in FILE_NAMES if (directory / name).is_file()]
    if not found:
        return None
    if len(found) > 1:
        raise ConfigError(f"{directory}: both {FILE_NAMES[0]} and {FILE_NAMES[1]}: keep one")
    path = found[0]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the clusters file: {err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_problem(path, err)) from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping with a list of clusters (keys: label, hub, default, clusters)")
    try:
        config = ClustersFile.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_explain_at(path, text, err)) from err
    resolved = []
    for index, entry in enumerate(config.clusters):
        if entry.kubeconfig is not None:
            file = entry.kubeconfig if entry.kubeconfig.is_absolute() else path.parent / entry.kubeconfig
            if not file.is_file():
                raise ConfigError(f"{path}: clusters[{index}] ({entry.name}): kubeconfig {file} is not a file "
                                  "(mount the cluster's kubeconfig Secret there)")
            entry = entry.model_copy(update={"kubeconfig": file})
        resolved.append(entry)
    return config.model_copy(update={"clusters": resolved})


def destination_of(app: K8sObject) -> tuple[str, str]:
    """An Application's ``spec.destination`` as (server, name), the server without a trailing slash."""
    dest = (app.get("spec") or {}).get("destination") or {}
    return str(dest.get("server") or "").rstrip("/"), str(dest.get("name") or "")


class Destination:
    """Which Applications of the hub deploy to one cluster."""

    def __init__(self, *, servers: set[str], names: set[str]) -> None:
        self.servers = {s.rstrip("/") for s in servers if s}
        self.names = {n for n in names if n}

    @classmethod
    def of(cls, entry: ClusterEntry, *, hub: bool) -> Destination:
        argo = entry.argocd or ArgoDestination(name=entry.name)
        servers, names = {argo.server or ""}, {argo.name or ""}
        if hub:  # the hub's own Argo CD calls its cluster in-cluster, whatever else it is called
            servers.add(IN_CLUSTER_SERVER)
            names.add(IN_CLUSTER_NAME)
        return cls(servers=servers, names=names)

    def matches(self, app: K8sObject) -> bool:
        server, name = destination_of(app)
        return (bool(server) and server in self.servers) or (bool(name) and name in self.names)


class SpokeView:
    """A ClusterReader for one cluster of a hub: Applications from the hub (deploying here), the rest from here."""

    def __init__(self, *, spoke: Callable[[], ClusterReader], hub: Callable[[], ClusterReader],
                 destination: Destination) -> None:
        self._spoke = spoke
        self._hub = hub
        self.destination = destination

    def get(self, kind: str, namespace: str | None, name: str) -> K8sObject | None:
        if kind not in HUB_KINDS:
            return self._spoke().get(kind, namespace, name)
        found = self._hub().get(kind, namespace, name)
        return found if found is not None and self.destination.matches(found) else None

    def list(self, kind: str, namespace: str | None, *, label_selector: str | None = None) -> list[K8sObject]:
        if kind not in HUB_KINDS:
            return self._spoke().list(kind, namespace, label_selector=label_selector)
        return [a for a in self._hub().list(kind, namespace, label_selector=label_selector)
                if self.destination.matches(a)]

    def logs(self, namespace: str, pod: str, container: str, *, previous: bool, tail_lines: int) -> str:
        return self._spoke().logs(namespace, pod, container, previous=previous, tail_lines=tail_lines)


class FleetView:
    """Every cluster as one read-only view, for following fixes whose cluster the ledger does not record (rows
    made before it did): ``get`` answers from the first cluster that has the object, ``list`` concatenates (hub
    first). ``of`` is one cluster's view, for a row that names its cluster (app/outcomes.reader_of)."""

    def __init__(self, readers: list[Callable[[], ClusterReader]],
                 views: Callable[[str], ClusterReader | None] | None = None) -> None:
        self._readers = readers
        self._views = views

    def of(self, name: str) -> ClusterReader | None:
        """What the pipeline of cluster ``name`` reads (ClusterSet.view); None for a cluster not configured."""
        return self._views(name) if self._views is not None else None

    def get(self, kind: str, namespace: str | None, name: str) -> K8sObject | None:
        for reader in self._readers:
            found = reader().get(kind, namespace, name)
            if found is not None:
                return found
        return None

    def list(self, kind: str, namespace: str | None, *, label_selector: str | None = None) -> list[K8sObject]:
        return [o for reader in self._readers for o in reader().list(kind, namespace, label_selector=label_selector)]

    def logs(self, namespace: str, pod: str, container: str, *, previous: bool, tail_lines: int) -> str:
        for reader in self._readers:
            text = reader().logs(namespace, pod, container, previous=previous, tail_lines=tail_lines)
            if text:
                return text
        return ""


ReaderFactory = Callable[[ClusterEntry, str], ClusterReader]  # (entry, where it is configured) -> reader


def kube_reader(entry: ClusterEntry, where: str, *, default_kubeconfig: str | None = None) -> ClusterReader:
    """The Kubernetes API of one entry: its kubeconfig file (else KUBECONFIG, else in-cluster) and context."""
    from app.adapters.cluster import KubeCluster

    kubeconfig = str(entry.kubeconfig) if entry.kubeconfig is not None else default_kubeconfig
    return KubeCluster.from_config(kubeconfig, context=entry.context, source=where)


class ClusterSet:
    """The configured clusters' readers, each built on first use and kept (thread-safe)."""

    def __init__(self, config: ClustersFile, *, source: Path, factory: ReaderFactory) -> None:
        self.config = config
        self.source = source
        self._factory = factory
        self._readers: dict[str, ClusterReader] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return self.config.names

    def reader(self, name: str) -> ClusterReader:
        """The cluster's own API (no hub in between); ConfigError names the entry when it cannot be built."""
        with self._lock:
            if name not in self._readers:
                index = self.config.names.index(name)
                self._readers[name] = self._factory(self.config.entry(name), f"{self.source}: clusters[{index}] "
                                                                             f"({name})")
            return self._readers[name]

    def check(self) -> None:
        """Every reader built now (at start): a kubeconfig that cannot be loaded stops the start, naming it."""
        for name in self.names:
            self.reader(name)

    def view(self, name: str) -> ClusterReader:
        """What the pipeline of cluster ``name`` reads: itself, with Argo CD Applications from the hub if any."""
        hub = self.config.hub
        if hub is None:
            return _Lazy(self._later(name))
        return SpokeView(spoke=self._later(name), hub=self._later(hub),
                         destination=Destination.of(self.config.entry(name), hub=name == hub))

    def fleet(self) -> ClusterReader:
        hub = self.config.hub
        order = ([hub] if hub else []) + [n for n in self.names if n != hub]
        return FleetView([self._later(n) for n in order], views=lambda n: self.view(n) if n in self.names else None)

    def _later(self, name: str) -> Callable[[], ClusterReader]:
        return lambda: self.reader(name)


class _Lazy:
    """A reader built on its first call (the ClusterSet keeps it)."""

    def __init__(self, build: Callable[[], ClusterReader]) -> None:
        self._build = build

    def get(self, kind: str, namespace: str | None, name: str) -> K8sObject | None:
        return self._build().get(kind, namespace, name)

    def list(self, kind: str, namespace: str | None, *, label_selector: str | None = None) -> list[K8sObject]:
        return self._build().list(kind, namespace, label_selector=label_selector)

    def logs(self, namespace: str, pod: str, container: str, *, previous: bool, tail_lines: int) -> str:
        return self._build().logs(namespace, pod, container, previous=previous, tail_lines=tail_lines)


class ClusterRouter:
    """The Handler of an install with several clusters: the pipeline of the cluster the alert's label names.

    An alert without the label (and no ``default``) or naming a cluster that is not configured is
    ``skipped``, the reason naming the label or the cluster and the configured ones. ``forge`` and
    ``policy`` are the pipelines' (they share them); ``follower`` reads every cluster (outcomes). ``stop``
    (Pipeline.stop) ends a skipped alert as a pipeline's stage would, with a record key and a run record
    (`autofix explain`, MLflow); without it (handlers that keep no records) the outcome has neither."""

    def __init__(self, pipelines: Mapping[str, Handler], *, label: str, default: str | None = None,
                 follower: Any = None, stop: Callable[[Incident, End], Outcome] | None = None) -> None:
        self.pipelines = dict(pipelines)
        self.label = label
        self.default = default
        self._first = next(iter(self.pipelines.values()))
        self.follower = follower if follower is not None else self._first
        self._stop = stop

    @property
    def forge(self) -> Any:
        return getattr(self._first, "forge", None)

    @property
    def policy(self) -> Any:
        return getattr(self._first, "policy", None)

    def handle(self, incident: Incident) -> Any:
        name = incident.labels.get(self.label) or self.default
        configured = ", ".join(self.pipelines)
        if not name:
            return self._skipped(incident, f"the alert has no {self.label!r} label to choose a cluster by "
                                           f"(configured in {FILE_NAME}: {configured}; set default: to send such "
                                           "alerts to one)", code="no_cluster")
        pipeline = self.pipelines.get(name)
        if pipeline is None:
            return self._skipped(incident, f"cluster {name!r} (label {self.label}) is not configured in {FILE_NAME} "
                                           f"(configured: {configured})", code="unknown_cluster")
        return pipeline.handle(incident)

    def _skipped(self, incident: Incident, reason: str, *, code: str) -> Outcome:
        log.info("alert for no configured cluster", extra={"fingerprint": incident.fingerprint, "code": code})
        end = End(kind="skipped", reason=reason, code=code)
        if self._stop is not None:
            return self._stop(incident, end)
        return Outcome(alertname=incident.alertname, fingerprint=incident.fingerprint, outcome=end.kind,
                       reason=reason, code=code, stages=[StageRecord(stage="intake", seconds=0.0, decision=reason)])
