"""The SQLite ledger engine: one file (default ``ledger.sqlite3`` in the data folder).

WAL journal with ``synchronous=FULL``: a commit returns once its WAL frames are synced, readers
never wait for the writer (the records command line can read while the server runs). One
connection writes (``BEGIN IMMEDIATE``: one writer at a time, across processes too, waiting up
to ``busy_timeout`` seconds), another reads; each is used by one thread at a time. SQLite's own
errors on a full disk (``SQLITE_FULL``) roll the transaction back and leave the connection
usable, so the store can try again once there is space.

The signing load inserts into B-trees keyed by random values (public keys, certificate
serial numbers), so every commit writes many pages to the WAL. The WAL is copied back into
the database by :meth:`upkeep` (a passive checkpoint on a connection of its own, from the
record store's files thread, once :data:`WAL_UPKEEP_CHANGES` rows were written since the last
one), not inside the commits that signings wait for; the writer's own automatic checkpoint
stays as a backstop, at :data:`WAL_AUTOCHECKPOINT_PAGES`. Measured with
``bench/bench_server.py``; see docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import ENGINES
from .base import LedgerError, LedgerUnavailableError, LedgerWriteError
from .sql import Cursor, SqlLedger, UniqueViolation

DEFAULT_FILE = "ledger.sqlite3"
# upkeep() copies the WAL back once the writer changed this many rows since it last did (about
# five rows per signing, each a page or so of WAL): not the WAL file's size, which stays at its
# largest once the WAL is reused from its start
WAL_UPKEEP_CHANGES = 2000
WAL_AUTOCHECKPOINT_PAGES = 20_000  # the writer's own checkpoint: only if upkeep() falls behind
_TRANSIENT = ("full", "disk i/o", "locked", "busy", "unable to open")


@ENGINES.register("sqlite")
class SqliteLedger(SqlLedger):
    """A ledger in the SQLite file ``path``."""

    migrations = "sqlite"
    serialized_writes = True  # BEGIN IMMEDIATE: one writer at a time, across processes too

    def __init__(
        self, path: str | Path, *, read_only: bool = False, busy_timeout: float = 10.0
    ) -> None:
        super().__init__(read_only=read_only)
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._upkeep_conn: sqlite3.Connection | None = None  # upkeep() only (files thread)
        self._changes_copied = 0  # the writer's total_changes at the last upkeep checkpoint
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"SQLite ledger {self.path}"

    def open(self) -> None:
        if self._reader is not None:
            return
        try:
            if self.read_only:
                if not self.path.is_file():
                    raise LedgerUnavailableError(f"{self.description}: no such file")
                self._reader = self._connect(f"file:{self.path}?mode=ro", uri=True)
            else:
                self._writer = self._connect(str(self.path))
                mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise LedgerUnavailableError(
                        f"{self.description}: cannot use a WAL journal (got {mode})"
                    )
                self._writer.execute("PRAGMA synchronous=FULL")
                self._writer.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
                self._writer.execute("PRAGMA foreign_keys=ON")
                self._reader = self._connect(str(self.path))
        except sqlite3.Error as exc:
            self.close()
            raise LedgerUnavailableError(f"cannot open the {self.description}: {exc}") from exc
        except LedgerError:
            self.close()
            raise
        try:
            self._migrate()
        except LedgerError:
            self.close()
            raise

    def _connect(self, target: str, *, uri: bool = False) -> sqlite3.Connection:
        return sqlite3.connect(
            target,
            uri=uri,
            timeout=self.busy_timeout,
            isolation_level=None,  # transactions are started explicitly
            check_same_thread=False,  # one thread at a time, under the locks above
        )

    def upkeep(self) -> None:
        if self._writer is None:
            return
        changes = self._writer.total_changes
        if changes - self._changes_copied < WAL_UPKEEP_CHANGES:
            return
        if self._upkeep_conn is None:
            self._upkeep_conn = self._connect(str(self.path))
        try:
            self._upkeep_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.OperationalError:
            # busy, or the disk is full: the next upkeep, or the writer's automatic
            # checkpoint, copies the WAL; a commit never depends on this one
            return
        self._changes_copied = changes

    def close(self) -> None:
        upkeep, self._upkeep_conn = self._upkeep_conn, None
        if upkeep is not None:
            upkeep.close()
        for conn in (self._writer, self._reader):
            if conn is not None:
                conn.close()
        self._writer = self._reader = None

    # -- engine primitives -------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        if self._writer is None:
            raise LedgerWriteError(
                f"the {self.description} is not open for writing", transient=False
            )
        with self._write_lock:
            conn = self._writer
            try:
                cur = conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                yield cur
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                text = str(exc)
                if isinstance(exc, sqlite3.IntegrityError):
                    raise LedgerWriteError(
                        f"{self.description}: {text}", transient=False, integrity=True
                    ) from exc
                transient = isinstance(exc, sqlite3.OperationalError) and any(
                    word in text.lower() for word in _TRANSIENT
                )
                raise LedgerWriteError(f"{self.description}: {text}", transient=transient) from exc
            except BaseException:
                self._rollback(conn)
                raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            # SQLite may have rolled back already (e.g. after SQLITE_FULL): nothing to undo
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        if self._reader is None:
            raise LedgerError(f"the {self.description} is not open")
        with self._read_lock:
            try:
                yield self._reader.cursor()
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot read the {self.description}: {exc}") from exc

    @contextmanager
    def _savepoint(self, cur: Cursor) -> Iterator[None]:
        cur.execute("SAVEPOINT ledger_op")
        try:
            yield
        except sqlite3.IntegrityError as exc:
            cur.execute("ROLLBACK TO SAVEPOINT ledger_op")
            cur.execute("RELEASE SAVEPOINT ledger_op")
            raise UniqueViolation(str(exc)) from exc
        cur.execute("RELEASE SAVEPOINT ledger_op")

    def _insert(self, cur: Cursor, sql: str, params: Sequence[Any]) -> int:
        cur.execute(sql, params)
        rowid = getattr(cur, "lastrowid", None)
        assert isinstance(rowid, int)
        return rowid

    def _table_exists(self, cur: Cursor, name: str) -> bool:
        cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return cur.fetchone() is not None
