"""A real PostgreSQL server for the tests, from Debian's ``postgresql`` package (scripts/system-deps.sh installs it).

``initdb`` into a fresh temporary directory, ``pg_ctl start`` listening on 127.0.0.1 on a free port (its unix
socket in the same directory, never /var/run/postgresql), fsync off (a test database need not survive a power
cut), ``pg_ctl stop -m immediate`` at the end. initdb and postgres refuse to run as root: as root (CI, this
machine) both run as the ``postgres`` user the package creates, over a directory chowned to it.

    with PostgresServer.start() as server:
        url = server.create_database("t1")    # postgresql://autofix@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "autofix"  # the superuser initdb creates (trust authentication on loopback: no password to leak)
START_SECONDS = 60


def binaries() -> Path:
    """The newest installed server's bin directory (/usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql: run scripts/system-deps.sh "
                           "(Debian package postgresql)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self, root: Path, port: int, runas: str | None) -> None:
        self.root, self.port, self._runas = root, port, runas
        self.data = root / "data"
        self._names = itertools.count(1)

    @classmethod
    def start(cls) -> PostgresServer:
        runas = None
        if os.geteuid() == 0:
            runas = "postgres" if _user_exists("postgres") else "nobody"
        # In memory where there is a tmpfs: each test's database is a ~7 MB copy of the template, and a session
        # makes dozens; on disk, deleting them at the end took seconds.
        shm = Path("/dev/shm")
        root = Path(tempfile.mkdtemp(prefix="autofix-pg-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))
        if runas is not None:
            entry = pwd.getpwnam(runas)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        server = cls(root, _free_port(), runas)
        try:
            server._run("initdb", "-D", str(server.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync",
                        "--locale=C")
            options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -c unix_socket_directories={root}"
                       " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            server._run("pg_ctl", "-D", str(server.data), "-o", options, "-l", str(root / "server.log"), "-w",
                        "-t", str(START_SECONDS), "start")
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, program: str, *args: str) -> None:
        command = [str(binaries() / program), *args]
        if self._runas is not None:
            command = ["runuser", "-u", self._runas, "--", *command]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=START_SECONDS + 30, check=False,
                              cwd=self.root)
        if proc.returncode != 0:
            log = self.root / "server.log"
            raise RuntimeError(f"{program} failed ({proc.returncode}): {proc.stderr or proc.stdout}"
                               + (log.read_text(errors="replace")[-2000:] if log.exists() else ""))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """A new database, empty or a copy of ``template`` (a database nobody is connected to); its URL."""
        import psycopg

        name = name or f"t{next(self._names)}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy} STRATEGY FILE_COPY')
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
