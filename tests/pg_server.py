"""A throwaway PostgreSQL server for tests: Debian's `postgresql` package in a temporary data directory.

The server listens on 127.0.0.1 at a free port and on a unix socket in its own directory, requires a
password over TCP (so tests can check that it is never printed) and runs as the `postgres` user when the
tests run as root (initdb refuses root). Without the package the tests skip, except in CI (CI=true),
where a missing server is a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

USER, PASSWORD = "workbench", "s3cret-Pw.42"


def _bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self):
        bindir = _bindir()
        if bindir is None:
            message = (
                "PostgreSQL is not installed (apt-get install postgresql): the store's server tests need it"
            )
            if os.environ.get("CI") == "true":
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="workbench-pg-"))  # under /tmp: reachable by `postgres`
        self.data, self.port = self.root / "data", _free_port()
        (self.root / "pw").write_text(PASSWORD + "\n")
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            os.chown(self.root / "pw", entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D",
            self.data,
            "-U",
            USER,
            "--pwfile",
            self.root / "pw",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self._run(
            "pg_ctl",
            "-D",
            self.data,
            "-l",
            self.root / "log",
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off -c max_connections=60",
            "start",
        )

    def _run(self, tool: str, *args) -> None:
        result = subprocess.run(
            [str(self.bindir / tool), *map(str, args)],
            user=self.user,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"{tool} failed: {result.stderr.strip()}\n{log[-2000:]}")

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
