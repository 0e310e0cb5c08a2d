"""The client <-> server message protocol (sans-IO): header, readiness, certificates, error.

Bytes in, values out; no sockets here. Every message is a fixed 12-byte header followed by a body
whose length the header states, so a receiver always knows how many bytes it still needs
(``atcaprov_certreq_recv`` is told exactly that)::

    offset 0  magic        4 bytes  b"APRV"
    offset 4  version      u8       the protocol version that defines the message type
    offset 5  type         u8       MessageType
    offset 6  flags        u16 BE   reserved, 0
    offset 8  body length  u32 BE   0..MAX_BODY_SIZE

The body layouts of :class:`CertRequest`, :class:`CertReply`, :class:`ErrorReply` (version 1),
:class:`ReadyRequest` and :class:`ReadyReply` (version 2) are given byte by byte in
``docs/protocol.md`` and in each class's docstring.

Versions: a message is always sent with the version that introduced its type
(:data:`MESSAGE_VERSION`), so a version-1 peer keeps reading every version-1 message from a
version-2 peer (layouts never change within a type); a receiver accepts a header whose version it
supports and whose type exists in that version. A version-1 server answers a ReadyRequest with an
ErrorReply UNSUPPORTED_VERSION, which is how a client learns the server is too old to say
whether it is ready.

Version 2 adds :class:`DeviceReport` (client -> server: the outcome of provisioning a device
that got certificates: installed, failed or abandoned) and its answer :class:`ReportAck`, and
:class:`CertRequest2` (a CertRequest plus the device type, sent to a server that answered a
ReadyRequest); the version-1 messages keep their layouts. A message goes out in the lowest
version that has its type (:func:`encode`), so a version-1 peer reads every version-1 message a
version-2 side sends; a server answers a message in that message's version
(``MessageReader.last_version``).

Error split:

* bytes from the peer that do not form a valid message raise :class:`ProtocolError` (an
  :class:`~atcaprov.errors.AtcaprovError` carrying a :class:`~atcaprov.return_codes.ReturnCode`);
  decoding never raises anything else;
* building a message with bad field values in our own code is a programming error and raises
  ``ValueError`` / ``TypeError`` from the message constructor (``encode`` never sees a bad one).

:class:`MessageReader` is the incremental receiver (feed bytes, take messages), in the style of
h11: it buffers at most ``max_buffer`` bytes and, after the first protocol error, stays failed
(the stream is out of step and the connection must be closed).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar, Union

from .datasheet import ATECC508A, serial_number
from .return_codes import ReturnCode, ReturnCodeError

MAGIC = b"APRV"
PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS = frozenset({1, 2})
HEADER_SIZE = 12
MAX_BODY_SIZE = 16 * 1024

SIGNER_ID_SIZE = 2
KEY_ID_SIZE = 20
CONFIG_ZONE_SIZE = ATECC508A.config_size
PUBLIC_KEY_SIZE = 64
MAX_TEMPLATE_ID = 15
MAX_STATION_ID_BYTES = 64
MAX_CERT_SIZE = 4096
MAX_ERROR_MESSAGE_BYTES = 1024
MAX_REPORT_MESSAGE_BYTES = 1024

_HEADER = struct.Struct(">4sBBHI")
assert _HEADER.size == HEADER_SIZE


class MessageType(IntEnum):
    """The type byte of the header."""

    CERT_REQUEST = 0x01
    CERT_REPLY = 0x02
    ERROR_REPLY = 0x03
    READY_REQUEST = 0x04  # version 2
    READY_REPLY = 0x05  # version 2
    DEVICE_REPORT = 0x06  # version 2
    REPORT_ACK = 0x07  # version 2
    CERT_REQUEST2 = 0x08  # version 2: CertRequest + the device type


_TYPE_NAMES = {
    MessageType.CERT_REQUEST: "CertRequest",
    MessageType.CERT_REPLY: "CertReply",
    MessageType.ERROR_REPLY: "ErrorReply",
    MessageType.READY_REQUEST: "ReadyRequest",
    MessageType.READY_REPLY: "ReadyReply",
    MessageType.DEVICE_REPORT: "DeviceReport",
    MessageType.REPORT_ACK: "ReportAck",
    MessageType.CERT_REQUEST2: "CertRequest2",
}

# The protocol version that introduced each message type: the version byte it is sent with.
MESSAGE_VERSION: dict[MessageType, int] = {
    MessageType.CERT_REQUEST: 1,
    MessageType.CERT_REPLY: 1,
    MessageType.ERROR_REPLY: 1,
    MessageType.READY_REQUEST: 2,
    MessageType.READY_REPLY: 2,
    MessageType.DEVICE_REPORT: 2,
    MessageType.REPORT_ACK: 2,
    MessageType.CERT_REQUEST2: 2,
}


def min_version(msg_type: MessageType) -> int:
    """The lowest protocol version in which ``msg_type`` exists (the one it is sent with)."""
    return MESSAGE_VERSION[msg_type]


class ProtocolError(ReturnCodeError):
    """The peer sent bytes that are not a valid message (``code`` says which rule they broke)."""


class ServerError(ReturnCodeError):
    """The server answered a request with an :class:`ErrorReply` (``code`` and ``message``)."""


# --------------------------------------------------------------------------------------------
# Header
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    """A decoded message header (already checked: magic, version, type, flags, length)."""

    version: int
    msg_type: MessageType
    flags: int
    body_length: int

    def to_bytes(self) -> bytes:
        return _HEADER.pack(MAGIC, self.version, self.msg_type, self.flags, self.body_length)


def parse_header(
    data: bytes,
    *,
    max_body_size: int = MAX_BODY_SIZE,
    versions: Iterable[int] = SUPPORTED_VERSIONS,
) -> Header:
    """Decode and check the first ``HEADER_SIZE`` bytes of a message.

    ``data`` must be exactly ``HEADER_SIZE`` bytes; ``versions`` are the protocol versions this
    side speaks (default: all of this library's). Raises :class:`ProtocolError`: BAD_MAGIC,
    UNSUPPORTED_VERSION, UNKNOWN_MESSAGE_TYPE (unknown type, or a type newer than the header's
    version), MALFORMED_BODY (wrong size, non-zero flags), BODY_TOO_LARGE (declared length
    above ``max_body_size``).
    """
    supported = frozenset(versions)
    raw = bytes(data)
    if len(raw) != HEADER_SIZE:
        raise ProtocolError(
            ReturnCode.MALFORMED_BODY,
            f"header must be {HEADER_SIZE} bytes, got {len(raw)}",
        )
    magic, version, type_byte, flags, body_length = _HEADER.unpack(raw)
    if magic != MAGIC:
        raise ProtocolError(
            ReturnCode.BAD_MAGIC,
            f"header bytes 0-3 are {magic.hex(' ')}, expected {MAGIC.hex(' ')} ({MAGIC!r})",
        )
    if version not in supported:
        raise ProtocolError(
            ReturnCode.UNSUPPORTED_VERSION,
            f"header byte 4: protocol version {version} not supported"
            f" (supported: {', '.join(str(v) for v in sorted(supported))})",
        )
    known = [t for t in MessageType if MESSAGE_VERSION[t] <= version]
    if type_byte not in known:
        raise ProtocolError(
            ReturnCode.UNKNOWN_MESSAGE_TYPE,
            f"header byte 5: unknown message type 0x{type_byte:02X} in protocol version"
            f" {version} (known: {', '.join(f'0x{t:02X} {_TYPE_NAMES[t]}' for t in known)})",
        )
    msg_type = MessageType(type_byte)
    if flags != 0:
        raise ProtocolError(
            ReturnCode.MALFORMED_BODY,
            f"header bytes 6-7: reserved flags are 0x{flags:04X}, must be 0x0000",
        )
    if body_length > max_body_size:
        raise ProtocolError(
            ReturnCode.BODY_TOO_LARGE,
            f"header bytes 8-11: {_TYPE_NAMES[msg_type]} body length {body_length}"
            f" exceeds the limit of {max_body_size} bytes",
        )
    return Header(version, msg_type, flags, body_length)


# --------------------------------------------------------------------------------------------
# Local validation helpers (our own code building a message: ValueError / TypeError)
# --------------------------------------------------------------------------------------------
def _as_bytes(owner: object, field: str, value: object) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        out = bytes(value)
        object.__setattr__(owner, field, out)
        return out
    raise TypeError(f"{type(owner).__name__}.{field} must be bytes, got {type(value).__name__}")


def _check_size(owner: object, field: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise ValueError(f"{type(owner).__name__}.{field} must be {size} bytes, got {len(value)}")


def _check_template_id(owner: object, field: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{type(owner).__name__}.{field} must be int, got {type(value).__name__}")
    if not 0 <= value <= MAX_TEMPLATE_ID:
        raise ValueError(
            f"{type(owner).__name__}.{field} must be 0..{MAX_TEMPLATE_ID} (4 bits), got {value}"
        )


def _der_problem(data: bytes) -> str | None:
    """Why ``data`` is not exactly one DER SEQUENCE (tag 0x30, definite length), or None."""
    if len(data) < 2:
        return f"{len(data)} bytes is too short for a DER SEQUENCE"
    if data[0] != 0x30:
        return f"starts with tag 0x{data[0]:02X}, expected 0x30 (SEQUENCE)"
    first = data[1]
    if first < 0x80:
        header, length = 2, first
    else:
        count = first & 0x7F
        if count == 0 or count > 2:
            return f"length byte 0x{first:02X} is not a DER length of at most 2 bytes"
        if len(data) < 2 + count:
            return "truncated in its length field"
        header = 2 + count
        length = int.from_bytes(data[2:header], "big")
        if length < 0x80 or (count == 2 and length < 0x100):
            return f"length {length} is not in the shortest (DER) form"
    if header + length != len(data):
        return f"SEQUENCE length says {header + length} bytes, field holds {len(data)}"
    return None


def _check_cert(owner: object, field: str, value: bytes) -> None:
    if len(value) > MAX_CERT_SIZE:
        raise ValueError(
            f"{type(owner).__name__}.{field} is {len(value)} bytes, limit {MAX_CERT_SIZE}"
        )
    problem = _der_problem(value)
    if problem is not None:
        raise ValueError(f"{type(owner).__name__}.{field} is not a DER certificate: {problem}")


def _check_text(owner: object, field: str, value: object, limit: int) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{type(owner).__name__}.{field} must be str, got {type(value).__name__}")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{type(owner).__name__}.{field} is not encodable as UTF-8: {exc}"
        ) from exc
    if len(encoded) > limit:
        raise ValueError(
            f"{type(owner).__name__}.{field} is {len(encoded)} bytes in UTF-8, limit {limit}"
        )
    return encoded


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------
def _check_signer_fields(msg: Any) -> None:
    """The signer id, signer key id and template/chain ids every request names."""
    _check_size(msg, "signer_id", _as_bytes(msg, "signer_id", msg.signer_id), SIGNER_ID_SIZE)
    key_id = _as_bytes(msg, "signer_key_id", msg.signer_key_id)
    _check_size(msg, "signer_key_id", key_id, KEY_ID_SIZE)
    for name in ("device_template_id", "signer_template_id", "chain_id"):
        _check_template_id(msg, name, getattr(msg, name))


def _check_station_id(msg: Any) -> None:
    """An optional station id: UTF-8 of at most MAX_STATION_ID_BYTES; "" means none."""
    if msg.station_id is not None:
        _check_text(msg, "station_id", msg.station_id, MAX_STATION_ID_BYTES)
        if msg.station_id == "":
            object.__setattr__(msg, "station_id", None)


@dataclass(frozen=True)
class CertRequest:
    """Client -> server: sign certificates for this device.

    Body (218 + n bytes)::

        0    signer_id            2    signer id (as in the compressed cert / cert info)
        2    signer_key_id       20    SHA-1 key id of the signer public key (04||X||Y)
        22   device_template_id   1    0..15
        23   signer_template_id   1    0..15
        24   chain_id             1    0..15
        25   config_zone        128    the device's config zone as read after locking
        153  device_public_key   64    X||Y of the device key (GenKey)
        217  station_id_length    1    n = 0..64 (0 = no station id)
        218  station_id           n    UTF-8
    """

    signer_id: bytes
    signer_key_id: bytes
    device_template_id: int
    signer_template_id: int
    chain_id: int
    config_zone: bytes
    device_public_key: bytes
    station_id: str | None = None

    def __post_init__(self) -> None:
        _check_signer_fields(self)
        config = _as_bytes(self, "config_zone", self.config_zone)
        _check_size(self, "config_zone", config, CONFIG_ZONE_SIZE)
        pub = _as_bytes(self, "device_public_key", self.device_public_key)
        _check_size(self, "device_public_key", pub, PUBLIC_KEY_SIZE)
        _check_station_id(self)

    @property
    def device_serial_number(self) -> bytes:
        """The 9-byte device serial number: config bytes 0-3 and 8-12."""
        return serial_number(self.config_zone)


class DeviceType(IntEnum):
    """The chip model of the device, as a :class:`CertRequest2` carries it (the names are the
    :mod:`atcaprov.datasheet` model names)."""

    ATECC508A = 1
    ATECC608A = 2
    ATECC608B = 3


@dataclass(frozen=True)
class CertRequest2(CertRequest):
    """Client -> server (version 2): a :class:`CertRequest` that also says the device type.

    Sent instead of a CertRequest to a server that answered a ReadyRequest (so speaks version
    2). Body (219 + n bytes): the CertRequest body, then::

        218+n  device_type        1    DeviceType (1 ATECC508A, 2 ATECC608A, 3 ATECC608B)
    """

    device_type: DeviceType = dataclasses.field(kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.device_type, DeviceType):
            raise TypeError(
                f"CertRequest2.device_type must be a DeviceType, got {self.device_type!r}"
            )


@dataclass(frozen=True)
class CertReply:
    """Server -> client: the signed certificates.

    Body (6 + a + b + c bytes)::

        0      device_cert_length  u16 BE  a = 1..4096
        2      device_cert         a       DER
        2+a    signer_cert_length  u16 BE  b = 1..4096
        4+a    signer_cert         b       DER
        4+a+b  root_cert_length    u16 BE  c = 0..4096 (0 = no root certificate)
        6+a+b  root_cert           c       DER
    """

    device_cert: bytes
    signer_cert: bytes
    root_cert: bytes | None = None

    def __post_init__(self) -> None:
        _check_cert(self, "device_cert", _as_bytes(self, "device_cert", self.device_cert))
        _check_cert(self, "signer_cert", _as_bytes(self, "signer_cert", self.signer_cert))
        if self.root_cert is not None:
            _check_cert(self, "root_cert", _as_bytes(self, "root_cert", self.root_cert))


@dataclass(frozen=True)
class ErrorReply:
    """Server -> client: the request was refused or failed.

    Body (4 + n bytes)::

        0  code            u16 BE  a ReturnCode other than SUCCESS
        2  message_length  u16 BE  n = 0..1024
        4  message         n       UTF-8, for the operator
    """

    code: ReturnCode
    message: str

    def __post_init__(self) -> None:
        if not isinstance(self.code, ReturnCode):
            raise TypeError(f"ErrorReply.code must be a ReturnCode, got {self.code!r}")
        if self.code is ReturnCode.SUCCESS:
            raise ValueError("ErrorReply.code cannot be SUCCESS")
        _check_text(self, "message", self.message, MAX_ERROR_MESSAGE_BYTES)

    def to_exception(self) -> ServerError:
        """The exception a client raises for this reply."""
        return ServerError(self.code, self.message)


@dataclass(frozen=True)
class ReadyRequest:
    """Client -> server (version 2): could you sign for this cert info now?

    Sent before the first chip command that writes or locks, so that a server that cannot sign
    is known before anything irreversible happens. Body (26 + n bytes)::

        0   signer_id            2    signer id (as in the cert info)
        2   signer_key_id       20    SHA-1 key id of the signer public key (04||X||Y)
        22  device_template_id   1    0..15
        23  signer_template_id   1    0..15
        24  chain_id             1    0..15
        25  station_id_length    1    n = 0..64 (0 = no station id)
        26  station_id           n    UTF-8
    """

    signer_id: bytes
    signer_key_id: bytes
    device_template_id: int
    signer_template_id: int
    chain_id: int
    station_id: str | None = None

    def __post_init__(self) -> None:
        _check_signer_fields(self)
        _check_station_id(self)


@dataclass(frozen=True)
class ReadyReply:
    """Server -> client (version 2): ready (``code`` SUCCESS) or why not.

    Body (4 + n bytes)::

        0  code            u16 BE  SUCCESS (ready) or the reason: SIGNER_NOT_FOUND,
                                   SIGNER_LOCKED, NO_PROFILE, TEMPLATE_MISMATCH,
                                   RECORDS_UNAVAILABLE, ... (any known ReturnCode)
        2  message_length  u16 BE  n = 0..1024
        4  message         n       UTF-8, for the operator
    """

    code: ReturnCode
    message: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.code, ReturnCode):
            raise TypeError(f"ReadyReply.code must be a ReturnCode, got {self.code!r}")
        _check_text(self, "message", self.message, MAX_ERROR_MESSAGE_BYTES)

    @property
    def ready(self) -> bool:
        return self.code is ReturnCode.SUCCESS


class ReportOutcome(IntEnum):
    """How provisioning a device that got certificates ended (:class:`DeviceReport`)."""

    INSTALLED = 1  # certificates on the chip, data zone locked (after the validation stage)
    FAILED = 2  # a stage failed (the chip refused, a check failed, the server link broke)
    ABANDONED = 3  # the part stopped answering (removed) before the run ended


class ReportPartState(IntEnum):
    """What the part holds when the report is sent (``PartState`` of the flow, as a number)."""

    UNKNOWN = 0
    UNLOCKED = 1  # config zone unlocked
    CONFIG_LOCKED = 2  # config zone locked, data zone unlocked (resumable)
    PROVISIONED = 3  # data zone locked


class RecordedState(IntEnum):
    """The server's record of the issuance after a report (:class:`ReportAck`)."""

    UNKNOWN = 0  # no issuance for this serial number and public key (recorded as an event)
    SIGNED = 1
    INSTALLED = 2
    FAILED = 3
    ABANDONED = 4
    SUPERSEDED = 5  # a later certificate replaced this one (the report is kept as an event)


@dataclass(frozen=True)
class DeviceReport:
    """Client -> server (version 2): how provisioning the device with this key ended.

    Sent after the validation stage (``INSTALLED``) or after a stage failed once the device had
    a public key (``FAILED`` / ``ABANDONED``). Body (82 + n + m bytes)::

        0       outcome             1    ReportOutcome: 1 installed, 2 failed, 3 abandoned
        1       stage               1    ProvStage number of the last stage (0 = none)
        2       part_state          1    ReportPartState: 0 unknown .. 3 data zone locked
        3       code                u16  ReturnCode of the failure (0 for installed)
        5       device_sn           9    serial number (config bytes 0-3 and 8-12)
        14      device_public_key  64    X||Y of the device key the certificate is for
        78      station_id_length   1    n = 0..64 (0 = no station id)
        79      station_id          n    UTF-8
        79+n    message_length      u16  m = 0..1024
        81+n    message             m    UTF-8, what failed (for the record)
    """

    outcome: ReportOutcome
    stage: int
    part_state: ReportPartState
    code: ReturnCode
    device_sn: bytes
    device_public_key: bytes
    station_id: str | None = None
    message: str = ""

    def __post_init__(self) -> None:
        for name, enum in (
            ("outcome", ReportOutcome),
            ("part_state", ReportPartState),
            ("code", ReturnCode),
        ):
            if not isinstance(getattr(self, name), enum):
                raise TypeError(f"DeviceReport.{name} must be a {enum.__name__}")
        if not isinstance(self.stage, int) or not 0 <= self.stage <= 255:
            raise ValueError(f"DeviceReport.stage must be 0..255, got {self.stage!r}")
        sn = _as_bytes(self, "device_sn", self.device_sn)
        _check_size(self, "device_sn", sn, 9)
        pub = _as_bytes(self, "device_public_key", self.device_public_key)
        _check_size(self, "device_public_key", pub, PUBLIC_KEY_SIZE)
        _check_station_id(self)
        _check_text(self, "message", self.message, MAX_REPORT_MESSAGE_BYTES)


@dataclass(frozen=True)
class ReportAck:
    """Server -> client (version 2): the report is recorded. Body (1 byte)::

    0  state  1  RecordedState of the issuance after the report
    """

    state: RecordedState

    def __post_init__(self) -> None:
        if not isinstance(self.state, RecordedState):
            raise TypeError(f"ReportAck.state must be a RecordedState, got {self.state!r}")


Message = Union[  # noqa: UP007 - a runtime alias on 3.10
    CertRequest, CertReply, ErrorReply, ReadyRequest, ReadyReply, DeviceReport, ReportAck
]


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------
def _cert_request_body(msg: CertRequest) -> bytes:
    """The CertRequest body (also the start of a CertRequest2's)."""
    station = b"" if msg.station_id is None else msg.station_id.encode("utf-8")
    return b"".join(
        (
            msg.signer_id,
            msg.signer_key_id,
            bytes((msg.device_template_id, msg.signer_template_id, msg.chain_id)),
            msg.config_zone,
            msg.device_public_key,
            bytes((len(station),)),
            station,
        )
    )


def _encode_body(msg: Message) -> tuple[MessageType, bytes]:
    if isinstance(msg, CertRequest2):
        return MessageType.CERT_REQUEST2, _cert_request_body(msg) + bytes((msg.device_type,))
    if isinstance(msg, CertRequest):
        return MessageType.CERT_REQUEST, _cert_request_body(msg)
    if isinstance(msg, CertReply):
        parts = []
        for cert in (msg.device_cert, msg.signer_cert, msg.root_cert or b""):
            parts.append(len(cert).to_bytes(2, "big"))
            parts.append(cert)
        return MessageType.CERT_REPLY, b"".join(parts)
    if isinstance(msg, (ErrorReply, ReadyReply)):
        text = msg.message.encode("utf-8")
        body = msg.code.to_bytes(2, "big") + len(text).to_bytes(2, "big") + text
        kind = MessageType.ERROR_REPLY if isinstance(msg, ErrorReply) else MessageType.READY_REPLY
        return kind, body
    if isinstance(msg, ReadyRequest):
        station = b"" if msg.station_id is None else msg.station_id.encode("utf-8")
        body = b"".join(
            (
                msg.signer_id,
                msg.signer_key_id,
                bytes((msg.device_template_id, msg.signer_template_id, msg.chain_id)),
                bytes((len(station),)),
                station,
            )
        )
        return MessageType.READY_REQUEST, body
    if isinstance(msg, DeviceReport):
        station = b"" if msg.station_id is None else msg.station_id.encode("utf-8")
        text = msg.message.encode("utf-8")
        body = b"".join(
            (
                bytes((msg.outcome, msg.stage, msg.part_state)),
                msg.code.to_bytes(2, "big"),
                msg.device_sn,
                msg.device_public_key,
                bytes((len(station),)),
                station,
                len(text).to_bytes(2, "big"),
                text,
            )
        )
        return MessageType.DEVICE_REPORT, body
    if isinstance(msg, ReportAck):
        return MessageType.REPORT_ACK, bytes((msg.state,))
    raise TypeError(f"not a protocol message: {type(msg).__name__}")


def encode(msg: Message, version: int | None = None) -> bytes:
    """The complete wire form (header + body) of a message.

    ``version`` None: the lowest version that has the message's type (1 for the version-1
    messages, so every peer reads them); a server answering passes the request's version.
    """
    msg_type, body = _encode_body(msg)
    if len(body) > MAX_BODY_SIZE:  # cannot happen with the field limits; kept as a guard
        raise ValueError(f"{_TYPE_NAMES[msg_type]} body is {len(body)} bytes > {MAX_BODY_SIZE}")
    if version is None:
        version = min_version(msg_type)
    if version not in SUPPORTED_VERSIONS or version < min_version(msg_type):
        raise ValueError(f"{_TYPE_NAMES[msg_type]} cannot be sent in protocol version {version}")
    return Header(version, msg_type, 0, len(body)).to_bytes() + body


# --------------------------------------------------------------------------------------------
# Decoding (peer bytes: ProtocolError only)
# --------------------------------------------------------------------------------------------
class _Cursor:
    def __init__(self, body: bytes, what: str) -> None:
        self.body = body
        self.pos = 0
        self.what = what

    def fail(self, text: str) -> ProtocolError:
        return ProtocolError(ReturnCode.MALFORMED_BODY, f"{self.what} body: {text}")

    def take(self, count: int, field: str) -> bytes:
        left = len(self.body) - self.pos
        if count > left:
            raise self.fail(
                f"truncated in field {field} at byte {self.pos}: need {count} bytes, {left} left"
            )
        out = self.body[self.pos : self.pos + count]
        self.pos += count
        return out

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "big")

    def text(self, count: int, field: str) -> str:
        start = self.pos
        raw = self.take(count, field)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(
                f"field {field} (bytes {start}..{start + count - 1}) is not valid UTF-8:"
                f" byte {start + exc.start} ({raw[exc.start]:#04x}) {exc.reason}"
            ) from None

    def end(self) -> None:
        if self.pos != len(self.body):
            raise self.fail(
                f"{len(self.body) - self.pos} trailing bytes after the last field"
                f" (expected {self.pos} bytes, got {len(self.body)})"
            )


def _decode_ids(cur: _Cursor) -> dict[str, int]:
    ids = {}
    for name in ("device_template_id", "signer_template_id", "chain_id"):
        pos = cur.pos
        value = cur.u8(name)
        if value > MAX_TEMPLATE_ID:
            raise cur.fail(f"field {name} at byte {pos} is {value}, expected 0..{MAX_TEMPLATE_ID}")
        ids[name] = value
    return ids


def _decode_station(cur: _Cursor) -> str | None:
    pos = cur.pos
    station_len = cur.u8("station_id_length")
    if station_len > MAX_STATION_ID_BYTES:
        raise cur.fail(
            f"field station_id_length at byte {pos} is {station_len}, limit {MAX_STATION_ID_BYTES}"
        )
    return cur.text(station_len, "station_id") if station_len else None


def _cert_request_fields(cur: _Cursor) -> dict[str, Any]:
    """The CertRequest body's fields (also the start of a CertRequest2's)."""
    signer_id = cur.take(SIGNER_ID_SIZE, "signer_id")
    key_id = cur.take(KEY_ID_SIZE, "signer_key_id")
    ids = _decode_ids(cur)
    config = cur.take(CONFIG_ZONE_SIZE, "config_zone")
    pub = cur.take(PUBLIC_KEY_SIZE, "device_public_key")
    return dict(
        signer_id=signer_id,
        signer_key_id=key_id,
        device_template_id=ids["device_template_id"],
        signer_template_id=ids["signer_template_id"],
        chain_id=ids["chain_id"],
        config_zone=config,
        device_public_key=pub,
        station_id=_decode_station(cur),
    )


def _decode_cert_request(cur: _Cursor) -> CertRequest:
    fields = _cert_request_fields(cur)
    cur.end()
    return CertRequest(**fields)


def _decode_cert_request2(cur: _Cursor) -> CertRequest2:
    fields = _cert_request_fields(cur)
    device_type = _enum_field(cur, DeviceType, "device_type")
    cur.end()
    return CertRequest2(**fields, device_type=device_type)


def _decode_cert_reply(cur: _Cursor) -> CertReply:
    certs: list[bytes | None] = []
    for field, optional in (("device_cert", False), ("signer_cert", False), ("root_cert", True)):
        pos = cur.pos
        length = cur.u16(f"{field}_length")
        if length == 0 and not optional:
            raise cur.fail(f"field {field}_length at byte {pos} is 0, a certificate is required")
        if length > MAX_CERT_SIZE:
            raise cur.fail(f"field {field}_length at byte {pos} is {length}, limit {MAX_CERT_SIZE}")
        start = cur.pos
        der = cur.take(length, field)
        if length == 0:
            certs.append(None)
            continue
        problem = _der_problem(der)
        if problem is not None:
            raise cur.fail(f"field {field} (bytes {start}..{start + length - 1}): {problem}")
        certs.append(der)
    cur.end()
    device, signer, root = certs
    assert device is not None and signer is not None
    return CertReply(device_cert=device, signer_cert=signer, root_cert=root)


def _decode_code_and_text(cur: _Cursor, *, success_allowed: bool) -> tuple[ReturnCode, str]:
    code_value = cur.u16("code")
    code = ReturnCode.from_value(code_value)
    if code is None or (code is ReturnCode.SUCCESS and not success_allowed):
        kind = "return" if success_allowed else "error return"
        raise cur.fail(f"field code at byte 0 is 0x{code_value:04X}, not a known {kind} code")
    pos = cur.pos
    length = cur.u16("message_length")
    if length > MAX_ERROR_MESSAGE_BYTES:
        raise cur.fail(
            f"field message_length at byte {pos} is {length}, limit {MAX_ERROR_MESSAGE_BYTES}"
        )
    text = cur.text(length, "message")
    cur.end()
    return code, text


def _decode_error_reply(cur: _Cursor) -> ErrorReply:
    code, text = _decode_code_and_text(cur, success_allowed=False)
    return ErrorReply(code=code, message=text)


def _decode_ready_request(cur: _Cursor) -> ReadyRequest:
    signer_id = cur.take(SIGNER_ID_SIZE, "signer_id")
    key_id = cur.take(KEY_ID_SIZE, "signer_key_id")
    ids = _decode_ids(cur)
    station = _decode_station(cur)
    cur.end()
    return ReadyRequest(
        signer_id=signer_id,
        signer_key_id=key_id,
        device_template_id=ids["device_template_id"],
        signer_template_id=ids["signer_template_id"],
        chain_id=ids["chain_id"],
        station_id=station,
    )


def _decode_ready_reply(cur: _Cursor) -> ReadyReply:
    code, text = _decode_code_and_text(cur, success_allowed=True)
    return ReadyReply(code=code, message=text)


def _decode_device_report(cur: _Cursor) -> DeviceReport:
    outcome = _enum_field(cur, ReportOutcome, "outcome")
    stage = cur.u8("stage")
    part = _enum_field(cur, ReportPartState, "part_state")
    pos = cur.pos
    code_value = cur.u16("code")
    code = ReturnCode.from_value(code_value)
    if code is None:
        raise cur.fail(f"field code at byte {pos} is 0x{code_value:04X}, not a known return code")
    sn = cur.take(9, "device_sn")
    pub = cur.take(PUBLIC_KEY_SIZE, "device_public_key")
    pos = cur.pos
    station_len = cur.u8("station_id_length")
    if station_len > MAX_STATION_ID_BYTES:
        raise cur.fail(
            f"field station_id_length at byte {pos} is {station_len}, limit {MAX_STATION_ID_BYTES}"
        )
    station = cur.text(station_len, "station_id") if station_len else None
    pos = cur.pos
    length = cur.u16("message_length")
    if length > MAX_REPORT_MESSAGE_BYTES:
        raise cur.fail(
            f"field message_length at byte {pos} is {length}, limit {MAX_REPORT_MESSAGE_BYTES}"
        )
    text = cur.text(length, "message")
    cur.end()
    return DeviceReport(outcome, stage, part, code, sn, pub, station, text)


def _decode_report_ack(cur: _Cursor) -> ReportAck:
    state = _enum_field(cur, RecordedState, "state")
    cur.end()
    return ReportAck(state)


_E = TypeVar("_E", ReportOutcome, ReportPartState, RecordedState, DeviceType)


def _enum_field(cur: _Cursor, enum: type[_E], field: str) -> _E:
    pos = cur.pos
    value = cur.u8(field)
    try:
        return enum(value)
    except ValueError:
        known = ", ".join(str(int(item)) for item in enum)
        raise cur.fail(f"field {field} at byte {pos} is {value}, expected one of {known}") from None


def decode(header: Header, body: bytes) -> Message:
    """Decode the body of a message whose header :func:`parse_header` accepted.

    Raises :class:`ProtocolError` (MALFORMED_BODY) if ``body`` is not exactly
    ``header.body_length`` bytes or does not decode as the header's message type.
    """
    raw = bytes(body)
    what = _TYPE_NAMES[header.msg_type]
    if len(raw) != header.body_length:
        raise ProtocolError(
            ReturnCode.MALFORMED_BODY,
            f"{what}: header announces {header.body_length} body bytes, got {len(raw)}",
        )
    cur = _Cursor(raw, what)
    if header.msg_type is MessageType.CERT_REQUEST:
        return _decode_cert_request(cur)
    if header.msg_type is MessageType.CERT_REQUEST2:
        return _decode_cert_request2(cur)
    if header.msg_type is MessageType.CERT_REPLY:
        return _decode_cert_reply(cur)
    if header.msg_type is MessageType.READY_REQUEST:
        return _decode_ready_request(cur)
    if header.msg_type is MessageType.READY_REPLY:
        return _decode_ready_reply(cur)
    if header.msg_type is MessageType.DEVICE_REPORT:
        return _decode_device_report(cur)
    if header.msg_type is MessageType.REPORT_ACK:
        return _decode_report_ack(cur)
    return _decode_error_reply(cur)


def message_type_of(msg: Message) -> MessageType:
    """The header type byte for a message object."""
    if isinstance(msg, CertRequest2):
        return MessageType.CERT_REQUEST2
    if isinstance(msg, CertRequest):
        return MessageType.CERT_REQUEST
    if isinstance(msg, CertReply):
        return MessageType.CERT_REPLY
    if isinstance(msg, ErrorReply):
        return MessageType.ERROR_REPLY
    if isinstance(msg, ReadyRequest):
        return MessageType.READY_REQUEST
    if isinstance(msg, ReadyReply):
        return MessageType.READY_REPLY
    if isinstance(msg, DeviceReport):
        return MessageType.DEVICE_REPORT
    if isinstance(msg, ReportAck):
        return MessageType.REPORT_ACK
    raise TypeError(f"not a protocol message: {type(msg).__name__}")


# --------------------------------------------------------------------------------------------
# Incremental reader
# --------------------------------------------------------------------------------------------
class MessageReader:
    """Turns a byte stream into messages: ``feed(bytes)``, then ``next_message()`` until None.

    ``accept`` limits the message types this side expects (a server passes
    ``{MessageType.CERT_REQUEST, MessageType.READY_REQUEST}``); another type is refused with
    UNKNOWN_MESSAGE_TYPE as soon as its header arrives. ``versions`` are the protocol versions
    this side speaks (default: all of this library's). At most ``max_buffer`` unconsumed bytes
    are held (default: two maximal messages; the protocol is request/response, so an honest
    peer never sends more). Once a :class:`ProtocolError` has been raised, every later call
    raises it again.
    """

    def __init__(
        self,
        accept: Iterable[MessageType] | None = None,
        *,
        max_body_size: int = MAX_BODY_SIZE,
        max_buffer: int | None = None,
        versions: Iterable[int] = SUPPORTED_VERSIONS,
    ) -> None:
        self._versions = frozenset(versions)
        if not 0 <= max_body_size <= MAX_BODY_SIZE:
            raise ValueError(f"max_body_size must be 0..{MAX_BODY_SIZE}, got {max_body_size}")
        self._accept = None if accept is None else frozenset(MessageType(t) for t in accept)
        self._max_body = max_body_size
        self._max_buffer = 2 * (HEADER_SIZE + max_body_size) if max_buffer is None else max_buffer
        if self._max_buffer < HEADER_SIZE + max_body_size:
            raise ValueError("max_buffer must hold at least one message of max_body_size")
        self._buf = bytearray()
        self._header: Header | None = None
        self._error: ProtocolError | None = None
        self.last_version = 1  # header version of the last message returned

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as a message."""
        return len(self._buf)

    @property
    def failed(self) -> bool:
        """True once a protocol error has been raised (the connection must be closed)."""
        return self._error is not None

    def _raise(self, error: ProtocolError) -> ProtocolError:
        self._error = error
        return error

    def feed(self, data: bytes) -> None:
        """Append received bytes. Raises ProtocolError if more than ``max_buffer`` would wait."""
        if self._error is not None:
            raise self._error
        self._buf += data
        if len(self._buf) > self._max_buffer:
            self._current_header()  # a bad header is the better diagnosis: raise it first
            raise self._raise(
                ProtocolError(
                    ReturnCode.BODY_TOO_LARGE,
                    f"receive buffer limit: {len(self._buf) - len(data)} unconsumed bytes plus"
                    f" {len(data)} new exceed {self._max_buffer}",
                )
            )

    def bytes_needed(self) -> int:
        """How many more bytes complete the message being received (0: one is complete).

        Before the header is complete this counts only the header's missing bytes; after it,
        the rest of the body. Raises the header's ProtocolError if the header is bad.
        """
        if self._error is not None:
            raise self._error
        header = self._current_header()
        if header is None:
            return HEADER_SIZE - len(self._buf)
        return max(0, HEADER_SIZE + header.body_length - len(self._buf))

    def _current_header(self) -> Header | None:
        if self._header is None and len(self._buf) >= HEADER_SIZE:
            try:
                header = parse_header(
                    bytes(self._buf[:HEADER_SIZE]),
                    max_body_size=self._max_body,
                    versions=self._versions,
                )
            except ProtocolError as exc:
                raise self._raise(exc) from None
            if self._accept is not None and header.msg_type not in self._accept:
                expected = ", ".join(sorted(_TYPE_NAMES[t] for t in self._accept))
                raise self._raise(
                    ProtocolError(
                        ReturnCode.UNKNOWN_MESSAGE_TYPE,
                        f"header byte 5: message type 0x{header.msg_type:02X}"
                        f" ({_TYPE_NAMES[header.msg_type]}) not expected here;"
                        f" expected {expected}",
                    )
                )
            self._header = header
        return self._header

    def next_message(self) -> Message | None:
        """The next complete message, or None if more bytes are needed."""
        if self._error is not None:
            raise self._error
        header = self._current_header()
        if header is None:
            return None
        end = HEADER_SIZE + header.body_length
        if len(self._buf) < end:
            return None
        body = bytes(self._buf[HEADER_SIZE:end])
        try:
            msg = decode(header, body)
        except ProtocolError as exc:
            raise self._raise(exc) from None
        del self._buf[:end]
        self._header = None
        self.last_version = header.version
        return msg

    def feed_eof(self) -> None:
        """The peer closed the stream: raise ProtocolError if a message was cut short."""
        if self._error is not None:
            raise self._error
        if self._buf:
            header = self._current_header()
            if header is None:
                detail = f"{len(self._buf)} of the {HEADER_SIZE} header bytes"
            else:
                detail = (
                    f"{len(self._buf)} of {HEADER_SIZE + header.body_length} bytes of a"
                    f" {_TYPE_NAMES[header.msg_type]}"
                )
            raise self._raise(
                ProtocolError(
                    ReturnCode.MALFORMED_BODY,
                    f"connection closed in the middle of a message after {detail}",
                )
            )
