"""The health registry's port as a recording fake: what each adapter or the exporter reported, in order."""

from __future__ import annotations


class HealthRecorder:
    """``calls``: ("ok", dependency) and ("error", dependency, kind, message); ``kinds``: the same without messages."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def ok(self, dependency: str) -> None:
        self.calls.append(("ok", dependency))

    def error(self, dependency: str, kind: str, message: str) -> None:
        self.calls.append(("error", dependency, kind, message))

    @property
    def kinds(self) -> list[tuple[str, ...]]:
        return [call[:3] for call in self.calls]
