"""Certificate dates: the five atcacert date formats and the 3-byte compressed date encoding.

``CertDate`` is a plain (year, month, day, hour, minute, second) record rather than a
``datetime`` because Microchip's rebuild adds expire years field by field (a 29 February issue
date gives a 29 February expire date whatever the year), and we must reproduce that byte for
byte.

Compressed dates: bytes 64-66 of the record hold the low 5 bits of (issue year - 2000), the
month, day, hour and the low 5 bits of the expire years. Format version 0 stops there (issue
years 2000-2031, 0-31 expire years); formats 1 and 2 (CryptoAuthLib 3.7.5+) put bits 6-5 of
both into the high nibble of byte 71 (issue years 2000-2127, 0-127 expire years). Values
outside are refused with ``ATCACERT_E_INVALID_DATE``, never wrapped.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from typing import Literal, NamedTuple

from .errors import AtcacertCode, CertError


class DateFormat(IntEnum):
    """``atcacert_date_format_t``."""

    ISO8601_SEP = 0
    RFC5280_UTC = 1
    POSIX_UINT32_BE = 2
    POSIX_UINT32_LE = 3
    RFC5280_GEN = 4

    @property
    def c_name(self) -> str:
        return "DATEFMT_" + self.name

    @property
    def size(self) -> int:
        return DATE_FORMAT_SIZES[self]


DATE_FORMAT_SIZES: dict[DateFormat, int] = {
    DateFormat.ISO8601_SEP: 20,
    DateFormat.RFC5280_UTC: 13,
    DateFormat.POSIX_UINT32_BE: 4,
    DateFormat.POSIX_UINT32_LE: 4,
    DateFormat.RFC5280_GEN: 15,
}

COMP_ISSUE_YEAR_MIN = 2000
COMP_ISSUE_YEAR_MAX = 2127
"""Last issue year of formats 1 and 2 (7 bits of year - 2000)."""
COMP_EXPIRE_YEARS_MAX = 127
"""Longest validity of formats 1 and 2 (7 bits)."""
FORMAT0_ISSUE_YEAR_MAX = 2031
FORMAT0_EXPIRE_YEARS_MAX = 31
COMP_FORMATS = (0, 1, 2)
"""Format versions (low nibble of byte 70) CryptoAuthLib defines; 2 is for signatures larger
than P-256, which continue past byte 72."""


@dataclass(frozen=True, order=True)
class CertDate:
    """A UTC timestamp as atcacert handles it (no normalisation, no time zone)."""

    year: int
    month: int
    day: int
    hour: int = 0
    minute: int = 0
    second: int = 0

    @classmethod
    def from_datetime(cls, value: datetime) -> CertDate:
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return cls(value.year, value.month, value.day, value.hour, value.minute, value.second)

    def to_datetime(self) -> datetime:
        """As an aware UTC datetime (fails for dates the calendar does not have, e.g. 29 Feb)."""
        try:
            return datetime(
                self.year,
                self.month,
                self.day,
                self.hour,
                self.minute,
                self.second,
                tzinfo=timezone.utc,
            )
        except ValueError as exc:
            raise CertError(
                AtcacertCode.INVALID_DATE, f"{self} is not a calendar date: {exc}"
            ) from exc

    def plus_years(self, years: int) -> CertDate:
        return CertDate(
            self.year + years, self.month, self.day, self.hour, self.minute, self.second
        )

    def __str__(self) -> str:
        return (
            f"{self.year:04d}-{self.month:02d}-{self.day:02d} "
            f"{self.hour:02d}:{self.minute:02d}:{self.second:02d}"
        )


_MAX_DATES: dict[DateFormat, CertDate] = {
    DateFormat.ISO8601_SEP: CertDate(9999, 12, 31, 23, 59, 59),
    DateFormat.RFC5280_UTC: CertDate(2049, 12, 31, 23, 59, 59),
    DateFormat.POSIX_UINT32_BE: CertDate(2106, 2, 7, 6, 28, 15),
    DateFormat.POSIX_UINT32_LE: CertDate(2106, 2, 7, 6, 28, 15),
    DateFormat.RFC5280_GEN: CertDate(9999, 12, 31, 23, 59, 59),
}


def max_date(fmt: DateFormat) -> CertDate:
    """The 'no expiry' date of a format (used when expire years is 0)."""
    return _MAX_DATES[DateFormat(fmt)]


def _check_fields(d: CertDate) -> None:
    if not (
        1 <= d.month <= 12
        and 1 <= d.day <= 31
        and 0 <= d.hour <= 23
        and 0 <= d.minute <= 59
        and 0 <= d.second <= 59
    ):
        raise CertError(AtcacertCode.INVALID_DATE, f"date fields out of range: {d}")


def encode_date(fmt: DateFormat, d: CertDate) -> bytes:
    """Format a date as it appears in the certificate."""
    if not isinstance(fmt, DateFormat):
        fmt = DateFormat(fmt)
    _check_fields(d)
    if fmt is DateFormat.RFC5280_UTC:
        if not 1950 <= d.year <= 2049:
            raise CertError(
                AtcacertCode.INVALID_DATE, f"year {d.year} cannot be written as UTCTime (1950-2049)"
            )
        text = (
            f"{d.year % 100:02d}{d.month:02d}{d.day:02d}{d.hour:02d}{d.minute:02d}{d.second:02d}Z"
        )
    elif fmt is DateFormat.RFC5280_GEN:
        if not 0 <= d.year <= 9999:
            raise CertError(AtcacertCode.INVALID_DATE, f"year {d.year} out of 0-9999")
        text = f"{d.year:04d}{d.month:02d}{d.day:02d}{d.hour:02d}{d.minute:02d}{d.second:02d}Z"
    elif fmt is DateFormat.ISO8601_SEP:
        if not 0 <= d.year <= 9999:
            raise CertError(AtcacertCode.INVALID_DATE, f"year {d.year} out of 0-9999")
        text = f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}Z"
    else:
        seconds = calendar.timegm((d.year, d.month, d.day, d.hour, d.minute, d.second, 0, 0, 0))
        if not 0 <= seconds <= 0xFFFFFFFF:
            raise CertError(
                AtcacertCode.INVALID_DATE,
                f"{d} is outside the POSIX uint32 range (1970 - 2106-02-07)",
            )
        order: Literal["big", "little"] = "big" if fmt is DateFormat.POSIX_UINT32_BE else "little"
        return seconds.to_bytes(4, order)
    return text.encode("ascii")


_TEXT_FORMS: dict[DateFormat, re.Pattern[bytes]] = {
    DateFormat.RFC5280_UTC: re.compile(rb"(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z\Z"),
    DateFormat.RFC5280_GEN: re.compile(rb"(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z\Z"),
    DateFormat.ISO8601_SEP: re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z\Z"),
}
_SHAPES = {
    DateFormat.RFC5280_UTC: "YYMMDDhhmmssZ",
    DateFormat.RFC5280_GEN: "YYYYMMDDhhmmssZ",
    DateFormat.ISO8601_SEP: "YYYY-MM-DDThh:mm:ssZ",
}


def decode_date(fmt: DateFormat, data: bytes) -> CertDate:
    """Parse a date as it appears in the certificate."""
    if not isinstance(fmt, DateFormat):
        fmt = DateFormat(fmt)
    if len(data) != fmt.size:
        raise CertError(
            AtcacertCode.DECODING_ERROR,
            f"{fmt.c_name} date must be {fmt.size} bytes, got {len(data)}",
        )
    pattern = _TEXT_FORMS.get(fmt)
    if pattern is None:
        order: Literal["big", "little"] = "big" if fmt is DateFormat.POSIX_UINT32_BE else "little"
        value = datetime(1970, 1, 1) + timedelta(seconds=int.from_bytes(data, order))
        return CertDate(value.year, value.month, value.day, value.hour, value.minute, value.second)
    m = pattern.match(bytes(data))
    if m is None:
        raise CertError(
            AtcacertCode.DECODING_ERROR,
            f"{fmt.c_name} date {bytes(data)!r} is not of the form {_SHAPES[fmt]}",
        )
    year, month, day, hour, minute, second = map(int, m.groups())
    if fmt is DateFormat.RFC5280_UTC:
        year += 2000 if year < 50 else 1900
    return CertDate(year, month, day, hour, minute, second)


class CompressedDates(NamedTuple):
    """Dates as a compressed certificate holds them (a tuple: cheap on the build path).

    ``enc`` is bytes 64-66, ``ext`` the high nibble of byte 71 (``byte71 & 0xF0``: bits 7-6 =
    bits 6-5 of year - 2000, bits 5-4 = bits 6-5 of the expire years; 0 in format 0).
    """

    format_version: int
    enc: bytes
    ext: int = 0

    @property
    def hashed(self) -> bytes:
        """The date bytes the hashed SN sources append: 3 in format 0, 4 in formats 1 and 2."""
        return self.enc if self.format_version == 0 else self.enc + bytes([self.ext])


def compressed_format_for(issue: CertDate, expire_years: int) -> int:
    """The format version Microchip's build picks: 0 when the dates fit it, otherwise 1.

    Refuses (``ATCACERT_E_INVALID_DATE``, naming the field) what no format can hold: an issue
    year outside 2000-2127 or a validity outside 0-127 years.
    """
    if not COMP_ISSUE_YEAR_MIN <= issue.year <= COMP_ISSUE_YEAR_MAX:
        raise CertError(
            AtcacertCode.INVALID_DATE,
            f"issue year {issue.year} cannot be stored in a compressed certificate "
            f"(limit {COMP_ISSUE_YEAR_MIN}-{COMP_ISSUE_YEAR_MAX}; format 0 stops at "
            f"{FORMAT0_ISSUE_YEAR_MAX})",
            field="issue_date",
        )
    if not 0 <= expire_years <= COMP_EXPIRE_YEARS_MAX:
        raise CertError(
            AtcacertCode.INVALID_DATE,
            f"expire years {expire_years} cannot be stored in a compressed "
            f"certificate (limit 0-{COMP_EXPIRE_YEARS_MAX}; format 0 stops at "
            f"{FORMAT0_EXPIRE_YEARS_MAX})",
            field="expire_years",
        )
    if issue.year > FORMAT0_ISSUE_YEAR_MAX or expire_years > FORMAT0_EXPIRE_YEARS_MAX:
        return 1
    return 0


def encode_compressed_dates(
    issue: CertDate, expire_years: int, format_version: int | None = None
) -> CompressedDates:
    """Encode the dates (minutes/seconds are dropped) in ``format_version``, by default the one
    :func:`compressed_format_for` picks. Format 0 refuses what only formats 1-2 can hold."""
    chosen = compressed_format_for(issue, expire_years)
    if format_version is None:
        format_version = chosen
    elif format_version not in COMP_FORMATS:
        raise CertError(
            AtcacertCode.BAD_CERT,
            f"compressed certificate format version {format_version} is not one of "
            f"{', '.join(map(str, COMP_FORMATS))}",
            field="format_version",
        )
    elif format_version == 0 and chosen != 0:
        field = "issue_date" if issue.year > FORMAT0_ISSUE_YEAR_MAX else "expire_years"
        raise CertError(
            AtcacertCode.INVALID_DATE,
            f"issue year {issue.year} with {expire_years} expire years does not fit "
            f"format 0 (issue years {COMP_ISSUE_YEAR_MIN}-{FORMAT0_ISSUE_YEAR_MAX}, "
            f"expire years 0-{FORMAT0_EXPIRE_YEARS_MAX})",
            field=field,
        )
    if not (1 <= issue.month <= 12 and 1 <= issue.day <= 31 and 0 <= issue.hour <= 23):
        raise CertError(
            AtcacertCode.INVALID_DATE,
            f"issue date fields out of range: {issue}",
            field="issue_date",
        )
    year = issue.year - 2000
    value = (
        ((year & 0x1F) << 19)
        | (issue.month << 15)
        | (issue.day << 10)
        | (issue.hour << 5)
        | (expire_years & 0x1F)
    )
    ext = ((year & 0x60) << 1) | ((expire_years & 0x60) >> 1)
    return CompressedDates(format_version, value.to_bytes(3, "big"), ext)


def expire_date_for(issue: CertDate, expire_years: int, expire_format: DateFormat) -> CertDate:
    """Expire date as Microchip's rebuild computes it: issue + N years, or the format's max."""
    if expire_years == 0:
        return max_date(expire_format)
    return CertDate(issue.year + expire_years, issue.month, issue.day, issue.hour)


def decode_compressed_dates(
    enc: bytes, expire_format: DateFormat, *, format_version: int = 0, ext: int = 0
) -> tuple[CertDate, CertDate, int]:
    """(issue date, expire date, expire years) of bytes 64-66 of a compressed cert; in formats
    1 and 2 ``ext`` (byte 71, only its high nibble counts) gives bits 6-5 of the year and of
    the expire years."""
    if len(enc) != 3:
        raise CertError(AtcacertCode.BAD_PARAMS, f"encoded dates are 3 bytes, got {len(enc)}")
    value = int.from_bytes(enc, "big")
    year = value >> 19
    years = value & 0x1F
    if format_version in (1, 2):
        year |= (ext & 0xC0) >> 1
        years |= (ext & 0x30) << 1
    issue = CertDate(2000 + year, (value >> 15) & 0x0F, (value >> 10) & 0x1F, (value >> 5) & 0x1F)
    return issue, expire_date_for(issue, years, expire_format), years
