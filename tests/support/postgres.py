"""A throw-away PostgreSQL server for the ledger tests: initdb + pg_ctl in a temporary folder.

Debian's ``postgresql`` package (installed by ``scripts/ensure-test-tools``) puts its programs in
``/usr/lib/postgresql/<version>/bin``; they are looked up there and on PATH. The server listens
only on a unix socket in its own folder (no TCP port, nothing shared with the machine), trusts
local connections, and is stopped at the end of the test session. ``initdb`` refuses to run as
root: as root the cluster is made and run by an unprivileged user (``postgres`` if the package
created it, else ``nobody``) through ``runuser``. Every wait is bounded.

:func:`postgres_or_skip` gives the running server or skips the test saying what is missing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
PORT = 5432  # only names the socket file: the server listens on no TCP port


def find_program(name: str) -> str | None:
    """``initdb`` / ``pg_ctl``: on PATH, else in the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return str(candidates[-1]) if candidates else None


def missing() -> str | None:
    """Why a PostgreSQL server cannot be run here (None: it can)."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "psycopg / psycopg_pool not installed (pip install -e '.[test]')"
    for program in ("initdb", "pg_ctl"):
        if find_program(program) is None:
            return (
                f"PostgreSQL's {program} not found (Debian package postgresql, installed "
                "by scripts/ensure-test-tools)"
            )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: initdb cannot be run as another user"
    return None


class PostgresServer:
    """One running cluster; :meth:`new_database` gives a fresh database's URL."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="atcaprov-pg-"))
        self.data = self.folder / "data"
        self.socket_dir = self.folder / "sock"
        self.user = "atcaprov"
        self._run_as: str | None = None
        self._count = 0
        self.running = False

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@/{database}?host={self.socket_dir}&port={PORT}"

    def _cmd(self, *args: str) -> list[str]:
        if self._run_as is None:
            return list(args)
        return ["runuser", "-u", self._run_as, "--", *args]

    def start(self) -> None:
        initdb, pg_ctl = find_program("initdb"), find_program("pg_ctl")
        assert initdb is not None and pg_ctl is not None
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            self._run_as = _unprivileged_user()
            entry = pwd.getpwnam(self._run_as)
            for path in (self.folder, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.folder.chmod(0o755)
        self.socket_dir.chmod(0o755)
        _run(
            self._cmd(
                initdb,
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ),
            START_TIMEOUT_S,
        )
        options = (
            f"-k {self.socket_dir} -p {PORT} -c listen_addresses='' -c fsync=on "
            "-c max_connections=60"
        )
        _run(
            self._cmd(
                pg_ctl,
                "-D",
                str(self.data),
                "-l",
                str(self.folder / "server.log"),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "-o",
                options,
                "start",
            ),
            START_TIMEOUT_S + 10,
        )
        self.running = True

    def new_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        self._count += 1
        name = f"ledger{self._count}"
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        pg_ctl = find_program("pg_ctl")
        if self.running and pg_ctl is not None:
            self.running = False
            try:
                _run(
                    self._cmd(
                        pg_ctl,
                        "-D",
                        str(self.data),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        str(STOP_TIMEOUT_S),
                        "stop",
                    ),
                    STOP_TIMEOUT_S + 10,
                )
            except (AssertionError, subprocess.TimeoutExpired):
                _kill_postmaster(self.data)
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise AssertionError("no unprivileged user (postgres, nobody) to run PostgreSQL as")


def _run(cmd: list[str], timeout: float) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


def _kill_postmaster(data: Path) -> None:
    pid_file = data / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 9)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.1)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def postgres_or_skip(server: PostgresServer | str) -> PostgresServer:
    """The session's server, or skip saying why there is none."""
    if isinstance(server, str):
        pytest.skip(f"PostgreSQL engine not tested: {server}")
    return server
