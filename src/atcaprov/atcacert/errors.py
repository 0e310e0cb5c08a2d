"""Typed errors of the atcacert layer, carrying the atcacert error codes of CryptoAuthLib.

``CertError.code`` is the ``ATCACERT_E_*`` value the C library (2016-2017 numbering) returns for
the same condition, so a firmware engineer can match our messages with theirs. ``CSourceError``
adds the file, line and column of a malformed C source file.
"""

from __future__ import annotations

from enum import IntEnum

from ..errors import AtcaprovError


class AtcacertCode(IntEnum):
    """``ATCACERT_E_*`` codes (values of CryptoAuthLib 2016/2017, ``atcacert.h``)."""

    SUCCESS = 0
    ERROR = 1
    BAD_PARAMS = 2
    BUFFER_TOO_SMALL = 3
    DECODING_ERROR = 4
    INVALID_DATE = 5
    UNIMPLEMENTED = 6
    UNEXPECTED_ELEM_SIZE = 7
    ELEM_MISSING = 8
    ELEM_OUT_OF_BOUNDS = 9
    BAD_CERT = 10
    WRONG_CERT_DEF = 11
    VERIFY_FAILED = 12


ATCACERT_E_SUCCESS = AtcacertCode.SUCCESS
ATCACERT_E_ERROR = AtcacertCode.ERROR
ATCACERT_E_BAD_PARAMS = AtcacertCode.BAD_PARAMS
ATCACERT_E_BUFFER_TOO_SMALL = AtcacertCode.BUFFER_TOO_SMALL
ATCACERT_E_DECODING_ERROR = AtcacertCode.DECODING_ERROR
ATCACERT_E_INVALID_DATE = AtcacertCode.INVALID_DATE
ATCACERT_E_UNIMPLEMENTED = AtcacertCode.UNIMPLEMENTED
ATCACERT_E_UNEXPECTED_ELEM_SIZE = AtcacertCode.UNEXPECTED_ELEM_SIZE
ATCACERT_E_ELEM_MISSING = AtcacertCode.ELEM_MISSING
ATCACERT_E_ELEM_OUT_OF_BOUNDS = AtcacertCode.ELEM_OUT_OF_BOUNDS
ATCACERT_E_BAD_CERT = AtcacertCode.BAD_CERT
ATCACERT_E_WRONG_CERT_DEF = AtcacertCode.WRONG_CERT_DEF
ATCACERT_E_VERIFY_FAILED = AtcacertCode.VERIFY_FAILED


class CertError(AtcaprovError):
    """An atcacert operation failed. ``code`` is the ATCACERT_E_* code, ``field`` names the
    certificate element or definition field concerned (``None`` when not about one field)."""

    def __init__(self, code: AtcacertCode, message: str, *, field: str | None = None) -> None:
        self.code = AtcacertCode(code)
        self.field = field
        self.message = message
        where = f" [{field}]" if field else ""
        super().__init__(f"ATCACERT_E_{self.code.name}{where}: {message}")


class CertDefError(CertError):
    """A certificate definition is inconsistent, or cannot fit every device of a product."""

    def __init__(
        self, message: str, *, field: str | None = None, code: AtcacertCode = AtcacertCode.BAD_CERT
    ) -> None:
        super().__init__(code, message, field=field)


class CSourceError(CertError):
    """A C source file (cert definition, cert info) could not be read: file, line, column."""

    def __init__(
        self, message: str, *, filename: str, line: int, column: int, expected: str | None = None
    ) -> None:
        self.filename = filename
        self.line = line
        self.column = column
        self.expected = expected
        text = f"{filename}:{line}:{column}: {message}"
        if expected:
            text += f" (expected {expected})"
        super().__init__(AtcacertCode.DECODING_ERROR, text)
