"""The one exception hierarchy of atcaprov.

Everything the library, the server and the client raise on purpose derives from
:class:`AtcaprovError`. Errors that come from the chip keep its status byte (``status``); errors
from the host side of the CryptoAuthLib layer keep the ``ATCA_STATUS`` code the C library would
have returned (``atca_status``); errors of the server protocol keep the return code sent on the
wire (``code``). Layers add their own subclasses (atcacert, protocol, kit protocol) next to
their code, always rooted here.
"""

from __future__ import annotations

from enum import IntEnum


class AtcaStatus(IntEnum):
    """Host-side status codes of CryptoAuthLib (``ATCA_STATUS``), same values as the C enum."""

    SUCCESS = 0x00
    CONFIG_ZONE_LOCKED = 0x01
    DATA_ZONE_LOCKED = 0x02
    WAKE_FAILED = 0xD0
    CHECKMAC_VERIFY_FAILED = 0xD1
    PARSE_ERROR = 0xD2
    STATUS_CRC = 0xD4
    STATUS_UNKNOWN = 0xD5
    STATUS_ECC = 0xD6
    FUNC_FAIL = 0xE0
    GEN_FAIL = 0xE1
    BAD_PARAM = 0xE2
    INVALID_ID = 0xE3
    INVALID_SIZE = 0xE4
    BAD_CRC = 0xE5
    RX_FAIL = 0xE6
    RX_NO_RESPONSE = 0xE7
    RESYNC_WITH_WAKEUP = 0xE8
    PARITY_ERROR = 0xE9
    TX_TIMEOUT = 0xEA
    RX_TIMEOUT = 0xEB
    COMM_FAIL = 0xF0
    TIMEOUT = 0xF1
    BAD_OPCODE = 0xF2
    WAKE_SUCCESS = 0xF3
    EXECUTION_ERROR = 0xF4
    UNIMPLEMENTED = 0xF5
    ASSERT_FAILURE = 0xF6
    TX_FAIL = 0xF7
    NOT_LOCKED = 0xF8
    NO_DEVICES = 0xF9


class AtcaprovError(Exception):
    """Root of every error atcaprov raises on purpose."""


# --------------------------------------------------------------------------------------------
# Errors reported by the chip in a 4-byte status packet (count | status | crc).
# --------------------------------------------------------------------------------------------
class ChipStatusError(AtcaprovError):
    """The chip answered with a non-zero status byte.

    ``status`` is the byte the chip sent; ``atca_status`` the host code CryptoAuthLib maps it to.
    """

    status: int = 0
    atca_status: AtcaStatus = AtcaStatus.STATUS_UNKNOWN
    meaning: str = "unknown status"

    def __init__(self, status: int | None = None, detail: str = "") -> None:
        if status is not None:
            self.status = status
        self.detail = detail
        text = f"chip status 0x{self.status:02X} ({self.meaning})"
        if detail:
            text += f": {detail}"
        super().__init__(text)


class CheckmacVerifyError(ChipStatusError):
    status = 0x01
    atca_status = AtcaStatus.CHECKMAC_VERIFY_FAILED
    meaning = "CheckMac/Verify miscompare"


class ChipParseError(ChipStatusError):
    status = 0x03
    atca_status = AtcaStatus.PARSE_ERROR
    meaning = "parse error: bad length, opcode or parameter"


class EccFaultError(ChipStatusError):
    status = 0x05
    atca_status = AtcaStatus.STATUS_ECC
    meaning = "ECC fault: computation failed, retry"


class SelfTestError(ChipStatusError):
    status = 0x07
    atca_status = AtcaStatus.GEN_FAIL
    meaning = "self-test failure"


class HealthTestError(ChipStatusError):
    status = 0x08
    atca_status = AtcaStatus.GEN_FAIL
    meaning = "RNG health-test error"


class ExecutionError(ChipStatusError):
    status = 0x0F
    atca_status = AtcaStatus.EXECUTION_ERROR
    meaning = "execution error: not allowed in the current state or configuration"


class WakeTokenStatus(ChipStatusError):
    """0x11 where a command response was expected: the chip had just woken (no command run)."""

    status = 0x11
    atca_status = AtcaStatus.WAKE_SUCCESS
    meaning = "woke up, no command executed"


class WatchdogError(ChipStatusError):
    status = 0xEE
    atca_status = AtcaStatus.GEN_FAIL
    meaning = "watchdog about to expire, command not run"


class ChipCrcError(ChipStatusError):
    """The chip received a command whose CRC (or framing) was wrong."""

    status = 0xFF
    atca_status = AtcaStatus.STATUS_CRC
    meaning = "CRC or communication error on the command received"


_STATUS_CLASSES: dict[int, type[ChipStatusError]] = {
    cls.status: cls
    for cls in (
        CheckmacVerifyError,
        ChipParseError,
        EccFaultError,
        SelfTestError,
        HealthTestError,
        ExecutionError,
        WakeTokenStatus,
        WatchdogError,
        ChipCrcError,
    )
}


def chip_status_error(status: int, detail: str = "") -> ChipStatusError:
    """The typed exception for a chip status byte (unknown bytes give a plain ChipStatusError)."""
    cls = _STATUS_CLASSES.get(status)
    if cls is None:
        return ChipStatusError(status, detail)
    return cls(status, detail)


# --------------------------------------------------------------------------------------------
# Host-side communication errors (what the C library reports without a chip status byte).
# --------------------------------------------------------------------------------------------
class CommError(AtcaprovError):
    """A host-side communication failure. ``atca_status`` is the CryptoAuthLib code."""

    atca_status: AtcaStatus = AtcaStatus.COMM_FAIL

    def __init__(self, message: str, atca_status: AtcaStatus | None = None) -> None:
        if atca_status is not None:
            self.atca_status = atca_status
        super().__init__(message)


class MalformedPacketError(CommError):
    """Bytes that are not a well-formed command or response packet (length, count byte)."""

    atca_status = AtcaStatus.RX_FAIL


class ResponseCrcError(CommError):
    """A response packet whose CRC does not match its contents."""

    atca_status = AtcaStatus.BAD_CRC


class CommTimeoutError(CommError):
    """No (complete) answer within the time allowed."""

    atca_status = AtcaStatus.RX_TIMEOUT


class WakeFailedError(CommError):
    """The device did not answer a wake with 04 11 33 43."""

    atca_status = AtcaStatus.WAKE_FAILED


class NoDevicesError(CommError):
    """No device found on a bus or kit."""

    atca_status = AtcaStatus.NO_DEVICES


class BadParamError(AtcaprovError):
    """A caller passed a value the API cannot send (bad zone, slot, length...)."""

    atca_status = AtcaStatus.BAD_PARAM
