"""config_refs: config_reference (a ConfigMap name or key with a typo, corrected), missing_config and
missing_secret (reported, never fixed)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from app import yaml_rt
from app.detectors import config_refs
from app.errors import NoFix
from app.models.causes import Cause, ConfigTypoFacts
from tests.conftest import SCENARIOS
from tests.unit.detectors.support import apply, container, ev_of, varied


@pytest.mark.parametrize(("message", "parsed"), [
    ('configmap "checkout-confg" not found', ("ConfigMap", "checkout-confg", None)),
    ('secret "db-credentials" not found', ("Secret", "db-credentials", None)),
    ("couldn't find key CURRENCY_DEFAUL in ConfigMap shop/checkout-config",
     ("ConfigMap", "checkout-config", "CURRENCY_DEFAUL")),
    ("couldn't find key password in Secret billing/db-credentials", ("Secret", "db-credentials", "password")),
    ('MountVolume.SetUp failed for volume "config" : configmap "nginx-conf" not found',
     ("ConfigMap", "nginx-conf", None)),
    ("Error: ImagePullBackOff", None),
], ids=["configmap", "secret", "configmap-key", "secret-key", "failed-mount", "other"])
def test_parse_kubelet_messages(message: str, parsed: tuple[str, str, str | None] | None) -> None:
    assert config_refs.parse(message) == parsed


def test_configmap_name_typo_is_corrected_in_git() -> None:
    d = config_refs.detect(ev_of("config-reference-typo"))
    assert d is not None and d.fixable and d.cause == Cause.CONFIG_REFERENCE
    assert isinstance(d.finding.facts, ConfigTypoFacts) and d.finding.facts.replacement == "checkout-config"
    assert "container checkout envFrom configMapRef" in d.finding.root_cause
    _, changed = apply(d, SCENARIOS / "config-reference-typo/repo/apps/checkout/deployment.yaml")
    assert changed == "-                name: checkout-confg\n+                name: checkout-config"


KEY_TYPO_YAML = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: checkout
  namespace: shop
spec:
  selector:
    matchLabels: {app: checkout}
  template:
    metadata:
      labels: {app: checkout}
    spec:
      containers:
        - name: checkout
          image: ghcr.io/acme/checkout:1.4.2
          env:
            - name: CURRENCY
              valueFrom:
                configMapKeyRef:
                  name: checkout-config
                  key: CURRENCY_DEFAUL  # typo
            - name: TAX_URL
              valueFrom:
                configMapKeyRef:
                  name: checkout-config
                  key: TAX_SERVICE_URL
"""


def _key_typo(data: dict[str, Any]) -> None:
    c = container(data)
    c.pop("envFrom", None)
    c["env"] = yaml_rt.documents(KEY_TYPO_YAML)[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    for pod in data["pods"]:
        for cs in pod["status"]["containerStatuses"]:
            if "waiting" in cs["state"]:
                cs["state"]["waiting"]["message"] = \
                    "couldn't find key CURRENCY_DEFAUL in ConfigMap shop/checkout-config"


def test_configmap_key_typo_is_corrected_and_nothing_else() -> None:
    d = config_refs.detect(varied("config-reference-typo", _key_typo))
    assert d is not None and d.fixable, d
    assert isinstance(d.finding.facts, ConfigTypoFacts)
    assert (d.finding.facts.key, d.finding.facts.replacement) == ("CURRENCY_DEFAUL", "CURRENCY_DEFAULT")
    new, changed = apply(d, Path("unused"), KEY_TYPO_YAML)
    assert changed == ("-                  key: CURRENCY_DEFAUL  # typo\n"
                       "+                  key: CURRENCY_DEFAULT  # typo")


def _near_twice(data: dict[str, Any]) -> None:
    twin = copy.deepcopy(next(o for o in data["related"] if o["metadata"]["name"] == "checkout-config"))
    twin["metadata"]["name"] = "checkout-confog"
    data["related"].append(twin)


def _no_near(data: dict[str, Any]) -> None:
    data["related"] = [o for o in data["related"] if o["metadata"]["name"] != "checkout-config"]


@pytest.mark.parametrize(("change", "needle"), [
    (_near_twice, "no ConfigMap or key with a near name"),
    (_no_near, "no ConfigMap or key with a near name"),
], ids=["two-near-names", "nothing-near"])
def test_configmap_without_a_unique_near_name_is_reported(change: Any, needle: str) -> None:
    d = config_refs.detect(varied("config-reference-typo", change))
    assert d is not None and not d.fixable and d.cause == Cause.MISSING_CONFIG
    assert needle in str(d.no_fix_reason)
    assert "ConfigMap checkout-confg" in d.finding.root_cause


def test_missing_secret_names_the_secret_and_every_reference() -> None:
    d = config_refs.detect(ev_of("missing-secret"))
    assert d is not None and not d.fixable and d.cause == Cause.MISSING_SECRET
    assert "Secret db-credentials" in d.finding.root_cause
    assert "env DB_USER" in d.finding.root_cause and "env DB_PASSWORD" in d.finding.root_cause
    assert "smtp-relay" not in d.finding.root_cause  # another Secret, referenced fine


def test_fixer_refuses_when_git_moved_on() -> None:
    d = config_refs.detect(ev_of("config-reference-typo"))
    assert d is not None
    text = (SCENARIOS / "config-reference-typo/repo/apps/checkout/deployment.yaml").read_text()
    with pytest.raises(NoFix, match="no longer references"):
        apply(d, Path("unused"), text.replace("checkout-confg", "checkout-config"))
