"""The ledger engine interface: what every engine (SQLite, PostgreSQL) does.

Synchronous on purpose: the server calls an engine from one worker thread per batch (the group
commit of :mod:`provserver.ledger.store`), command-line tools call it directly. An engine object
is used by one thread at a time for writes; its query methods may be used from another thread.

Writing
    :meth:`Ledger.commit` applies a batch of operations in **one transaction** and returns one
    result per operation, in order: when it returns, the whole batch is durable (SQLite: WAL
    synced; PostgreSQL: committed). If it raises :class:`LedgerWriteError`, nothing of the batch
    is stored. Each operation sees the effects of the ones before it in the batch.

Querying (for the records command line, exports and the server's own recovery)
    Every ``iter_*`` method streams: it fetches pages of ``page_size`` rows by id (keyset
    pagination, no transaction or cursor held between pages), so memory stays flat for a
    million rows and a running server is never blocked. Rows come in id order, which is commit
    order within one server run. ``after_id`` resumes after the last id seen.

    * :meth:`Ledger.iter_issuances` (filters: :class:`~.model.RecordFilter` ``since``,
      ``until``, ``signer``, ``station``, ``state``, ``device_sn``; ``run_id``);
    * :meth:`Ledger.iter_events` (same filters, plus ``kinds``);
    * :meth:`Ledger.device_history`: one serial number's device row, every issuance and every
      event, oldest first;
    * :meth:`Ledger.runs` / :meth:`Ledger.run`: the server runs that wrote the ledger.

Opening
    :meth:`Ledger.open` connects and brings the schema up to date by applying the engine's
    numbered migration scripts (``migrations/<engine>/NNNN_name.sql``) it has not applied yet,
    each in its own transaction, recorded in the ``ledger_migrations`` table. ``read_only=True``
    applies nothing and refuses a ledger whose schema is not the current one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import ClassVar, TypeVar

from atcaprov.errors import AtcaprovError

from .model import DeviceHistory, Event, Issuance, LedgerOp, LedgerResult, RecordFilter, Run

DEFAULT_PAGE_SIZE = 500
_L = TypeVar("_L", bound="Ledger")


class LedgerError(AtcaprovError):
    """The ledger cannot be opened, read or written."""


class LedgerUnavailableError(LedgerError):
    """The ledger cannot be reached or opened (no such database, server down, bad URL)."""


class LedgerWriteError(LedgerError):
    """A write transaction failed; nothing of it is stored.

    ``transient`` tells whether trying again later may work (disk full, connection lost) or a
    restart is needed (the database file is damaged, the schema changed underneath); ``retry``
    that the same transaction may simply be run again at once (a deadlock between servers);
    ``integrity`` that a unique or foreign-key constraint refused one of its statements.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool = True,
        retry: bool = False,
        integrity: bool = False,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry = retry
        self.integrity = integrity


class LedgerSchemaError(LedgerError):
    """The schema is newer than this program, or older and the ledger was opened read-only."""


class Ledger(ABC):
    """One ledger (a database). Engines register in :data:`provserver.ledger.ENGINES`."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def description(self) -> str:
        """Where the ledger is, for messages (no password): ``SQLite /data/ledger.sqlite3``."""

    @property
    @abstractmethod
    def ledger_id(self) -> str:
        """A random id made when the ledger was created (tells two ledgers apart)."""

    @property
    @abstractmethod
    def schema_version(self) -> int:
        """The number of the last migration applied."""

    @abstractmethod
    def open(self) -> None:
        """Connect and migrate (see the module docstring). Raises :class:`LedgerError`."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; idempotent."""

    # -- runs -------------------------------------------------------------------------------
    @abstractmethod
    def start_run(self, *, server: str, data_dir: str, stamp: str, started_at: str) -> int:
        """Record the start of a server run; returns its id. Raises LedgerWriteError."""

    @abstractmethod
    def end_run(self, run_id: int, *, stopped_at: str, note: str = "") -> None:
        """Record the end of a run (``note``: e.g. ``recovered after a crash``)."""

    @abstractmethod
    def run(self, run_id: int) -> Run | None: ...

    @abstractmethod
    def runs(self) -> Iterator[Run]:
        """Every run, oldest first."""

    # -- writes -----------------------------------------------------------------------------
    @abstractmethod
    def commit(
        self, ops: Sequence[LedgerOp], *, run_id: int, allow_reprovision: bool = False
    ) -> list[LedgerResult]:
        """Apply ``ops`` in one transaction (see the module docstring)."""

    @abstractmethod
    def probe(self) -> None:
        """A tiny write transaction: raises LedgerWriteError while writes still fail."""

    def upkeep(self) -> None:  # noqa: B027 (an optional hook: most engines need none)
        """Work that can wait for a moment between commits, called by the record store from
        its files thread (never the committing one). Default: nothing. SQLite: copy the WAL
        back into the database file off the commit path."""

    # -- queries ----------------------------------------------------------------------------
    @abstractmethod
    def iter_issuances(
        self,
        where: RecordFilter | None = None,
        *,
        run_id: int | None = None,
        after_id: int = 0,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[Issuance]: ...

    @abstractmethod
    def iter_events(
        self,
        where: RecordFilter | None = None,
        *,
        run_id: int | None = None,
        after_id: int = 0,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[Event]: ...

    @abstractmethod
    def device_history(self, device_sn: str) -> DeviceHistory:
        """Everything about one serial number (hex, any case); empty lists if unknown."""

    @abstractmethod
    def issuance(self, issuance_id: int) -> Issuance | None: ...

    def __enter__(self: _L) -> _L:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
