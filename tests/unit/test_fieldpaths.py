"""Table-driven tests of field path parsing, formatting, lookup, resolution and allow-list globs."""

from __future__ import annotations

from typing import Any

import pytest

from app import fieldpaths
from app.fieldpaths import Selector

C = "spec.template.spec.containers"

DEPLOYMENT: dict[str, Any] = {
    "spec": {
        "maxReplicas": 5,
        "template": {
            "spec": {
                "initContainers": [{"name": "migrate", "image": "db:1"}],
                "containers": [
                    {"name": "sidecar", "image": "envoy:1"},
                    {"name": "checkout", "image": "shop:2", "resources": {"requests": {"memory": "256Mi"}}},
                ],
            }
        },
    },
    "metadata": {"annotations": {"prometheus.io/scrape": "true"}},
}


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        pytest.param("spec.maxReplicas", ("spec", "maxReplicas"), id="keys"),
        pytest.param(
            f"{C}[name=checkout].resources.limits.memory",
            (
                "spec",
                "template",
                "spec",
                "containers",
                Selector("name", "checkout"),
                "resources",
                "limits",
                "memory",
            ),
            id="selector",
        ),
        pytest.param("spec.containers[0].image", ("spec", "containers", 0, "image"), id="index"),
        pytest.param("a[name=x.y].b", ("a", Selector("name", "x.y"), "b"), id="dot-in-selector"),
        pytest.param(
            'metadata.annotations["prometheus.io/scrape"]',
            ("metadata", "annotations", "prometheus.io/scrape"),
            id="quoted-key",
        ),
        pytest.param("items[0][1]", ("items", 0, 1), id="nested-index"),
    ],
)
def test_parse_and_format_round_trip(path: str, segments: tuple[fieldpaths.Segment, ...]) -> None:
    assert fieldpaths.parse(path) == segments
    assert fieldpaths.format(segments) == path


@pytest.mark.parametrize(
    "path",
    ["", ".a", "a.", "a..b", "a[", "a[name]", "a[=x]", "a[0]b", 'a["x"', "a[x]"],
    ids=[
        "empty",
        "leading-dot",
        "trailing-dot",
        "double-dot",
        "unclosed",
        "no-eq",
        "no-key",
        "no-dot",
        "bad-quoted",
        "word-index",
    ],
)
def test_parse_rejects_malformed(path: str) -> None:
    with pytest.raises(ValueError):
        fieldpaths.parse(path)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param("spec.maxReplicas", 5, id="scalar"),
        pytest.param(f"{C}[name=checkout].image", "shop:2", id="selector"),
        pytest.param(f"{C}[0].image", "envoy:1", id="index"),
        pytest.param("spec.template.spec.initContainers[name=migrate].image", "db:1", id="init"),
        pytest.param('metadata.annotations["prometheus.io/scrape"]', "true", id="quoted-key"),
    ],
)
def test_get(path: str, value: Any) -> None:
    assert fieldpaths.get(DEPLOYMENT, path) == value


@pytest.mark.parametrize(
    "path",
    [f"{C}[name=nope].image", f"{C}[5].image", "spec.minReplicas", "spec.maxReplicas.x", "spec[0]"],
    ids=["no-item", "index-out-of-range", "no-key", "below-scalar", "index-on-mapping"],
)
def test_get_missing_raises_key_error(path: str) -> None:
    with pytest.raises(KeyError):
        fieldpaths.get(DEPLOYMENT, path)


@pytest.mark.parametrize(
    ("path", "resolved"),
    [
        pytest.param(
            f"{C}[name=checkout].resources.limits.memory",
            ("spec", "template", "spec", "containers", 1, "resources", "limits", "memory"),
            id="missing-tail-created",
        ),
        pytest.param(f"{C}[0].image", ("spec", "template", "spec", "containers", 0, "image"), id="index"),
    ],
)
def test_resolve(path: str, resolved: tuple[str | int, ...]) -> None:
    assert fieldpaths.resolve(DEPLOYMENT, path) == resolved


@pytest.mark.parametrize(
    "path", [f"{C}[name=nope].image", "spec.volumes[0].name"], ids=["unknown-item", "index-below-missing"]
)
def test_resolve_unresolvable_raises(path: str) -> None:
    with pytest.raises(KeyError):
        fieldpaths.resolve(DEPLOYMENT, path)


@pytest.mark.parametrize(
    ("path", "glob", "expected"),
    [
        (f"{C}[name=checkout].resources.limits.memory", f"{C}[*].resources.*", True),
        (f"{C}[0].resources.limits.memory", f"{C}[*].resources.*", True),
        (f"{C}[name=checkout].image", f"{C}[*].resources.*", False),
        (f"{C}[name=checkout].image", f"{C}[*].image", True),
        ("spec.template.spec.initContainers[name=m].image", f"{C}[*].image", False),
        ("spec.maxReplicas", "spec.maxReplicas", True),
        ("spec.maxReplicasX", "spec.maxReplicas", False),
        ("spec.replicas", "spec.*Replicas", False),
        ("spec.minReplicas", "spec.*Replicas", True),
        (f"{C}[name=a].resources", f"{C}[*].resources.*", False),
    ],
    ids=[
        "resources-leaf",
        "resources-by-index",
        "image-not-resources",
        "image",
        "init-not-containers",
        "exact",
        "no-prefix-match",
        "case",
        "star-in-key",
        "star-needs-child",
    ],
)
def test_matches(path: str, glob: str, expected: bool) -> None:
    assert fieldpaths.matches(path, glob) is expected
