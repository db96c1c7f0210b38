"""YAML alias bombs are refused before anything walks them, wherever repository or renderer YAML is parsed.

The bomb is the classic "billion laughs" shape (nine aliases per level), ~500 bytes for nine levels; planted
in copies of the real manifests of tests/scenarios and examples. Ordinary YAML, anchors and merge keys
included, parses exactly as PyYAML's safe loader parses it. How fast the refusal is: benchmarks/yaml_bomb_bench.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from app import aliases, deadlines, validation, yaml_rt
from app.adapters import renderers
from app.adapters.snapshot import SnapshotCluster
from app.errors import ConfigError, PermanentError
from app.models.changes import FieldChange, Plan
from app.sources import index as repo_index
from tests.conftest import EXAMPLES, ROOT, SCENARIOS

DEMO_MANIFEST = EXAMPLES / "demo" / "repo" / "apps" / "checkout" / "deployment.yaml"
MANIFEST_PATH = "apps/checkout/deployment.yaml"


def bomb(levels: int, *, indent: str = "  ") -> str:
    """``levels`` nested anchors of nine aliases each: 9**levels leaves once expanded."""
    lines = [f'{indent}l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{indent}l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def planted(levels: int) -> str:
    """The demo's checkout Deployment with a bomb under a key of its own, as a committer could write it."""
    text = DEMO_MANIFEST.read_text()
    return text.replace("spec:\n  replicas", "x-defaults:\n" + bomb(levels) + "spec:\n  replicas", 1)


def repo_yaml_files() -> list[Path]:
    roots = [*SCENARIOS.glob("*/repo"), *EXAMPLES.glob("*/repo"), ROOT / "tests" / "golden"]
    return sorted(p for root in roots for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


# ---------------------------------------------------------------- the measure


@pytest.mark.parametrize("levels", [5, 6, 7, 8, 9])
def test_bomb_in_a_real_manifest_is_refused_naming_the_file(levels: int) -> None:
    text = planted(levels)
    assert len(bomb(9).encode()) < 600, "the bomb stays the size the issue reported"
    with pytest.raises(aliases.YamlTooComplex) as refused:
        yaml_rt.documents(text, source=MANIFEST_PATH)
    assert refused.value.code == "yaml_too_complex"
    assert str(refused.value).startswith(f"{MANIFEST_PATH}: YAML document 0 expands its aliases")


def test_small_expansions_and_ordinary_anchors_are_read() -> None:
    docs = yaml_rt.documents(planted(4), source=MANIFEST_PATH)  # 9**4 leaves: under the floor, cheap to walk
    assert len(docs[0]["x-defaults"]["l3"]) == 9
    text = """\
x-env: &env
  - name: NODE_ENV
    value: production
  - name: PORT
    value: "8080"
x-resources: &resources {requests: {cpu: 250m, memory: 256Mi}, limits: {memory: 512Mi}}
apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout}
spec:
  template:
    spec:
      containers:
        - {name: checkout, image: ghcr.io/acme/checkout:1.4.2, env: *env, resources: *resources}
        - name: sidecar
          image: ghcr.io/acme/sidecar:2.0.0
          env: *env
          resources:
            <<: *resources
            limits: {memory: 128Mi}
"""
    (doc,) = yaml_rt.documents(text, source="apps/checkout/deployment.yaml")
    assert doc == yaml.safe_load(text)
    sidecar = doc["spec"]["template"]["spec"]["containers"][1]
    assert sidecar["resources"] == {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "128Mi"}}


@pytest.mark.parametrize("path", repo_yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_file_in_the_tests_parses_as_the_safe_loader_parses_it(path: Path) -> None:
    text = path.read_text()
    try:
        expected = list(yaml.load_all(text, Loader=yaml.CSafeLoader))
    except yaml.YAMLError:
        with pytest.raises(yaml.YAMLError):
            aliases.load_all(text, source=str(path))
        return
    assert aliases.load_all(text, source=str(path)) == expected


@pytest.mark.parametrize("text", [
    "a: &a [1, *a]\n",
    "a: &a {self: *a}\n",
    "outer: &o\n  inner:\n    - *o\n",
], ids=["sequence-holds-itself", "mapping-holds-itself", "nested"])
def test_an_alias_inside_its_own_anchor_is_refused(text: str) -> None:
    with pytest.raises(aliases.YamlTooComplex, match="recursive"):
        aliases.load_all(text, source="values.yaml")


def test_expansion_bound_grows_with_the_written_size_up_to_the_cap() -> None:
    assert aliases.allowed(10) == aliases.FREE_EXPANSION
    assert aliases.allowed(100_000) == 4 * 100_000
    assert aliases.allowed(10_000_000) == aliases.MAX_EXPANDED_NODES
    # A document of more nodes than the floor, with one alias: measured against its own size, read.
    big = "items:\n" + "".join(f"  - {{name: n{i}, value: v{i}}}\n" for i in range(5_000))
    assert len(aliases.load_all(big + "x: &a 1\ny: *a\n")[0]["items"]) == 5_000


def test_measure_is_linear_a_deep_bomb_is_refused_without_big_numbers() -> None:
    # 2,000 levels of two aliases: 2**2000 nodes if expanded; the measure stops past the cap.
    lines = ["l0: &l0 [x, x]"] + [f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, 2000)]
    with pytest.raises(aliases.YamlTooComplex, match="over"):
        aliases.load_all("\n".join(lines) + "\n", source="deep.yaml")


@pytest.mark.e2e  # waits out a real timeout or spacing: the slow part
def test_measure_stops_at_the_job_deadline() -> None:
    text = "items:\n" + "".join(f"  - &a{i} {{n: {i}}}\n" for i in range(20_000)) + "again: [*a0, *a1]\n"
    deadline = deadlines.Deadline(0)
    with deadlines.running(deadline), pytest.raises(deadlines.BudgetExceeded):
        aliases.load_all(text, source="values.yaml")
    assert aliases.load_all(text, source="values.yaml")[0]["again"] == [{"n": 0}, {"n": 1}]


# ---------------------------------------------------------------- every place repository YAML is parsed


def test_round_trip_editor_refuses_a_bomb_before_ruamel_builds_it() -> None:
    text = planted(9)
    with pytest.raises(aliases.YamlTooComplex):
        yaml_rt.edit(text, document_index=0, changes=[("spec.replicas", 4)])
    chunk = yaml_rt.split_documents(DEMO_MANIFEST.read_text())[0] + "x-defaults:\n" + bomb(9)
    with pytest.raises(aliases.YamlTooComplex):
        yaml_rt._rt_load(chunk)


def test_index_keeps_finding_the_workload_but_marks_the_file() -> None:
    facts = repo_index.scan(MANIFEST_PATH, "blob1", planted(9).encode())
    assert facts.role == "too_complex"
    assert [key for key, _, _ in facts.objects] == [("apps", "Deployment", "shop", "checkout")]
    plain = repo_index.scan(MANIFEST_PATH, "blob2", DEMO_MANIFEST.read_bytes())
    assert plain.role == "yaml" and plain.objects == facts.objects


def test_validation_walk_is_bounded_even_on_a_graph_no_parser_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    level: Any = ["lol"] * 9
    for _ in range(8):
        level = [level] * 9  # 9**9 leaves, built in Python: what the walk would see without the YAML check
    old, new = {"spec": {"replicas": 3}, "x": level}, {"spec": {"replicas": 4}, "x": level}
    monkeypatch.setattr(validation, "MAX_DIFF_NODES", 50_000)
    with pytest.raises(PermanentError, match="too large to compare") as refused:
        list(validation.leaf_diff(old, new))
    assert refused.value.code == "yaml_too_complex"


def test_validation_refuses_an_edited_file_holding_a_bomb() -> None:
    old = planted(9)
    new = old.replace('memory: "512Mi"', 'memory: "768Mi"')
    plan = Plan(cause="oom_killed", summary="raise memory", changes=[FieldChange(
        path="spec.template.spec.containers[name=checkout].resources.limits.memory", old="512Mi", new="768Mi")])
    with pytest.raises(aliases.YamlTooComplex):
        validation.check(old, new, document_index=0, plan=plan)


def test_snapshot_with_a_bomb_is_a_configuration_error_naming_the_file(tmp_path: Path) -> None:
    cluster = json.loads((EXAMPLES / "demo" / "cluster.json").read_text())
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cluster) + "x-defaults:\n" + bomb(9))
    with pytest.raises(ConfigError, match=f"cluster snapshot {path}: YAML document 0 expands"):
        SnapshotCluster.from_file(path)


@pytest.mark.timeout(120)
def test_helm_output_holding_a_bomb_is_refused_naming_the_template(tmp_path: Path) -> None:
    """A template may print anchors and aliases: the rendered text is checked like a file from git."""
    chart = {
        "chart/Chart.yaml": "apiVersion: v2\nname: checkout\nversion: 0.1.0\n",
        "chart/values.yaml": "replicas: 3\n",
        "chart/templates/configmap.yaml": ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: checkout\n"
                                           "data:\n  replicas: {{ .Values.replicas | quote }}\n"
                                           "x-defaults:\n" + bomb(9)),
    }
    with pytest.raises(aliases.YamlTooComplex, match="helm render of chart: .*templates/configmap.yaml"):
        renderers.helm(chart, "chart", values={"replicas": 3}, release="checkout", namespace="shop")

