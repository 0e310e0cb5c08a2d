"""The ledger in SQL, shared by the engines: migrations, the batch commit, the queries.

An engine (:mod:`.sqlite`, :mod:`.postgresql`) supplies connections and the few things that
differ: its placeholder, how a new row's id is returned, how a write transaction starts and
which rows it locks (PostgreSQL: advisory locks on the serial numbers and public keys of the
batch, taken in sorted order, so that several servers on one ledger serialise per device and
never deadlock), and how its errors read. Everything else (the schema's use, the lifecycle
rules of :mod:`.lifecycle`, streaming queries) lives here once.

SQL is written with ``?`` placeholders and no literal ``%`` or ``?`` in the text; an engine
with another placeholder rewrites them (:meth:`SqlLedger.q`).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from importlib import resources
from typing import Any, ClassVar, Protocol

from atcaprov.return_codes import ReturnCode

from ..records import utc_timestamp
from .base import DEFAULT_PAGE_SIZE, Ledger, LedgerSchemaError, LedgerWriteError
from .lifecycle import Brief, Snapshot, decide, short_key
from .model import (
    Device,
    DeviceHistory,
    Event,
    EventKind,
    Issuance,
    IssuanceState,
    IssueOp,
    IssueResult,
    LedgerOp,
    LedgerResult,
    RecordFilter,
    RefusalOp,
    ReportOp,
    ReportResult,
    Run,
    ledger_time,
)

COMMIT_ATTEMPTS = 5  # a batch that meets a deadlock / serialisation failure is tried again
_CA_CACHE_LIMIT = 64
_MIGRATION_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_ISSUANCE_COLUMNS = (
    "i.id, i.device_sn, i.public_key, i.issuer_key_id, i.signer_id, i.cert_sn, i.state, "
    "i.issued_at, i.updated_at, i.signer, i.station, i.run_id, i.device_cert, "
    "i.signer_cert_id, i.root_cert_id, i.device_type"
)
_EVENT_COLUMNS = (
    "e.id, e.time, e.kind, e.device_sn, e.issuance_id, e.run_id, e.station, e.signer, "
    "e.public_key, e.cert_sn, e.code, e.stage, e.part_state, e.detail"
)
_RUN_COLUMNS = "id, server, data_dir, stamp, started_at, stopped_at, note"


class Cursor(Protocol):
    """The DB-API cursor surface used here (sqlite3 and psycopg both have it)."""

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class UniqueViolation(Exception):
    """An engine's unique-constraint error, translated: ``constraint`` names what clashed."""

    def __init__(self, constraint: str) -> None:
        super().__init__(constraint)
        self.constraint = constraint


def migration_scripts(engine: str) -> list[tuple[int, str, str]]:
    """The numbered migration scripts of ``engine``: (version, name, SQL text), in order."""
    folder = resources.files("provserver.ledger").joinpath("migrations").joinpath(engine)
    found: list[tuple[int, str, str]] = []
    for entry in folder.iterdir():
        m = _MIGRATION_NAME.fullmatch(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (version, name, _) in enumerate(found, start=1):
        if version != expected:
            raise LedgerSchemaError(f"{engine} migrations: {version:04d}_{name} is out of order")
    return found


def split_statements(script: str) -> list[str]:
    """The statements of a migration script (``--`` comments dropped; ``;`` ends a line)."""
    text = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
    return [part.strip() for part in re.split(r";\s*(?:\n|$)", text) if part.strip()]


def _like(value: str) -> str:
    escaped = value.upper().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SqlLedger(Ledger):
    """The engine-independent part of a SQL ledger."""

    placeholder: ClassVar[str] = "?"
    migrations: ClassVar[str]  # folder name under migrations/
    # True where a write transaction shuts out every other writer from its first statement
    # (SQLite's BEGIN IMMEDIATE): what a commit reads stays true until it ends, so the checks
    # of the snapshot foresee every unique constraint and an op's statements run without a
    # savepoint of their own. The constraints stay as the backstop: should one refuse a
    # statement all the same, the batch is run again with a savepoint per op.
    serialized_writes: ClassVar[bool] = False

    def __init__(self, *, read_only: bool = False) -> None:
        self.read_only = read_only
        self._ledger_id = ""
        self._schema_version = 0
        self._ca_ids: dict[str, int] = {}  # sha256 -> ca_certs.id (committed rows only)
        self._ca_ders: dict[int, bytes] = {}  # ca_certs.id -> DER
        self._queries: dict[str, str] = {}

    # -- what an engine supplies -------------------------------------------------------------
    @abstractmethod
    def _write(self) -> AbstractContextManager[Cursor]:
        """A write transaction: commits when the block ends, rolls back if it raises.

        Database errors come out as :class:`LedgerWriteError` (``retry`` set for a deadlock or
        serialisation failure worth trying again) or :class:`UniqueViolation`.
        """

    @abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]:
        """A connection for queries (errors come out as LedgerError)."""

    @abstractmethod
    def _insert(self, cur: Cursor, sql: str, params: Sequence[Any]) -> int:
        """Run an INSERT and return the new row's id."""

    @abstractmethod
    def _savepoint(self, cur: Cursor) -> AbstractContextManager[None]:
        """A savepoint: the block's statements are undone if it raises UniqueViolation."""

    @abstractmethod
    def _table_exists(self, cur: Cursor, name: str) -> bool: ...

    def _lock(self, cur: Cursor, device_sns: list[str], public_keys: list[str]) -> None:
        """Lock what the batch touches (engines with one writer at a time need nothing)."""

    def _lock_schema(self, cur: Cursor) -> None:
        """Serialise migrations between servers starting together (one writer: nothing)."""

    # -- helpers ---------------------------------------------------------------------------------
    def q(self, sql: str) -> str:
        """``sql`` with this engine's placeholder."""
        if self.placeholder == "?":
            return sql
        out = self._queries.get(sql)
        if out is None:
            out = self._queries[sql] = sql.replace("?", self.placeholder)
        return out

    @property
    def ledger_id(self) -> str:
        return self._ledger_id

    @property
    def schema_version(self) -> int:
        return self._schema_version

    # -- migrations --------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Apply the pending migration scripts (or check, read-only); read the ledger id."""
        scripts = migration_scripts(self.migrations)
        latest = scripts[-1][0] if scripts else 0
        if self.read_only:
            with self._read() as cur:
                version = self._current_version(cur)
                if version != latest:
                    raise LedgerSchemaError(
                        f"{self.description}: schema version {version}, this program uses "
                        f"{latest}; start the server once to migrate it"
                        if version < latest
                        else f"{self.description}: schema version {version} is newer than this "
                        f"program ({latest}); use a newer atcaprov"
                    )
                self._ledger_id = self._read_ledger_id(cur)
                self._schema_version = version
            return
        with self._write() as cur:
            self._lock_schema(cur)
            cur.execute(
                "CREATE TABLE IF NOT EXISTS ledger_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            version = self._current_version(cur)
            if version > latest:
                raise LedgerSchemaError(
                    f"{self.description}: schema version {version} is newer than this program "
                    f"({latest}); use a newer atcaprov"
                )
            for number, name, script in scripts[version:]:
                for statement in split_statements(script):
                    cur.execute(statement)
                cur.execute(
                    self.q(
                        "INSERT INTO ledger_migrations (version, name, applied_at) VALUES (?, ?, ?)"
                    ),
                    (number, name, utc_timestamp()),
                )
            if latest:
                cur.execute(
                    self.q(
                        "INSERT INTO ledger_info (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO NOTHING"
                    ),
                    ("ledger_id", secrets.token_hex(16)),
                )
                self._ledger_id = self._read_ledger_id(cur)
            self._schema_version = latest

    def _current_version(self, cur: Cursor) -> int:
        if not self._table_exists(cur, "ledger_migrations"):
            return 0
        cur.execute("SELECT max(version) FROM ledger_migrations")
        row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _read_ledger_id(self, cur: Cursor) -> str:
        cur.execute(self.q("SELECT value FROM ledger_info WHERE key = ?"), ("ledger_id",))
        row = cur.fetchone()
        return str(row[0]) if row else ""

    # -- runs --------------------------------------------------------------------------------
    def start_run(self, *, server: str, data_dir: str, stamp: str, started_at: str) -> int:
        with self._write() as cur:
            return self._insert(
                cur,
                "INSERT INTO runs (server, data_dir, stamp, started_at) VALUES (?, ?, ?, ?)",
                (server, data_dir, stamp, started_at),
            )

    def end_run(self, run_id: int, *, stopped_at: str, note: str = "") -> None:
        with self._write() as cur:
            cur.execute(
                self.q("UPDATE runs SET stopped_at = ?, note = ? WHERE id = ?"),
                (stopped_at, note, run_id),
            )

    def run(self, run_id: int) -> Run | None:
        with self._read() as cur:
            cur.execute(self.q(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?"), (run_id,))
            row = cur.fetchone()
        return None if row is None else Run(*row)

    def runs(self) -> Iterator[Run]:
        after = 0
        while True:
            with self._read() as cur:
                cur.execute(
                    self.q(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id > ? ORDER BY id LIMIT ?"),
                    (after, DEFAULT_PAGE_SIZE),
                )
                rows = cur.fetchall()
            for row in rows:
                yield Run(*row)
            if len(rows) < DEFAULT_PAGE_SIZE:
                return
            after = rows[-1][0]

    def probe(self) -> None:
        with self._write() as cur:
            cur.execute(
                self.q(
                    "INSERT INTO ledger_info (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                ),
                ("last_probe", utc_timestamp()),
            )

    # -- the batch commit ----------------------------------------------------------------------
    def commit(
        self, ops: Sequence[LedgerOp], *, run_id: int, allow_reprovision: bool = False
    ) -> list[LedgerResult]:
        if not ops:
            return []
        sns = sorted({op.device_sn for op in ops if not isinstance(op, RefusalOp)})
        keys = sorted({op.public_key for op in ops if isinstance(op, IssueOp)})
        guarded = not self.serialized_writes
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            new_ca: dict[str, int] = {}
            try:
                with self._write() as cur:
                    self._lock(cur, sns, keys)
                    results = [
                        self._apply(cur, op, run_id, allow_reprovision, new_ca, guarded)
                        for op in ops
                    ]
            except LedgerWriteError as exc:
                if exc.integrity and not guarded and attempt < COMMIT_ATTEMPTS:
                    guarded = True  # a constraint the snapshot did not foresee: op by op
                    continue
                if exc.retry and attempt < COMMIT_ATTEMPTS:
                    continue
                raise
            except UniqueViolation as exc:  # outside any savepoint: a bug in this module
                raise LedgerWriteError(
                    f"{self.description}: unexpected unique constraint {exc.constraint}",
                    transient=False,
                ) from exc
            if len(self._ca_ids) + len(new_ca) > _CA_CACHE_LIMIT:
                self._ca_ids.clear()
            self._ca_ids.update(new_ca)
            return results
        raise AssertionError("unreachable")  # pragma: no cover

    def _apply(
        self,
        cur: Cursor,
        op: LedgerOp,
        run_id: int,
        allow_reprovision: bool,
        new_ca: dict[str, int],
        guarded: bool,
    ) -> LedgerResult:
        if isinstance(op, IssueOp):
            return self._apply_issue(cur, op, run_id, allow_reprovision, new_ca, guarded)
        if isinstance(op, ReportOp):
            return self._apply_report(cur, op, run_id)
        event = self._event(
            cur, op.time, EventKind.REFUSED, op.device_sn, None, run_id, op.station, op.signer,
            op.public_key, "", code=op.code.name, detail=op.message,
        )  # fmt: skip
        return IssueResult("refused", code=op.code, message=op.message, event=event)

    def _refuse(
        self, cur: Cursor, op: IssueOp, run_id: int, code: ReturnCode, message: str
    ) -> IssueResult:
        event = self._event(
            cur, op.time, EventKind.REFUSED, op.device_sn, None, run_id, op.station, op.signer,
            op.public_key, op.cert_sn, code=code.name, detail=message,
        )  # fmt: skip
        return IssueResult("refused", code=code, message=message, event=event)

    def _apply_issue(
        self,
        cur: Cursor,
        op: IssueOp,
        run_id: int,
        allow_reprovision: bool,
        new_ca: dict[str, int],
        guarded: bool,
    ) -> IssueResult:
        snap = self._snapshot(cur, op)
        decision = decide(
            op.device_sn, op.public_key, op.issuer_key_id, snap,
            allow_reprovision=allow_reprovision,
        )  # fmt: skip
        if decision.action == "refuse":
            assert decision.code is not None
            return self._refuse(cur, op, run_id, decision.code, decision.message)
        if decision.action == "reissue":
            assert decision.reissue_id is not None
            return self._reissue(cur, op, run_id, decision.reissue_id, decision.supersede_id)
        if snap.serial_clash is not None:  # what the constraint (issuer_key_id, cert_sn) says
            return self._refuse(
                cur, op, run_id, ReturnCode.CERT_SERIAL_IN_USE,
                self._serial_message(op, snap.serial_clash),
            )  # fmt: skip
        # Between servers sharing a ledger (no serialized writes) a certificate serial number
        # can still be taken after the snapshot: the unique constraint (issuer_key_id, cert_sn)
        # refuses it, and the savepoint undoes this op only.
        try:
            with self._savepoint(cur) if guarded else contextlib.nullcontext():
                signer_ca = self._ca_id(cur, op.signer_cert, new_ca)
                root_ca = None if op.root_cert is None else self._ca_id(cur, op.root_cert, new_ca)
                cur.execute(
                    self.q(
                        "INSERT INTO devices (device_sn, state, current_issuance, first_seen, "
                        "updated_at) VALUES (?, ?, NULL, ?, ?) "
                        "ON CONFLICT (device_sn) DO NOTHING"
                    ),
                    (op.device_sn, IssuanceState.SIGNED.value, op.time, op.time),
                )
                cur.execute(
                    self.q(
                        "INSERT INTO key_owners (public_key, device_sn) VALUES (?, ?) "
                        "ON CONFLICT (public_key) DO NOTHING"
                    ),
                    (op.public_key, op.device_sn),
                )
                issuance_id = self._insert(
                    cur,
                    "INSERT INTO issuances (device_sn, public_key, issuer_key_id, signer_id, "
                    "cert_sn, state, issued_at, updated_at, signer, station, run_id, device_cert, "
                    "signer_cert_id, root_cert_id, device_type) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (op.device_sn, op.public_key, op.issuer_key_id, op.signer_id, op.cert_sn,
                     IssuanceState.SIGNED.value, op.time, op.time, op.signer, op.station, run_id,
                     op.device_cert, signer_ca, root_ca, op.device_type),
                )  # fmt: skip
                if decision.supersede_id is not None:
                    self._supersede(cur, decision.supersede_id, op, run_id, issuance_id)
                self._set_current(cur, op.device_sn, issuance_id, IssuanceState.SIGNED, op.time)
                event = self._event(
                    cur, op.time, EventKind.SIGNED, op.device_sn, issuance_id, run_id, op.station,
                    op.signer, op.public_key, op.cert_sn,
                )  # fmt: skip
        except UniqueViolation as exc:  # another server got there first (shared ledger)
            for key in new_ca:  # ids made inside the undone savepoint do not exist
                new_ca.pop(key, None)
            if "key_owners" in exc.constraint:
                owner = self._key_owner(cur, op.public_key) or "another device"
                return self._refuse(
                    cur, op, run_id, ReturnCode.PUBLIC_KEY_REUSED,
                    f"public key {short_key(op.public_key)} was already issued to device "
                    f"{owner}; a key belongs to one chip, device {op.device_sn} is refused",
                )  # fmt: skip
            cur.execute(
                self.q(
                    "SELECT id, device_sn FROM issuances WHERE issuer_key_id = ? AND cert_sn = ?"
                ),
                (op.issuer_key_id, op.cert_sn),
            )
            row = cur.fetchone()
            if row is None:
                raise LedgerWriteError(
                    f"{self.description}: unique constraint {exc.constraint} failed", transient=True
                ) from exc
            return self._refuse(
                cur, op, run_id, ReturnCode.CERT_SERIAL_IN_USE, self._serial_message(op, row)
            )
        issuance = Issuance.new(op, issuance_id, run_id)
        return IssueResult("issued", issuance, superseded=decision.supersede_id, event=event)

    @staticmethod
    def _serial_message(op: IssueOp, clash: Sequence[Any]) -> str:
        return (
            f"signer {op.issuer_key_id[:8]}... already issued certificate serial number "
            f"{op.cert_sn} (issuance {clash[0]}, device {clash[1]}); a different certificate "
            "with the same serial number is never sent"
        )

    def _reissue(
        self, cur: Cursor, op: IssueOp, run_id: int, issuance_id: int, supersede: int | None
    ) -> IssueResult:
        issuance = self._load_issuance(cur, issuance_id)
        assert issuance is not None
        state = (
            IssuanceState.INSTALLED
            if issuance.state is IssuanceState.INSTALLED
            else IssuanceState.SIGNED
        )
        if supersede is not None:
            self._supersede(cur, supersede, op, run_id, issuance_id)
        if state is not issuance.state:
            cur.execute(
                self.q("UPDATE issuances SET state = ?, updated_at = ? WHERE id = ?"),
                (state.value, op.time, issuance_id),
            )
        self._set_current(cur, op.device_sn, issuance_id, state, op.time)
        event = self._event(
            cur, op.time, EventKind.REISSUED, op.device_sn, issuance_id, run_id, op.station,
            issuance.signer, op.public_key, issuance.cert_sn,
            detail=f"certificate of issuance {issuance_id} (issued {issuance.issued_at}) sent "
            "again, byte for byte",
        )  # fmt: skip
        return IssueResult(
            "reissued", replace(issuance, state=state), superseded=supersede, event=event
        )

    def _apply_report(self, cur: Cursor, op: ReportOp, run_id: int) -> ReportResult:
        current = self._current(cur, op.device_sn)
        target: Brief | None = current
        if current is None or current.public_key != op.public_key:
            cur.execute(
                self.q(
                    "SELECT id, public_key, issuer_key_id, state FROM issuances WHERE "
                    "device_sn = ? AND public_key = ? ORDER BY id DESC LIMIT 1"
                ),
                (op.device_sn, op.public_key),
            )
            row = cur.fetchone()
            target = None if row is None else Brief(row[0], row[1], row[2], IssuanceState(row[3]))
        if target is None:
            event = self._event(
                cur, op.time, op.outcome, op.device_sn, None, run_id, op.station, "",
                op.public_key, "", code=op.code, stage=op.stage, part_state=op.part_state,
                detail=op.message or "no certificate was issued for this serial number and key",
            )  # fmt: skip
            return ReportResult(None, None, event)
        state = target.state
        if op.outcome is EventKind.INSTALLED:
            if current is not None and current.id != target.id:
                self._supersede(cur, current.id, op, run_id, target.id)
            state = IssuanceState.INSTALLED
            self._set_current(cur, op.device_sn, target.id, state, op.time)
        elif state in (IssuanceState.SIGNED, IssuanceState.FAILED, IssuanceState.ABANDONED):
            state = IssuanceState(op.outcome.value)
            if current is not None and current.id == target.id:
                self._set_current(cur, op.device_sn, target.id, state, op.time)
        if state is not target.state:
            cur.execute(
                self.q("UPDATE issuances SET state = ?, updated_at = ? WHERE id = ?"),
                (state.value, op.time, target.id),
            )
        cert_sn, signer = self._issuance_label(cur, target.id)
        event = self._event(
            cur, op.time, op.outcome, op.device_sn, target.id, run_id, op.station, signer,
            op.public_key, cert_sn, code=op.code, stage=op.stage, part_state=op.part_state,
            detail=op.message,
        )  # fmt: skip
        return ReportResult(target.id, state, event)

    # -- pieces of a commit ------------------------------------------------------------------
    def _snapshot(self, cur: Cursor, op: IssueOp) -> Snapshot:
        """What the lifecycle rules need, in one query: the latest issuance of this device,
        key and issuer, the key's owner, the device's current issuance, and the issuance
        holding this issuer's certificate serial number."""
        cur.execute(
            self.q(
                "SELECT m.id, m.state, k.device_sn, c.id, c.public_key, c.issuer_key_id, "
                "c.state, s.id, s.device_sn FROM (SELECT 1 AS one) AS base "
                "LEFT JOIN (SELECT id, state FROM issuances WHERE device_sn = ? AND "
                "public_key = ? AND issuer_key_id = ? ORDER BY id DESC LIMIT 1) AS m ON 1 = 1 "
                "LEFT JOIN key_owners AS k ON k.public_key = ? "
                "LEFT JOIN devices AS d ON d.device_sn = ? "
                "LEFT JOIN issuances AS c ON c.id = d.current_issuance "
                "LEFT JOIN issuances AS s ON s.issuer_key_id = ? AND s.cert_sn = ?"
            ),
            (op.device_sn, op.public_key, op.issuer_key_id, op.public_key, op.device_sn,
             op.issuer_key_id, op.cert_sn),
        )  # fmt: skip
        row = cur.fetchone()
        assert row is not None  # one row, whatever is found
        return Snapshot(
            key_owner=None if row[2] is None else str(row[2]),
            current=(
                None if row[3] is None else Brief(row[3], row[4], row[5], IssuanceState(row[6]))
            ),
            match=(
                None
                if row[0] is None
                else Brief(row[0], op.public_key, op.issuer_key_id, IssuanceState(row[1]))
            ),
            serial_clash=None if row[7] is None else (int(row[7]), str(row[8])),
        )

    def _key_owner(self, cur: Cursor, public_key: str) -> str | None:
        cur.execute(self.q("SELECT device_sn FROM key_owners WHERE public_key = ?"), (public_key,))
        row = cur.fetchone()
        return None if row is None else str(row[0])

    def _current(self, cur: Cursor, device_sn: str) -> Brief | None:
        cur.execute(
            self.q(
                "SELECT i.id, i.public_key, i.issuer_key_id, i.state FROM devices d JOIN "
                "issuances i ON i.id = d.current_issuance WHERE d.device_sn = ?"
            ),
            (device_sn,),
        )
        row = cur.fetchone()
        return None if row is None else Brief(row[0], row[1], row[2], IssuanceState(row[3]))

    def _issuance_label(self, cur: Cursor, issuance_id: int) -> tuple[str, str]:
        cur.execute(self.q("SELECT cert_sn, signer FROM issuances WHERE id = ?"), (issuance_id,))
        row = cur.fetchone()
        return (str(row[0]), str(row[1])) if row else ("", "")

    def _supersede(
        self, cur: Cursor, old_id: int, op: IssueOp | ReportOp, run_id: int, by: int
    ) -> None:
        cur.execute(
            self.q("UPDATE issuances SET state = ?, updated_at = ? WHERE id = ?"),
            (IssuanceState.SUPERSEDED.value, op.time, old_id),
        )
        cert_sn, signer = self._issuance_label(cur, old_id)
        cur.execute(self.q("SELECT public_key FROM issuances WHERE id = ?"), (old_id,))
        row = cur.fetchone()
        self._event(
            cur, op.time, EventKind.SUPERSEDED, op.device_sn, old_id, run_id, op.station, signer,
            str(row[0]) if row else "", cert_sn, detail=f"replaced by issuance {by}",
        )  # fmt: skip

    def _set_current(
        self, cur: Cursor, device_sn: str, issuance_id: int, state: IssuanceState, when: str
    ) -> None:
        cur.execute(
            self.q(
                "UPDATE devices SET current_issuance = ?, state = ?, updated_at = ? "
                "WHERE device_sn = ?"
            ),
            (issuance_id, state.value, when, device_sn),
        )

    def _event(
        self,
        cur: Cursor,
        time: str,
        kind: EventKind,
        device_sn: str,
        issuance_id: int | None,
        run_id: int,
        station: str,
        signer: str,
        public_key: str,
        cert_sn: str,
        *,
        code: str = "",
        stage: str = "",
        part_state: str = "",
        detail: str = "",
    ) -> Event:
        event_id = self._insert(
            cur,
            "INSERT INTO events (time, kind, device_sn, issuance_id, run_id, station, signer, "
            "public_key, cert_sn, code, stage, part_state, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (time, kind.value, device_sn, issuance_id, run_id, station, signer, public_key,
             cert_sn, code, stage, part_state, detail),
        )  # fmt: skip
        return Event(
            event_id, time, kind, device_sn, issuance_id, run_id, station, signer, public_key,
            cert_sn, code, stage, part_state, detail,
        )  # fmt: skip

    def _ca_id(self, cur: Cursor, der: bytes, new_ca: dict[str, int]) -> int:
        digest = hashlib.sha256(der).hexdigest()
        found = self._ca_ids.get(digest) or new_ca.get(digest)
        if found is not None:
            return found
        cur.execute(
            self.q(
                "INSERT INTO ca_certs (sha256, der) VALUES (?, ?) ON CONFLICT (sha256) DO NOTHING"
            ),
            (digest, der),
        )
        cur.execute(self.q("SELECT id FROM ca_certs WHERE sha256 = ?"), (digest,))
        ca_id = int(cur.fetchone()[0])
        new_ca[digest] = ca_id
        return ca_id

    def _ca_der(self, cur: Cursor, ca_id: int) -> bytes:
        der = self._ca_ders.get(ca_id)
        if der is None:
            cur.execute(self.q("SELECT der FROM ca_certs WHERE id = ?"), (ca_id,))
            der = bytes(cur.fetchone()[0])
            if len(self._ca_ders) >= _CA_CACHE_LIMIT:
                self._ca_ders.clear()
            self._ca_ders[ca_id] = der
        return der

    def _issuance_from_row(self, cur: Cursor, row: Sequence[Any]) -> Issuance:
        root_id = row[14]
        return Issuance(
            id=int(row[0]), device_sn=row[1], public_key=row[2], issuer_key_id=row[3],
            signer_id=row[4], cert_sn=row[5], state=IssuanceState(row[6]), issued_at=row[7],
            updated_at=row[8], signer=row[9], station=row[10], run_id=int(row[11]),
            device_cert=bytes(row[12]), signer_cert=self._ca_der(cur, int(row[13])),
            root_cert=None if root_id is None else self._ca_der(cur, int(root_id)),
            device_type=str(row[15]),
        )  # fmt: skip

    def _load_issuance(self, cur: Cursor, issuance_id: int) -> Issuance | None:
        cur.execute(
            self.q(f"SELECT {_ISSUANCE_COLUMNS} FROM issuances i WHERE i.id = ?"), (issuance_id,)
        )
        row = cur.fetchone()
        return None if row is None else self._issuance_from_row(cur, row)

    # -- queries -----------------------------------------------------------------------------
    def _conditions(
        self, where: RecordFilter | None, table: str, run_id: int | None, after_id: int
    ) -> tuple[str, list[Any]]:
        f = where or RecordFilter()
        conds = [f"{table}.id > ?"]
        params: list[Any] = [after_id]
        time_col = f"{table}.issued_at" if table == "i" else f"{table}.time"
        if run_id is not None:
            conds.append(f"{table}.run_id = ?")
            params.append(run_id)
        if f.since is not None:
            conds.append(f"{time_col} >= ?")
            params.append(ledger_time(f.since))
        if f.until is not None:
            conds.append(f"{time_col} < ?")
            params.append(ledger_time(f.until))
        if f.device_sn is not None:
            conds.append(f"{table}.device_sn = ?")
            params.append(f.device_sn.upper())
        if f.station is not None:
            conds.append(f"upper({table}.station) LIKE ? ESCAPE '\\'")
            params.append(_like(f.station))
        if f.signer is not None:
            label = f"upper({table}.signer) LIKE ? ESCAPE '\\'"
            if table == "i":
                conds.append(f"(i.issuer_key_id = ? OR i.signer_id = ? OR {label})")
                params += [f.signer.upper(), f.signer.upper(), _like(f.signer)]
            else:
                conds.append(label)
                params.append(_like(f.signer))
        if table == "i" and f.state is not None:
            conds.append("i.state = ?")
            params.append(f.state.value)
        if table == "e" and f.kinds is not None:
            if not f.kinds:
                conds.append("1 = 0")
            else:
                conds.append(f"e.kind IN ({', '.join('?' for _ in f.kinds)})")
                params += [kind.value for kind in f.kinds]
        return " AND ".join(conds), params

    def iter_issuances(
        self,
        where: RecordFilter | None = None,
        *,
        run_id: int | None = None,
        after_id: int = 0,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[Issuance]:
        last = after_id
        while True:
            cond, params = self._conditions(where, "i", run_id, last)
            with self._read() as cur:
                cur.execute(
                    self.q(
                        f"SELECT {_ISSUANCE_COLUMNS} FROM issuances i WHERE {cond} "
                        "ORDER BY i.id LIMIT ?"
                    ),
                    (*params, page_size),
                )
                page = [self._issuance_from_row(cur, row) for row in cur.fetchall()]
            yield from page
            if len(page) < page_size:
                return
            last = page[-1].id

    def iter_events(
        self,
        where: RecordFilter | None = None,
        *,
        run_id: int | None = None,
        after_id: int = 0,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[Event]:
        last = after_id
        while True:
            cond, params = self._conditions(where, "e", run_id, last)
            with self._read() as cur:
                cur.execute(
                    self.q(
                        f"SELECT {_EVENT_COLUMNS} FROM events e WHERE {cond} ORDER BY e.id LIMIT ?"
                    ),
                    (*params, page_size),
                )
                rows = cur.fetchall()
            for row in rows:
                yield _event_from_row(row)
            if len(rows) < page_size:
                return
            last = int(rows[-1][0])

    def issuance(self, issuance_id: int) -> Issuance | None:
        with self._read() as cur:
            return self._load_issuance(cur, issuance_id)

    def device_history(self, device_sn: str) -> DeviceHistory:
        sn = device_sn.upper()
        with self._read() as cur:
            cur.execute(
                self.q(
                    "SELECT device_sn, state, current_issuance, first_seen, updated_at "
                    "FROM devices WHERE device_sn = ?"
                ),
                (sn,),
            )
            row = cur.fetchone()
        device = None
        if row is not None:
            device = Device(row[0], IssuanceState(row[1]), row[2], row[3], row[4])
        where = RecordFilter(device_sn=sn)
        return DeviceHistory(
            sn, device, list(self.iter_issuances(where)), list(self.iter_events(where))
        )


def _event_from_row(row: Sequence[Any]) -> Event:
    return Event(
        id=int(row[0]), time=row[1], kind=EventKind(row[2]), device_sn=row[3],
        issuance_id=None if row[4] is None else int(row[4]), run_id=int(row[5]),
        station=row[6], signer=row[7], public_key=row[8], cert_sn=row[9], code=row[10],
        stage=row[11], part_state=row[12], detail=row[13],
    )  # fmt: skip
