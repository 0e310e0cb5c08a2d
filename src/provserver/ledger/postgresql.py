"""The PostgreSQL ledger engine: one database shared by several provisioning servers.

``--ledger postgresql://user@host/dbname`` (any libpq URL: ``?host=/run/postgresql`` for a
unix socket, ``sslmode=...``; the password from the URL, ``PGPASSWORD`` or ``~/.pgpass``).
Needs psycopg 3 and psycopg_pool (``pip install 'atcaprov[postgresql]'``).

Several servers write at once: every batch transaction first takes advisory transaction locks
on the serial numbers and public keys it touches (sorted, so two servers never wait for each
other in a circle; a deadlock PostgreSQL still reports makes the batch run again), so the
lifecycle rules see a device exactly as the other servers left it. The unique constraints
(a public key belongs to one serial number, a certificate serial number to one certificate
per issuer) stand behind the locks. Migrations run under an advisory lock too, so servers
started together migrate once. ``lock_timeout`` bounds every wait for a lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from . import ENGINES
from .base import LedgerError, LedgerUnavailableError, LedgerWriteError
from .sql import Cursor, SqlLedger, UniqueViolation

_DEVICE_LOCKS = 0x61707276  # "aprv": advisory lock class of serial numbers
_KEY_LOCKS = 0x6170726B  # "aprk": advisory lock class of public keys
_SCHEMA_LOCK = 0x6170727300000000  # "aprs": migrations


def _lock_id(text: str) -> int:
    """A signed 32-bit number for an advisory lock (collisions only serialise more)."""
    return int.from_bytes(hashlib.sha256(text.encode("ascii")).digest()[:4], "big", signed=True)


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = (f"{parts.username}@" if parts.username else "") + host
    if parts.port:
        netloc += f":{parts.port}"
    query = f"?{parts.query}" if parts.query and "password" not in parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


@ENGINES.register("postgresql")
class PostgresLedger(SqlLedger):
    """A ledger in the PostgreSQL database at ``url``."""

    placeholder = "%s"
    migrations = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        read_only: bool = False,
        max_connections: int = 4,
        connect_timeout: float = 10.0,
        lock_timeout: float = 10.0,
        statement_timeout: float = 30.0,
    ) -> None:
        super().__init__(read_only=read_only)
        self.url = url
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._options = (
            f"-c lock_timeout={int(lock_timeout * 1000)} "
            f"-c statement_timeout={int(statement_timeout * 1000)}"
        )
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] | None = None

    @property
    def description(self) -> str:
        return f"PostgreSQL ledger {describe_url(self.url)}"

    def open(self) -> None:
        if self._pool is not None:
            return
        kwargs: dict[str, Any] = {
            "connect_timeout": max(1, int(self.connect_timeout)),
            "options": self._options,
        }
        try:  # one plain connection first: its error says why (refused, no such database...)
            psycopg.connect(self.url, **kwargs).close()
        except psycopg.Error as exc:
            raise LedgerUnavailableError(
                f"cannot connect to the {self.description}: {_first_line(exc)}"
            ) from exc
        pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            self.url,
            min_size=1,
            max_size=self.max_connections,
            kwargs=kwargs,
            open=False,
            check=ConnectionPool.check_connection,
            name="atcaprov-ledger",
            timeout=self.connect_timeout,
        )
        try:
            pool.open(wait=True, timeout=self.connect_timeout)
        except psycopg.Error as exc:
            pool.close()
            raise LedgerUnavailableError(
                f"cannot connect to the {self.description}: {_first_line(exc)}"
            ) from exc
        self._pool = pool
        try:
            self._migrate()
        except LedgerError:
            self.close()
            raise

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=5.0)

    # -- engine primitives -------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        if self._pool is None:
            raise LedgerWriteError(f"the {self.description} is not open", transient=False)
        try:
            with self._pool.connection() as conn:
                if self.read_only:
                    raise LedgerWriteError(
                        f"the {self.description} is open read-only", transient=False
                    )
                with conn.cursor() as cur:
                    yield cur
                conn.commit()
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            raise LedgerWriteError(f"{self.description}: {_first_line(exc)}", retry=True) from exc
        except psycopg.errors.IntegrityError as exc:
            raise LedgerWriteError(
                f"{self.description}: {_first_line(exc)}", transient=False
            ) from exc
        except psycopg.OperationalError as exc:  # connection lost, server shutting down...
            raise LedgerWriteError(f"{self.description}: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            transient = isinstance(
                exc,
                (psycopg.errors.DiskFull, psycopg.errors.LockNotAvailable,
                 psycopg.errors.QueryCanceled, psycopg.errors.AdminShutdown),
            )  # fmt: skip
            raise LedgerWriteError(
                f"{self.description}: {_first_line(exc)}", transient=transient
            ) from exc

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        if self._pool is None:
            raise LedgerError(f"the {self.description} is not open")
        try:
            with self._pool.connection() as conn, conn.cursor() as cur:
                yield cur
        except psycopg.Error as exc:
            raise LedgerError(f"cannot read the {self.description}: {_first_line(exc)}") from exc

    @contextmanager
    def _savepoint(self, cur: Cursor) -> Iterator[None]:
        cur.execute("SAVEPOINT ledger_op")
        try:
            yield
        except psycopg.errors.UniqueViolation as exc:
            cur.execute("ROLLBACK TO SAVEPOINT ledger_op")
            cur.execute("RELEASE SAVEPOINT ledger_op")
            raise UniqueViolation(exc.diag.constraint_name or str(exc)) from exc
        cur.execute("RELEASE SAVEPOINT ledger_op")

    def _insert(self, cur: Cursor, sql: str, params: Sequence[Any]) -> int:
        cur.execute(self.q(sql + " RETURNING id"), params)
        return int(cur.fetchone()[0])

    def _table_exists(self, cur: Cursor, name: str) -> bool:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
        return bool(cur.fetchone()[0])

    def _lock(self, cur: Cursor, device_sns: list[str], public_keys: list[str]) -> None:
        for lock_class, values in ((_DEVICE_LOCKS, device_sns), (_KEY_LOCKS, public_keys)):
            ids = sorted({_lock_id(value) for value in values})
            if ids:
                cur.execute(
                    "SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::int4[]) AS k",
                    (lock_class, ids),
                )
                cur.fetchone()

    def _lock_schema(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        cur.fetchone()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
