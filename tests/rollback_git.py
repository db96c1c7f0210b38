"""tests/scenarios/real-rollback-git-history with its git history: podinfo's chart imported on 2026-10-20 (redis
8.8.0, as stefanprodan/podinfo ships values-prod.yaml), then the commits of one case, and the cluster with Argo CD's
history naming those commits. The scenario's README tells the story; the stage and end-to-end tests share this.

    weeks    8.8.0 for 34 days, then the typo 8.8.0-alpne: git and Argo CD's history prove 8.8.0 -> roll back
    minutes  8.8.0-alpine for 4 minutes (synced, then replaced by the typo): not proof that it worked -> no_fix
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.conftest import SCENARIOS
from tests.gitrepo import Commit, seed_history

SCENARIO = SCENARIOS / "real-rollback-git-history"
VALUES = "charts/podinfo/values-prod.yaml"
TAG = "  tag: 8.8.0\n"  # redis.tag, verbatim (podinfo's image.tag is 6.14.1)
IMPORTED = "2026-10-20T08:40:12Z"
TYPO_AT = "2026-11-23T11:59:58Z"


def at(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def tagged(tag: str) -> str:
    text = (SCENARIO / "repo" / VALUES).read_text()
    assert text.count(TAG) == 1
    return text.replace(TAG, f"  tag: {tag}\n")


def commits(case: str) -> list[Commit]:
    typo = Commit(subject="podinfo: redis 8.8.0-alpine", files={VALUES: tagged("8.8.0-alpne")}, at=at(TYPO_AT),
                  author="Dana Ops <dana@example.com>")
    if case == "weeks":
        return [typo]
    assert case == "minutes"
    alpine = Commit(subject="podinfo: redis on alpine", files={VALUES: tagged("8.8.0-alpine")},
                    at=at("2026-11-23T11:56:10Z"), author="Dana Ops <dana@example.com>")
    return [alpine, typo]


def repository(bare: Path, case: str) -> list[str]:
    """The bare repository of ``case``; returns every commit's sha, the import first."""
    return seed_history(SCENARIO / "repo", bare, first_at=at(IMPORTED), commits=commits(case),
                        first_author="Platform Team <platform@example.com>",
                        first_subject="Import podinfo chart 6.14.1 (stefanprodan/podinfo@eec06d1)")


def cluster(case: str, shas: list[str]) -> dict[str, Any]:
    """The snapshot with Argo CD's history of ``case``: one sync per commit, then the self-heal after the delete."""
    text = (SCENARIO / "cluster.json").read_text()
    if case == "minutes":  # the typo is commit 2; the alpine commit (1) was synced too, 30 s after it landed
        text = text.replace("{{commit:1}}", "{{commit:2}}")
    data = json.loads(text)
    if case == "minutes":
        history = next(i for i in data["items"] if i["kind"] == "Application")["status"]["history"]
        history.insert(1, {**history[1], "deployStartedAt": "2026-11-23T11:56:38Z",
                           "deployedAt": "2026-11-23T11:56:40Z", "revision": "{{commit:1}}"})
        for i, entry in enumerate(history):
            entry["id"] = i
    text = json.dumps(data)
    for i, sha in enumerate(shas):
        text = text.replace(f"{{{{commit:{i}}}}}", sha)
    assert "{{commit:" not in text
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def write_cluster(path: Path, case: str, shas: list[str]) -> Path:
    path.write_text(json.dumps(cluster(case, shas)))
    return path
