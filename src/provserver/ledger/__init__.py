"""The issuance ledger: the server's system of record, on SQLite or PostgreSQL.

* :mod:`.model`: what it holds (devices, issuances, events, runs) and the operations;
* :mod:`.lifecycle`: the device lifecycle rules (resume, supersede, refusals);
* :mod:`.base`: the engine interface (:class:`Ledger`), streaming queries included;
* :mod:`.sql`: the SQL shared by the engines; :mod:`.sqlite`, :mod:`.postgresql`: the engines
  and their numbered migration scripts (``migrations/<engine>/NNNN_name.sql``);
* :mod:`.store`: the server's record store over a ledger (group commit, the TSV signing log
  and certs folder written from the same batches, crash recovery, write failures).

Engines are chosen by name or URL (:func:`open_ledger`), registered in :data:`ENGINES` the way
signer back-ends and HAL drivers are (:class:`atcaprov.registry.Registry`); an engine whose
library is missing (psycopg) fails only when asked for. See ``docs/ledger.md``.
"""

from __future__ import annotations

from pathlib import Path

from atcaprov.registry import Registry

from .base import (
    Ledger,
    LedgerError,
    LedgerSchemaError,
    LedgerUnavailableError,
    LedgerWriteError,
)
from .model import (
    Device,
    DeviceHistory,
    Event,
    EventKind,
    Issuance,
    IssuanceState,
    IssueOp,
    IssueResult,
    RecordFilter,
    RefusalOp,
    ReportOp,
    ReportResult,
    Run,
    ledger_time,
)

ENGINES: Registry[Ledger] = Registry(
    "ledger engine",
    {"sqlite": "provserver.ledger.sqlite", "postgresql": "provserver.ledger.postgresql"},
    unknown=LedgerUnavailableError,
    unloadable=lambda message, exc: LedgerUnavailableError(
        f"{message} (install it with: pip install 'atcaprov[postgresql]')"
        if "psycopg" in str(exc)
        else message
    ),
)
DEFAULT_SQLITE_FILE = "ledger.sqlite3"


def ledger_spec_engine(spec: str | None) -> str:
    """The engine name of a ``--ledger`` value (None or ``sqlite...``: sqlite)."""
    if spec is None or spec == "":
        return "sqlite"
    scheme = spec.split(":", 1)[0].lower()
    return "postgresql" if scheme in ("postgres", "postgresql") else scheme


def open_ledger(spec: str | None, data_dir: Path | None, *, read_only: bool = False) -> Ledger:
    """The (not yet opened) ledger a ``--ledger`` value names.

    * None, ``""`` or ``sqlite``: ``DATA_DIR/ledger.sqlite3``;
    * ``sqlite:///abs/path.sqlite3`` or ``sqlite:relative/path``: that SQLite file;
    * ``postgresql://...`` (or ``postgres://``): that PostgreSQL database.
    """
    engine = ledger_spec_engine(spec)
    if engine == "sqlite":
        rest = "" if spec is None else spec.split(":", 1)[1] if ":" in spec else ""
        if rest.startswith("//"):
            rest = rest[2:]
        if rest:
            path = Path(rest)
        elif data_dir is not None:
            path = data_dir / DEFAULT_SQLITE_FILE
        else:
            raise LedgerUnavailableError("the SQLite ledger needs a data folder or a path")
        return ENGINES.open("sqlite", path=path, read_only=read_only)
    assert spec is not None
    if engine == "postgresql":
        return ENGINES.open("postgresql", url=spec, read_only=read_only)
    return ENGINES.open(engine, spec=spec, read_only=read_only)


__all__ = [
    "DEFAULT_SQLITE_FILE",
    "ENGINES",
    "Device",
    "DeviceHistory",
    "Event",
    "EventKind",
    "Issuance",
    "IssuanceState",
    "IssueOp",
    "IssueResult",
    "Ledger",
    "LedgerError",
    "LedgerSchemaError",
    "LedgerUnavailableError",
    "LedgerWriteError",
    "RecordFilter",
    "RefusalOp",
    "ReportOp",
    "ReportResult",
    "Run",
    "ledger_spec_engine",
    "ledger_time",
    "open_ledger",
]
