"""bad_command: the runtime cannot exec the container's command; the fix restores the command of the
previous ReplicaSet whose pods ran, item by item."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.detectors import commands
from app.errors import NoFix
from app.models.causes import Cause, CommandRollbackFacts
from tests.conftest import SCENARIOS
from tests.unit.detectors.support import apply, ev_of, varied


def test_wrong_command_restores_the_working_revisions_command() -> None:
    d = commands.detect(ev_of("wrong-command"))
    assert d is not None and d.fixable and d.cause == Cause.BAD_COMMAND
    assert isinstance(d.finding.facts, CommandRollbackFacts)
    assert d.finding.facts.executable == "gunicron" and d.finding.facts.previous_revision == 8
    _, changed = apply(d, SCENARIOS / "wrong-command/repo/apps/notifications/deployment.yaml")
    assert changed == "-            - gunicron\n+            - gunicorn"


def _without_previous(data: dict[str, Any]) -> None:
    data["replicasets"] = data["replicasets"][:1]


def _entrypoint(data: dict[str, Any]) -> None:
    for pod in data["pods"]:
        for cs in pod["status"]["containerStatuses"]:
            term = cs["lastState"].get("terminated") or {}
            if term.get("reason") == "StartError":
                term["message"] = term["message"].replace('"gunicron"', '"/docker-entrypoint.sh"')


@pytest.mark.parametrize(("change", "needle"), [
    (_without_previous, "no previous working revision"),
    (_entrypoint, "image's own entrypoint"),
], ids=["no-working-revision", "image-entrypoint"])
def test_wrong_command_without_a_safe_fix_is_reported(change: Any, needle: str) -> None:
    d = commands.detect(varied("wrong-command", change))
    assert d is not None and not d.fixable and needle in str(d.no_fix_reason)


def test_wrong_command_with_a_reshaped_command_is_left_to_a_human() -> None:
    d = commands.detect(ev_of("wrong-command"))
    assert d is not None and isinstance(d.finding.facts, CommandRollbackFacts)
    text = (SCENARIOS / "wrong-command/repo/apps/notifications/deployment.yaml").read_text()
    facts = d.finding.facts.model_copy(update={"failing_command": [*(d.finding.facts.failing_command or []),
                                                                   "--preload"]})
    reshaped = d.model_copy(update={"finding": d.finding.model_copy(update={"facts": facts})})
    with pytest.raises(NoFix, match="restore it by hand"):
        apply(reshaped, Path("unused"), text.replace("notifications.wsgi:application",
                                                     "notifications.wsgi:application\n            - --preload"))
