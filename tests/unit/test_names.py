"""Branch names: one per (cluster, namespace, kind, name, cause), readable when they can be, and always
accepted by git itself (the real ``git check-ref-format --branch``, not a copy of its rules)."""

from __future__ import annotations

import os
import subprocess
from itertools import combinations
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import render
from app.models.incident import WorkloadRef

LABEL = "a" * 63
DNS_253 = ".".join([LABEL, LABEL, LABEL, "b" * 61])  # the longest valid Kubernetes object name
PREFIX_63 = "payments-settlement-reconciliation-worker-for-eu-central-1-prod"  # 63 characters
assert len(DNS_253) == 253 and len(PREFIX_63) == 63


def git_accepts(name: str, cwd: Path) -> tuple[bool, str]:
    """``git check-ref-format --branch NAME``: exit status and the name git would use."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CEILING_DIRECTORIES": "/"}
    result = subprocess.run(["git", "check-ref-format", "--branch", name], cwd=cwd, env=env, capture_output=True,
                            timeout=30, check=False)
    return result.returncode == 0, result.stdout.decode("utf-8", "replace").strip()


def w(name: str, *, namespace: str = "shop", kind: str = "Deployment") -> WorkloadRef:
    return WorkloadRef(kind=kind, namespace=namespace, name=name)


# (workload, cause, cluster, the exact branch or None when it must be hashed)
CASES = {
    "plain": (w("checkout"), "oom_killed", None, "autofix/shop/checkout/oom-killed"),
    "statefulset": (w("checkout", kind="StatefulSet"), "oom_killed", None,
                    "autofix/shop/checkout/oom-killed-statefulset"),
    "cronjob": (w("nightly-export", namespace="data", kind="CronJob"), "oom_killed", None,
                "autofix/data/nightly-export/oom-killed-cronjob"),
    "dotted": (w("api.v2.internal"), "oom_killed", None, "autofix/shop/api.v2.internal/oom-killed"),
    "lock-in-the-middle": (w("a.lock.b"), "oom_killed", None, "autofix/shop/a.lock.b/oom-killed"),
    "63-chars": (w(PREFIX_63), "oom_killed", None, f"autofix/shop/{PREFIX_63}/oom-killed"),
    "model": (w("ledger-api", namespace="payments"), "model_proposed", None,
              "autofix/payments/ledger-api/model-proposed"),
    "x.lock": (w("x.lock"), "oom_killed", None, None),
    "ends-lock-63": (w("a" * 58 + ".lock"), "oom_killed", None, None),
    "twin-a": (w(PREFIX_63 + "-a"), "oom_killed", None, None),
    "twin-b": (w(PREFIX_63 + "-b"), "oom_killed", None, None),
    "twin-a-other-cause": (w(PREFIX_63 + "-a"), "cpu_throttling", None, None),
    "dns-253": (w(DNS_253), "oom_killed", None, None),
    "dns-253-twin": (w(DNS_253[:-1] + "c"), "oom_killed", None, None),
    "namespace-63": (w("api", namespace="n" * 63), "oom_killed", None, f"autofix/{'n' * 63}/api/oom-killed"),
    "cluster": (w("checkout"), "oom_killed", "eu-central-1", "autofix/eu-central-1.shop/checkout/oom-killed"),
    "other-cluster": (w("checkout"), "oom_killed", "us-east-1", "autofix/us-east-1.shop/checkout/oom-killed"),
    # a cluster-less namespace never has a dot: "a.b-c" and "a-b.c" are two clusters, not one name
    "cluster-a": (w("api", namespace="b-c"), "oom_killed", "a", "autofix/a.b-c/api/oom-killed"),
    "cluster-a-b": (w("api", namespace="c"), "oom_killed", "a-b", "autofix/a-b.c/api/oom-killed"),
    "cluster-63-statefulset": (w(PREFIX_63, namespace="n" * 63, kind="StatefulSet"), "oom_killed", "c" * 63, None),
    "cluster-not-a-label": (w("checkout"), "oom_killed", "arn:aws:eks:eu-west-1:123456789012:cluster/prod", None),
    "cluster-lock-namespace": (w("checkout", namespace="lock"), "oom_killed", "prod", None),  # "prod.lock": not a ref
    "cluster-with-dot": (w("checkout"), "oom_killed", "prod.eu", None),
    "unknown-kind": (w("checkout", kind="Rollout"), "oom_killed", None, None),
    "cause-looks-like-kind": (w("checkout"), "oom_killed_job", None, None),
    "job-of-that-cause": (w("checkout", kind="Job"), "oom_killed", None, "autofix/shop/checkout/oom-killed-job"),
    "cause-looks-like-hash": (w("checkout"), "oom_killed_0123456789", None, None),
    "not-a-cause": (w("checkout"), "oom killed!", None, None),
    # Not valid Kubernetes names (a hostile alert label or snapshot): still a valid, unique branch.
    "upper-case": (w("Checkout"), "oom_killed", None, None),
    "dot-dot": (w("a..b"), "oom_killed", None, None),
    "leading-dot": (w(".hidden"), "oom_killed", None, None),
    "trailing-dot": (w("api."), "oom_killed", None, None),
    "at-brace": (w("a@{1}"), "oom_killed", None, None),
    "ref-specials": (w("a~b^c:d?e*f[g\\h"), "oom_killed", None, None),
    "space-and-control": (w("a b\tc\nd\x7f\x00"), "oom_killed", None, None),
    "slashes": (w("../../etc/passwd"), "oom_killed", None, None),
    "dash": (w("-x"), "oom_killed", None, None),
    "unicode": (w("zähler-ü"), "oom_killed", None, None),
    "empty": (w("", namespace=""), "oom_killed", None, None),
    "bad-namespace": (w("api", namespace="Shop_NS"), "oom_killed", None, None),
}


@pytest.mark.parametrize(("workload", "cause", "cluster", "exact"), list(CASES.values()), ids=list(CASES))
def test_branch_is_valid_for_git_and_readable_when_it_can_be(
        workload: WorkloadRef, cause: str, cluster: str | None, exact: str | None, tmp_path: Path) -> None:
    name = render.branch(workload, cause, cluster=cluster)
    assert git_accepts(name, tmp_path) == (True, name), name
    assert render.valid_branch(name)
    assert name.startswith("autofix/") and name.count("/") == 3 and len(name) <= render.MAX_BRANCH, name
    if exact is not None:
        assert name == exact
    else:  # shortened or sanitised: the hash of the full identity tells it apart
        assert name.endswith("-" + render.identity(workload, cause, cluster=cluster)[:10]), name


def test_every_identity_gets_its_own_branch() -> None:
    names = {key: render.branch(wl, cause, cluster=cluster) for key, (wl, cause, cluster, _) in CASES.items()}
    for (a, name_a), (b, name_b) in combinations(names.items(), 2):
        assert name_a != name_b, (a, b, name_a)


def test_twins_sharing_63_characters_get_two_readable_distinct_branches() -> None:
    a, b = (render.branch(w(PREFIX_63 + suffix), "oom_killed") for suffix in ("-a", "-b"))
    assert a != b
    assert render.legacy_branch(w(PREFIX_63 + "-a"), "oom_killed") == \
        render.legacy_branch(w(PREFIX_63 + "-b"), "oom_killed"), "the names earlier versions shared"
    assert a.startswith("autofix/shop/payments-settlement-reconciliation-worke/oom-killed-"), a


def test_names_of_earlier_versions_are_kept_for_deployments() -> None:
    """Open PRs keep their branch: for a Deployment with a valid name the name is the old one."""
    for name in ("checkout", "api.v2.internal", PREFIX_63):
        assert render.branch(w(name), "oom_killed") == render.legacy_branch(w(name), "oom_killed")


REF_NAMES = [
    "autofix/a/b/c", "autofix/x.lock/c", "autofix/a/b.lock", "autofix/a.lock.b/c", "autofix/.lock/c",
    "autofix/a..b/c", "autofix/.a/b", "autofix/a./b", "autofix/a/b.", "autofix/a/b/", "autofix//a", "/autofix/a",
    "autofix/a@{b", "autofix/a@b", "autofix/a{b}", "autofix/@", "-autofix/a", "autofix/-a", "autofix/a b",
    "autofix/a~b", "autofix/a^b", "autofix/a:b", "autofix/a?b", "autofix/a*b", "autofix/a[b", "autofix/a]b",
    "autofix/a\\b", "autofix/a\tb", "autofix/a\x7fb", "autofix/a\x01b", "autofix/ä/ü", "autofix/a/b.lock/c",
    "autofix/a/.b", "autofix/a/b.c", "autofix", ".autofix", "autofix.lock", "autofix/...", "autofix/a/b@",
]


@pytest.mark.parametrize("name", REF_NAMES)
def test_valid_branch_agrees_with_git(name: str, tmp_path: Path) -> None:
    assert render.valid_branch(name) == git_accepts(name, tmp_path)[0]


text = st.lists(st.text(st.characters(codec="utf-8"), max_size=6)
               | st.sampled_from(list("./-@{}~^:?*[\\ \t\n") + [".lock", "..", "a" * 63, "Deployment", "checkout",
                                 "shop", "oom_killed", "x.lock"]),
               max_size=10).map("".join)
identities = st.tuples(text, text, st.sampled_from(["Deployment", "StatefulSet", "CronJob", "Rollout"]) | text,
                       text, st.none() | text)


@pytest.mark.e2e  # slow: the fast part stays under a minute
@settings(derandomize=True, max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(identities, identities)
def test_fuzzed_names_are_valid_for_git_and_never_shared(
        tmp_path: Path, first: tuple[str, str, str, str, str | None], second: tuple[str, str, str, str, str | None]
) -> None:
    names = []
    for namespace, name, kind, cause, cluster in (first, second):
        branch = render.branch(WorkloadRef(kind=kind, namespace=namespace, name=name), cause, cluster=cluster)
        assert git_accepts(branch, tmp_path) == (True, branch), branch
        names.append(branch)
    assert (names[0] == names[1]) == (first[:4] + (first[4] or None,) == second[:4] + (second[4] or None,))
