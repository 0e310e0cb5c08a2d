"""Return codes of the provisioning library and server (the ``atcaprov_return_codes.h`` set).

One :class:`ReturnCode` enum serves three places: the value ``provision()`` reports for a failed
stage, the code a server puts in an error reply on the wire, and the ``code`` attribute of the
exceptions that carry such a value (:class:`ReturnCodeError` and its subclasses, e.g.
``atcaprov.protocol.ProtocolError``). The numbers are part of the wire protocol: never renumber,
only add. Groups: 0x01-0x0F general, 0x10-0x1F protocol, 0x20-0x2F request refusals, 0x30-0x3F
provisioning outcome, 0xFF internal error. The names of the C header are exported at module
level (``ATCAPROV_SUCCESS``, ``ATCAPROV_E_BAD_MAGIC``, ...). See ``docs/protocol.md``.
"""

from __future__ import annotations

from enum import IntEnum

from .errors import AtcaprovError


class ReturnCode(IntEnum):
    """Result of a library call or server request; ``c_name`` is the C macro name."""

    SUCCESS = 0x00
    # general
    GENERAL_ERROR = 0x01
    BAD_PARAM = 0x02
    COMM_ERROR = 0x03
    DEVICE_ERROR = 0x04
    SERVER_ERROR = 0x05
    RECORDS_UNAVAILABLE = 0x06  # protocol version 2 (ReadyReply)
    # protocol (the peer sent bytes that are not a valid message, or none in time)
    BAD_MAGIC = 0x10
    UNSUPPORTED_VERSION = 0x11
    UNKNOWN_MESSAGE_TYPE = 0x12
    BODY_TOO_LARGE = 0x13
    MALFORMED_BODY = 0x14
    TIMEOUT = 0x15
    # request refusals (the server understood the request and will not sign it)
    SIGNER_NOT_FOUND = 0x20
    SIGNER_LOCKED = 0x21
    BAD_CONFIG_ZONE = 0x22
    BAD_PUBLIC_KEY = 0x23
    MISSING_SERIAL_NUMBER = 0x24
    TEMPLATE_MISMATCH = 0x25
    NO_PROFILE = 0x26  # protocol version 2 (ReadyReply)
    DEVICE_ALREADY_PROVISIONED = 0x27
    PUBLIC_KEY_REUSED = 0x28
    CERT_SERIAL_IN_USE = 0x29
    # provisioning outcome
    SIGNING_FAILED = 0x30
    ALREADY_PROVISIONED = 0x31
    CONFIG_MISMATCH = 0x32
    CERT_MISMATCH = 0x33
    VALIDATION_FAILED = 0x34
    # anything unexpected (a bug)
    INTERNAL_ERROR = 0xFF

    @property
    def c_name(self) -> str:
        """The macro name in ``atcaprov_return_codes.h`` (``ATCAPROV_E_BAD_MAGIC``...)."""
        if self is ReturnCode.SUCCESS:
            return "ATCAPROV_SUCCESS"
        return "ATCAPROV_E_" + self.name

    @property
    def description(self) -> str:
        """One line saying what the code means."""
        return _DESCRIPTIONS[self]

    @classmethod
    def from_value(cls, value: int) -> ReturnCode | None:
        """The code with this number, or ``None`` if the number is not a known code."""
        try:
            return cls(value)
        except ValueError:
            return None


_DESCRIPTIONS: dict[ReturnCode, str] = {
    ReturnCode.SUCCESS: "success",
    ReturnCode.GENERAL_ERROR: "unspecified error",
    ReturnCode.BAD_PARAM: "a caller passed an invalid parameter",
    ReturnCode.COMM_ERROR: "transport failure talking to the server (connect, send, receive)",
    ReturnCode.DEVICE_ERROR: "the secure element (chip) reported an error or did not answer",
    ReturnCode.SERVER_ERROR: "the server failed for a reason of its own (not the request)",
    ReturnCode.RECORDS_UNAVAILABLE: "the server cannot record signings now (record store)",
    ReturnCode.BAD_MAGIC: "message header does not start with the magic bytes 'APRV'",
    ReturnCode.UNSUPPORTED_VERSION: "message header names a protocol version this side lacks",
    ReturnCode.UNKNOWN_MESSAGE_TYPE: "message type byte is unknown or not expected here",
    ReturnCode.BODY_TOO_LARGE: "declared body length exceeds the protocol limit",
    ReturnCode.MALFORMED_BODY: "message body or header fields do not decode",
    ReturnCode.TIMEOUT: "no complete message within the time allowed",
    ReturnCode.SIGNER_NOT_FOUND: "no signer module with the requested signer id / key id",
    ReturnCode.SIGNER_LOCKED: "the signer module waits for its password",
    ReturnCode.BAD_CONFIG_ZONE: "the config zone in the request is unusable",
    ReturnCode.BAD_PUBLIC_KEY: "the device public key is not a point on P-256",
    ReturnCode.MISSING_SERIAL_NUMBER: "the config zone carries no device serial number",
    ReturnCode.TEMPLATE_MISMATCH: "template/chain ids do not match the signer's definitions",
    ReturnCode.NO_PROFILE: "the server has no signer profile for the requested signer key",
    ReturnCode.DEVICE_ALREADY_PROVISIONED: (
        "the ledger has this device installed with another key (server --allow-reprovision)"
    ),
    ReturnCode.PUBLIC_KEY_REUSED: "the ledger has this public key issued to another device",
    ReturnCode.CERT_SERIAL_IN_USE: (
        "the signer already issued another certificate with this certificate serial number"
    ),
    ReturnCode.SIGNING_FAILED: "the signer module failed to sign",
    ReturnCode.ALREADY_PROVISIONED: "the device is already provisioned (zones locked)",
    ReturnCode.CONFIG_MISMATCH: "the device config zone differs from the one expected",
    ReturnCode.CERT_MISMATCH: "a certificate rebuilt from the device differs from the issued one",
    ReturnCode.VALIDATION_FAILED: "certificate chain or device key validation failed",
    ReturnCode.INTERNAL_ERROR: "internal error (a bug)",
}


class ReturnCodeError(AtcaprovError):
    """An error that carries a :class:`ReturnCode` (``code``) and a human message (``message``)."""

    def __init__(self, code: ReturnCode, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code.c_name}: {message}")


ATCAPROV_SUCCESS = ReturnCode.SUCCESS
ATCAPROV_E_GENERAL_ERROR = ReturnCode.GENERAL_ERROR
ATCAPROV_E_BAD_PARAM = ReturnCode.BAD_PARAM
ATCAPROV_E_COMM_ERROR = ReturnCode.COMM_ERROR
ATCAPROV_E_DEVICE_ERROR = ReturnCode.DEVICE_ERROR
ATCAPROV_E_SERVER_ERROR = ReturnCode.SERVER_ERROR
ATCAPROV_E_RECORDS_UNAVAILABLE = ReturnCode.RECORDS_UNAVAILABLE
ATCAPROV_E_BAD_MAGIC = ReturnCode.BAD_MAGIC
ATCAPROV_E_UNSUPPORTED_VERSION = ReturnCode.UNSUPPORTED_VERSION
ATCAPROV_E_UNKNOWN_MESSAGE_TYPE = ReturnCode.UNKNOWN_MESSAGE_TYPE
ATCAPROV_E_BODY_TOO_LARGE = ReturnCode.BODY_TOO_LARGE
ATCAPROV_E_MALFORMED_BODY = ReturnCode.MALFORMED_BODY
ATCAPROV_E_TIMEOUT = ReturnCode.TIMEOUT
ATCAPROV_E_SIGNER_NOT_FOUND = ReturnCode.SIGNER_NOT_FOUND
ATCAPROV_E_SIGNER_LOCKED = ReturnCode.SIGNER_LOCKED
ATCAPROV_E_BAD_CONFIG_ZONE = ReturnCode.BAD_CONFIG_ZONE
ATCAPROV_E_BAD_PUBLIC_KEY = ReturnCode.BAD_PUBLIC_KEY
ATCAPROV_E_MISSING_SERIAL_NUMBER = ReturnCode.MISSING_SERIAL_NUMBER
ATCAPROV_E_TEMPLATE_MISMATCH = ReturnCode.TEMPLATE_MISMATCH
ATCAPROV_E_NO_PROFILE = ReturnCode.NO_PROFILE
ATCAPROV_E_DEVICE_ALREADY_PROVISIONED = ReturnCode.DEVICE_ALREADY_PROVISIONED
ATCAPROV_E_PUBLIC_KEY_REUSED = ReturnCode.PUBLIC_KEY_REUSED
ATCAPROV_E_CERT_SERIAL_IN_USE = ReturnCode.CERT_SERIAL_IN_USE
ATCAPROV_E_SIGNING_FAILED = ReturnCode.SIGNING_FAILED
ATCAPROV_E_ALREADY_PROVISIONED = ReturnCode.ALREADY_PROVISIONED
ATCAPROV_E_CONFIG_MISMATCH = ReturnCode.CONFIG_MISMATCH
ATCAPROV_E_CERT_MISMATCH = ReturnCode.CERT_MISMATCH
ATCAPROV_E_VALIDATION_FAILED = ReturnCode.VALIDATION_FAILED
ATCAPROV_E_INTERNAL_ERROR = ReturnCode.INTERNAL_ERROR
