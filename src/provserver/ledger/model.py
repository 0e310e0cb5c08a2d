"""What the ledger holds and what it is asked to do: states, rows, filters, operations, results.

The ledger is the server's system of record. Per chip serial number it keeps a **device** (its
current state and current issuance), every **issuance** (one certificate signed for one public
key: the DER of the device, signer and root certificates that went out, byte for byte) and an
append-only list of **events** (signed, reissued, superseded, installed, failed, abandoned,
refused). Every value is plain text or bytes so that both engines store the same thing:

* serial numbers, public keys, key ids and certificate serial numbers: upper-case hex;
* times: ISO 8601 UTC with microseconds and ``Z`` (:func:`provserver.records.utc_timestamp`),
  which sort as text.

This module has no SQL and no I/O; :mod:`provserver.ledger.base` is the engine interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Literal, Union

from atcaprov.return_codes import ReturnCode

from ..records import (
    RESULT_REFUSED,
    RESULT_REISSUED,
    RESULT_SIGNED,
    Result,
    SigningRecord,
    utc_timestamp,
)


def ledger_time(value: datetime | str) -> str:
    """A time in the ledger's text form (``2026-11-21T05:13:23.123456Z``).

    ``value``: an aware datetime, or ISO 8601 text with a zone (``Z``, ``+02:00``) or a date
    alone (midnight UTC). ValueError for anything else (a time without a zone is ambiguous).
    """
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        moment = datetime.fromisoformat(text)
        if len(text) == 10:  # a date alone
            moment = moment.replace(tzinfo=timezone.utc)
        value = moment
    if value.tzinfo is None:
        raise ValueError(f"time {value.isoformat()} has no time zone (add Z for UTC)")
    return utc_timestamp(value)


class IssuanceState(str, Enum):
    """Where one certificate stands. A device's state is the state of its current issuance."""

    SIGNED = "signed"  # the certificate was sent
    INSTALLED = "installed"  # the client reported it on the chip, data zone locked
    FAILED = "failed"  # the client reported a failed stage
    ABANDONED = "abandoned"  # the client reported the part gone before the run ended
    SUPERSEDED = "superseded"  # a later certificate for the same device replaced it


class EventKind(str, Enum):
    """What an event records."""

    SIGNED = "signed"  # a new issuance (a certificate signed and sent)
    REISSUED = "reissued"  # an earlier certificate sent again, byte for byte
    SUPERSEDED = "superseded"  # an issuance replaced by a later one for the same device
    INSTALLED = "installed"
    FAILED = "failed"
    ABANDONED = "abandoned"
    REFUSED = "refused"  # a request answered with an error (code and message)


# Events that are also a row of the run's TSV signing log (one per answered request).
TSV_EVENT_KINDS = (EventKind.SIGNED, EventKind.REISSUED, EventKind.REFUSED)
_TSV_RESULTS: dict[EventKind, Result] = {
    EventKind.SIGNED: RESULT_SIGNED,
    EventKind.REISSUED: RESULT_REISSUED,
    EventKind.REFUSED: RESULT_REFUSED,
}
REPORT_KINDS = (EventKind.INSTALLED, EventKind.FAILED, EventKind.ABANDONED)


@dataclass(frozen=True)
class Issuance:
    """One certificate issued for one (device serial number, public key, signer key)."""

    id: int
    device_sn: str
    public_key: str
    issuer_key_id: str  # SHA-1 key id of the signer key (the issuer)
    signer_id: str  # the 2-byte signer id, 4 hex digits
    cert_sn: str  # certificate serial number
    state: IssuanceState
    issued_at: str
    updated_at: str
    signer: str  # signer label: name (module serial number, back-end:module)
    station: str
    run_id: int
    device_cert: bytes  # DER, as sent
    signer_cert: bytes  # DER, as sent
    root_cert: bytes | None  # DER, as sent (None: the reply had none)
    device_type: str = ""  # chip model the request stated (CertRequest2); "" if not stated

    @classmethod
    def new(cls, op: IssueOp, issuance_id: int, run_id: int) -> Issuance:
        """The new (``signed``) issuance a commit makes of ``op``: its certificates as sent."""
        return cls(
            id=issuance_id, device_sn=op.device_sn, public_key=op.public_key,
            issuer_key_id=op.issuer_key_id, signer_id=op.signer_id, cert_sn=op.cert_sn,
            state=IssuanceState.SIGNED, issued_at=op.time, updated_at=op.time, signer=op.signer,
            station=op.station, run_id=run_id, device_cert=op.device_cert,
            signer_cert=op.signer_cert, root_cert=op.root_cert, device_type=op.device_type,
        )  # fmt: skip


@dataclass(frozen=True)
class Event:
    """One entry of the append-only event list (ids increase in commit order)."""

    id: int
    time: str
    kind: EventKind
    device_sn: str
    issuance_id: int | None
    run_id: int
    station: str
    signer: str
    public_key: str
    cert_sn: str
    code: str = ""  # return code name (refusals, failure reports)
    stage: str = ""  # ProvStage name (reports)
    part_state: str = ""  # ReportPartState name (reports)
    detail: str = ""  # message (refusal text, the client's failure text, notes)

    def tsv_record(self) -> SigningRecord:
        """The signing-log row of a signed / reissued / refused event."""
        result = _TSV_RESULTS.get(self.kind)
        if result is None:
            raise ValueError(f"a {self.kind.value} event has no signing-log row")
        reason = self.detail
        if self.kind is EventKind.REFUSED:
            reason = f"{ReturnCode[self.code].c_name}: {self.detail}" if self.code else self.detail
        return SigningRecord(
            time=self.time,
            station=self.station,
            device_sn=self.device_sn,
            signer=self.signer,
            cert_sn=self.cert_sn,
            public_key=self.public_key,
            result=result,
            reason=reason,
        )


@dataclass(frozen=True)
class Device:
    device_sn: str
    state: IssuanceState
    current_issuance: int | None
    first_seen: str
    updated_at: str


@dataclass(frozen=True)
class DeviceHistory:
    """Everything the ledger knows about one serial number (oldest first)."""

    device_sn: str
    device: Device | None
    issuances: list[Issuance]
    events: list[Event]


@dataclass(frozen=True)
class Run:
    """One server run that wrote to the ledger (its signing log is ``signing-<stamp>.tsv``)."""

    id: int
    server: str  # host name and process id
    data_dir: str
    stamp: str
    started_at: str
    stopped_at: str | None
    note: str


@dataclass(frozen=True)
class RecordFilter:
    """Which issuances or events a query returns (None: no condition).

    * ``since`` / ``until``: times, ``since <= time < until`` (issued_at for issuances, the
      event time for events); any form :func:`ledger_time` takes;
    * ``signer``: the issuer key id (40 hex), the signer id (4 hex) or a piece of the signer
      label (name, module serial number), case-insensitive;
    * ``station``: a piece of the station text (address, certificate subject, station id);
    * ``state``: issuances in that state (events: ignored);
    * ``device_sn``: one serial number (hex);
    * ``kinds``: events of these kinds only (issuances: ignored).
    """

    since: str | None = None
    until: str | None = None
    signer: str | None = None
    station: str | None = None
    state: IssuanceState | None = None
    device_sn: str | None = None
    kinds: tuple[EventKind, ...] | None = None


# ---------------------------------------------------------------------------- operations
@dataclass(frozen=True)
class IssueOp:
    """A certificate the server signed for a request; the ledger decides what goes out.

    The commit applies the lifecycle rules (:mod:`provserver.ledger.lifecycle`): this
    certificate becomes a new issuance, or an earlier certificate is sent again, or the
    request is refused.
    """

    time: str
    station: str
    device_sn: str
    public_key: str
    issuer_key_id: str
    signer_id: str
    signer: str
    cert_sn: str
    device_cert: bytes
    signer_cert: bytes
    root_cert: bytes | None
    device_type: str = ""  # chip model the request stated (CertRequest2); "" if not stated


@dataclass(frozen=True)
class RefusalOp:
    """A request refused before the ledger was asked (bad config zone, signer locked...)."""

    time: str
    station: str
    device_sn: str
    public_key: str
    signer: str
    code: ReturnCode
    message: str


@dataclass(frozen=True)
class ReportOp:
    """A client's report of how provisioning the device with ``public_key`` ended."""

    time: str
    station: str
    device_sn: str
    public_key: str
    outcome: Literal[EventKind.INSTALLED, EventKind.FAILED, EventKind.ABANDONED]
    stage: str
    part_state: str
    code: str
    message: str


LedgerOp = Union[IssueOp, RefusalOp, ReportOp]  # noqa: UP007 - a runtime alias on 3.10


@dataclass(frozen=True)
class IssueResult:
    """What the commit decided for an :class:`IssueOp` (or recorded for a RefusalOp)."""

    action: Literal["issued", "reissued", "refused"]
    issuance: Issuance | None = None  # the certificates that go out (issued / reissued)
    code: ReturnCode | None = None  # refused: why
    message: str = ""
    superseded: int | None = None  # id of the issuance this one replaced
    event: Event | None = None  # the signing-log event recorded (signed, reissued, refused)


@dataclass(frozen=True)
class ReportResult:
    """The issuance a report applied to and its state afterwards (None: no such issuance)."""

    issuance_id: int | None
    state: IssuanceState | None
    event: Event | None = None


LedgerResult = Union[IssueResult, ReportResult]  # noqa: UP007
