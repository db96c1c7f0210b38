"""Run the real service with a marker-writing handler, for the crash/restart test.

    python -m tests.fakes.serve_with_handler PORT MARKER_FILE

Settings come from the environment (AUTOFIX_DATA_DIR, AUTOFIX_LEASE_SECONDS, ...). The handler appends
``start <fingerprint>`` when it begins and ``end <fingerprint>`` when it returns. On the first attempt at a
fingerprint (no earlier ``start`` line for it) it blocks until the process is killed.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import uvicorn

from app.main import create_app, server_config
from app.models.incident import Incident
from app.models.outcome import Outcome, StageRecord
from app.settings import load


class MarkerHandler:
    def __init__(self, marker: Path) -> None:
        self.marker = marker
        self._lock = threading.Lock()

    def _append(self, line: str) -> int:
        """Append a line (flushed and fsynced: the process may be SIGKILLed next); return prior starts."""
        with self._lock:
            before = self.marker.read_text().splitlines() if self.marker.exists() else []
            with self.marker.open("a") as f:
                f.write(line + "\n")
                f.flush()
        return sum(1 for b in before if b == line)

    def handle(self, incident: Incident) -> Outcome:
        started_before = self._append(f"start {incident.fingerprint}")
        if started_before == 0:
            while True:  # first attempt: hang until killed
                time.sleep(3600)
        self._append(f"end {incident.fingerprint}")
        return Outcome(alertname=incident.alertname, fingerprint=incident.fingerprint, outcome="no_fix",
                       reason="finished after restart",
                       stages=[StageRecord(stage="marker", seconds=0.0, decision=f"attempt {started_before + 1}")])


def main(argv: list[str]) -> None:
    port, marker = int(argv[1]), Path(argv[2])
    app = create_app(load(), pipeline=MarkerHandler(marker))
    uvicorn.Server(server_config(app, host="127.0.0.1", port=port)).run()


if __name__ == "__main__":
    main(sys.argv)
