"""A loopback server that accepts TCP connections and never answers: the dependency that hangs.

    with SilentServer() as silent:
        url = silent.url            # http://127.0.0.1:PORT
        ...                         # a client connects, sends its request, and waits for ever
        assert silent.accepted >= 1

It reads and discards what clients send (so their writes never block) and holds every connection open until
the block ends, or at most ``max_seconds`` (the server stops itself: a forgotten one never hangs a test run).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

MAX_SECONDS = 120.0


class SilentServer:
    def __init__(self, *, max_seconds: float = MAX_SECONDS) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._max_seconds = max_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, name=f"silent-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        give_up = time.monotonic() + self._max_seconds
        try:
            while not self._stop.is_set() and time.monotonic() < give_up:
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    self._drain()
                    continue
                conn.setblocking(False)
                with self._lock:
                    self._connections.append(conn)
                    self.accepted += 1
                self._drain()
        finally:
            with self._lock:
                for conn in self._connections:
                    conn.close()
                self._connections.clear()
            self._listener.close()

    def _drain(self) -> None:
        """Read what clients sent, answer nothing."""
        with self._lock:
            for conn in self._connections:
                try:
                    while conn.recv(65536):
                        pass
                except (BlockingIOError, OSError):
                    continue


def kubeconfig(path: Path, server: str) -> str:
    """A kubeconfig pointing the real kubernetes client at ``server`` (a silent one, here), written to ``path``."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "silent",
        "clusters": [{"name": "silent", "cluster": {"server": server}}],
        "users": [{"name": "autofix", "user": {"token": "sa-token"}}],
        "contexts": [{"name": "silent", "context": {"cluster": "silent", "user": "autofix"}}],
    }))
    return str(path)
