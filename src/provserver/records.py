"""The server's record keeping: what a signing record holds and the store interface.

Every answered certificate request leaves one :class:`SigningRecord` (signed, reissued or
refused) in a :class:`RecordStore`. A signing also stores the device and signer certificates.
The interface is small so that back-ends can be swapped: the server's store is
:class:`provserver.ledger.store.LedgerRecordStore` (the issuance ledger, SQLite or PostgreSQL,
plus the app note's signing log and certs folder, section 2.3);
:class:`provserver.records_file.FileRecordStore` keeps only the app note's files (no device
lifecycle); :class:`MemoryRecordStore` keeps everything in lists (tests, dry runs).

Contract of every back-end: ``issue`` / ``log_signing`` return only when the record and the
certificates are durable (on disk and synced); if they raise, nothing may be assumed stored and
the server must not send the certificates. ``refuse`` / ``log_refusal`` and ``report`` have the
same durability. ``issue`` may answer with another certificate than the one offered (a resumed
device gets its earlier certificate again) or with a refusal: what it returns is what goes out.
While :attr:`RecordStore.failure` is set, records cannot be written and the server signs nothing.

This module also owns the text form of a record (:data:`TSV_COLUMNS`, :func:`sanitize_field`):
any value may come from a station (its id is free text), so control characters are escaped
(with :func:`atcaprov.text.printable`, the rules the consoles use too) and formula-looking
values are neutralised before a row is written.
"""

from __future__ import annotations

import base64
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from atcaprov.return_codes import ReturnCode, ReturnCodeError
from atcaprov.text import printable

if TYPE_CHECKING:
    from .ledger.model import IssueOp, IssueResult, RefusalOp, ReportOp, ReportResult

Result = Literal["signed", "reissued", "refused"]

TSV_COLUMNS = (
    "time",
    "station",
    "device_sn",
    "signer",
    "cert_sn",
    "public_key",
    "result",
    "reason",
)
RESULT_SIGNED: Final = "signed"
RESULT_REISSUED: Final = "reissued"  # an earlier certificate sent again (a resumed device)
RESULT_REFUSED: Final = "refused"
RESULTS = (RESULT_SIGNED, RESULT_REISSUED, RESULT_REFUSED)
MAX_FIELD_CHARS = 512
_HEX = re.compile(r"[0-9A-Fa-f]*")
_PLAIN_FIELD = re.compile(r"[ -~]*")  # printable ASCII
_FORMULA_START = ("=", "+", "-", "@")
_PEM_CERT = re.compile(
    r"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+\n-----END CERTIFICATE-----\n"
)


_Store = TypeVar("_Store", bound="RecordStore")


class RecordStoreError(ReturnCodeError):
    """The store could not make a record durable, or is not open (code SERVER_ERROR)."""

    def __init__(self, message: str) -> None:
        super().__init__(ReturnCode.SERVER_ERROR, message)


def utc_timestamp(when: datetime | None = None) -> str:
    """ISO 8601 UTC with microseconds and ``Z``: ``2026-11-21T05:13:23.123456Z``."""
    moment = datetime.now(timezone.utc) if when is None else when
    if moment.tzinfo is None:
        raise ValueError("utc_timestamp needs an aware datetime (naive times are ambiguous)")
    utc = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"  # strftime's %f costs 4x as much


@dataclass(frozen=True)
class SigningRecord:
    """One answered request, as logged.

    ``device_sn``, ``cert_sn`` and ``public_key`` are hex (empty if unknown, e.g. a refusal
    before the serial number could be read); ``signer`` names the signer (name and/or serial
    number); ``reason`` says why a request was refused (or any note for a signing).
    """

    time: str
    station: str
    device_sn: str
    signer: str
    cert_sn: str
    public_key: str
    result: Result
    reason: str = ""

    def __post_init__(self) -> None:
        for name in TSV_COLUMNS:
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"SigningRecord.{name} must be str, got {type(value).__name__}")
        if self.result not in RESULTS:
            raise ValueError(f"SigningRecord.result must be one of {RESULTS}: {self.result!r}")
        for name in ("device_sn", "cert_sn", "public_key"):
            if not _HEX.fullmatch(getattr(self, name)):
                raise ValueError(f"SigningRecord.{name} must be hex: {getattr(self, name)!r}")

    @classmethod
    def create(
        cls,
        *,
        station: str,
        device_sn: bytes | str,
        signer: str,
        result: Result,
        cert_sn: bytes | str = "",
        public_key: bytes | str = "",
        reason: str = "",
        when: datetime | None = None,
    ) -> SigningRecord:
        """A record stamped now (or ``when``); bytes values are turned into upper-case hex."""

        def hexed(value: bytes | str) -> str:
            return value.hex().upper() if isinstance(value, bytes) else value

        return cls(
            time=utc_timestamp(when),
            station=station,
            device_sn=hexed(device_sn),
            signer=signer,
            cert_sn=hexed(cert_sn),
            public_key=hexed(public_key),
            result=result,
            reason=reason,
        )

    def row(self) -> list[str]:
        """The sanitised TSV values in :data:`TSV_COLUMNS` order."""
        return [sanitize_field(getattr(self, name)) for name in TSV_COLUMNS]


def sanitize_field(value: str) -> str:
    """A value safe for one TSV cell, that still says exactly what was received.

    Control characters (tab, CR, LF, ESC, NUL, ...), Unicode line/paragraph separators and bidi
    overrides become visible escapes (``\\t``, ``\\n``, ``\\x1b``, ``\\u2028``): the rules of
    :func:`atcaprov.text.printable`, the console's too, so a cell shows what the activity log
    shows. (A value from outside is quoted and escaped where the record is made, e.g. the
    station id by :func:`provserver.peer.station_text`, so it reads back exactly.) A value
    starting with ``=``, ``+``, ``-`` or ``@`` (a spreadsheet formula) gets a leading
    apostrophe; values are cut to :data:`MAX_FIELD_CHARS` characters (with a trailing ``…``),
    never inside an escape.
    """
    if len(value) <= MAX_FIELD_CHARS and _PLAIN_FIELD.fullmatch(value):
        text = value  # the common case: nothing to escape
    else:
        text = printable(value)
    if text[:1] in _FORMULA_START:
        text = "'" + text
    if len(text) <= MAX_FIELD_CHARS:
        return text
    prefix = "'" if value[:1] in _FORMULA_START else ""
    kept, size = [prefix], len(prefix)
    for ch in value:
        piece = printable(ch)
        if size + len(piece) > MAX_FIELD_CHARS - 1:
            break
        kept.append(piece)
        size += len(piece)
    return "".join(kept) + "…"


def der_to_pem(der: bytes) -> str:
    """PEM text of one DER certificate (64-character lines, final newline)."""
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def normalize_pem_certificate(pem: str, what: str) -> str:
    """One PEM certificate with ``\\n`` line ends and a final newline, or ValueError."""
    if not isinstance(pem, str):
        raise TypeError(f"{what} must be a PEM str, got {type(pem).__name__}")
    text = pem.replace("\r\n", "\n").strip() + "\n"
    if not _PEM_CERT.fullmatch(text):
        raise ValueError(f"{what} is not one PEM certificate (BEGIN/END CERTIFICATE)")
    return text


class RecordStore(ABC):
    """Where signing and refusal records go. Use ``async with store:`` or open()/close()."""

    @abstractmethod
    async def open(self) -> None:
        """Prepare the store (create files, recover from an earlier crash)."""

    @abstractmethod
    async def log_signing(
        self, record: SigningRecord, device_cert_pem: str, signer_cert_pem: str
    ) -> None:
        """Store a signing and its two certificates; return once durable.

        Raises :class:`RecordStoreError` if the record could not be made durable (then the
        certificates must not be sent), ``ValueError`` for a record that is not a signing or
        PEM text that is not one certificate (a bug in the caller).
        """

    @abstractmethod
    async def log_refusal(self, record: SigningRecord) -> None:
        """Store a refusal; return once durable. Raises :class:`RecordStoreError`."""

    @abstractmethod
    async def close(self) -> None:
        """Wait for pending records, make everything durable and release the store."""

    def problem(self) -> str | None:
        """Why the store cannot take records now (not open, failed earlier), or None.

        The readiness answer uses it: a server that cannot record must not look ready. The
        default is :attr:`failure`; back-ends that can fail in other ways say so.
        """
        return self.failure

    @property
    def failure(self) -> str | None:
        """Why records cannot be written now (None: they can); the server signs nothing then."""
        return None

    async def issue(self, op: IssueOp) -> IssueResult:
        """Record a signed certificate; return what goes out (durable when this returns).

        This default (stores without a ledger) always records a new issuance through
        :meth:`log_signing`; the ledger store applies the device lifecycle instead.
        """
        from .ledger.model import Issuance, IssuanceState, IssueResult

        record = SigningRecord(
            time=op.time,
            station=op.station,
            device_sn=op.device_sn,
            signer=op.signer,
            cert_sn=op.cert_sn,
            public_key=op.public_key,
            result=RESULT_SIGNED,
        )
        await self.log_signing(record, der_to_pem(op.device_cert), der_to_pem(op.signer_cert))
        issuance = Issuance(
            id=0,
            device_sn=op.device_sn,
            public_key=op.public_key,
            issuer_key_id=op.issuer_key_id,
            signer_id=op.signer_id,
            cert_sn=op.cert_sn,
            state=IssuanceState.SIGNED,
            issued_at=op.time,
            updated_at=op.time,
            signer=op.signer,
            station=op.station,
            run_id=0,
            device_cert=op.device_cert,
            signer_cert=op.signer_cert,
            root_cert=op.root_cert,
        )
        return IssueResult("issued", issuance)

    async def refuse(self, op: RefusalOp) -> None:
        """Record a refused request (durable when this returns); default: :meth:`log_refusal`."""
        await self.log_refusal(
            SigningRecord(
                time=op.time,
                station=op.station,
                device_sn=op.device_sn,
                signer=op.signer,
                cert_sn="",
                public_key=op.public_key,
                result=RESULT_REFUSED,
                reason=f"{op.code.c_name}: {op.message}",
            )
        )

    async def report(self, op: ReportOp) -> ReportResult:
        """Record a client's outcome report; this default keeps nothing (no ledger)."""
        from .ledger.model import ReportResult

        return ReportResult(None, None)

    async def __aenter__(self: _Store) -> _Store:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def check_signing_args(
    record: SigningRecord, device_cert_pem: str, signer_cert_pem: str
) -> tuple[str, str]:
    """Caller checks shared by back-ends; returns the normalised PEM texts."""
    if record.result != RESULT_SIGNED:
        raise ValueError(f"log_signing needs a 'signed' record, got {record.result!r}")
    if not re.fullmatch(r"[0-9A-Fa-f]{2,64}", record.device_sn):
        raise ValueError(
            f"a signing record needs the device serial number in hex: {record.device_sn!r}"
        )
    return (
        normalize_pem_certificate(device_cert_pem, "device_cert_pem"),
        normalize_pem_certificate(signer_cert_pem, "signer_cert_pem"),
    )


def check_refusal_args(record: SigningRecord) -> None:
    if record.result != RESULT_REFUSED:
        raise ValueError(f"log_refusal needs a 'refused' record, got {record.result!r}")


@dataclass
class MemoryRecordStore(RecordStore):
    """Keeps records in memory (nothing durable): for tests and dry runs."""

    signings: list[tuple[SigningRecord, str, str]] = field(default_factory=list)
    refusals: list[SigningRecord] = field(default_factory=list)
    is_open: bool = False

    async def open(self) -> None:
        self.is_open = True

    async def log_signing(
        self, record: SigningRecord, device_cert_pem: str, signer_cert_pem: str
    ) -> None:
        device, signer = check_signing_args(record, device_cert_pem, signer_cert_pem)
        if not self.is_open:
            raise RecordStoreError("record store is not open")
        self.signings.append((record, device, signer))

    async def log_refusal(self, record: SigningRecord) -> None:
        check_refusal_args(record)
        if not self.is_open:
            raise RecordStoreError("record store is not open")
        self.refusals.append(record)

    async def close(self) -> None:
        self.is_open = False

    def problem(self) -> str | None:
        return None if self.is_open else "record store is not open"
