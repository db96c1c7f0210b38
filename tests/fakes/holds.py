"""Blocking hooks for the loopback fakes: hold the first request matching a method and path until the test
lets it go, so a test knows which stage the service is in (e.g. to SIGKILL it there).

    hold = fake.hold("POST", "/pulls")
    hold.wait_reached(20)     # the service is now inside that request
    ...kill the service...
    hold.drop()               # the held request is answered 503 without being carried out

A held request waits at most MAX_HOLD seconds, so a forgotten hold never hangs a test run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

MAX_HOLD = 60.0


@dataclass
class Hold:
    method: str
    path_suffix: str
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    carry_out: bool = True  # after release: serve the request normally (True) or answer 503 (False)

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and path.endswith(self.path_suffix)

    def wait_reached(self, timeout: float) -> None:
        if not self.reached.wait(timeout):
            raise TimeoutError(f"no {self.method} ...{self.path_suffix} arrived within {timeout} s")

    def release(self) -> None:
        """Let the held request through, carried out as usual."""
        self.released.set()

    def drop(self) -> None:
        """Answer the held request 503 without carrying it out (its client is gone)."""
        self.carry_out = False
        self.released.set()


class Holds:
    """The holds of one fake; ``stop`` releases everything so server threads end."""

    def __init__(self) -> None:
        self._holds: list[Hold] = []
        self._lock = threading.Lock()

    def add(self, method: str, path_suffix: str) -> Hold:
        hold = Hold(method, path_suffix)
        with self._lock:
            self._holds.append(hold)
        return hold

    def wait_if_held(self, method: str, path: str) -> bool:
        """Block while a matching hold is pending (each hold catches one request); False: answer 503."""
        with self._lock:
            hold = next((h for h in self._holds if not h.reached.is_set() and h.matches(method, path)), None)
            if hold is not None:
                hold.reached.set()
        if hold is None:
            return True
        hold.released.wait(MAX_HOLD)
        return hold.carry_out

    def stop(self) -> None:
        with self._lock:
            for hold in self._holds:
                hold.drop()
