"""Intake: a firing alert is accepted unless its namespace is denied, the bot's own, or protected by policy."""

from __future__ import annotations

import pytest

from app.stages import intake
from tests.stages.world import World


@pytest.mark.parametrize(("namespace", "own", "decision", "stopped"), [
    pytest.param("shop", None, "firing alert accepted", False, id="accepted"),
    pytest.param("kube-system", None, "namespace kube-system is denied by policy", True, id="denied-glob"),
    pytest.param("gitops-autofix", "gitops-autofix", "namespace gitops-autofix is the bot's own namespace", True,
                 id="own-namespace"),
    pytest.param("", None, "firing alert accepted", False, id="no-namespace-label"),
])
def test_accept(world: World, namespace: str, own: str | None, decision: str, stopped: bool) -> None:
    out = intake.accept(incident=world.incident(namespace=namespace), policy=world.policy, own_namespace=own)
    assert out.decision == decision
    if stopped:
        assert out.stop is not None and (out.stop.kind, out.stop.reason) == ("skipped", decision)
    else:
        assert out.stop is None
