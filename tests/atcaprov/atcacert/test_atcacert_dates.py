"""Date formats and the compressed-date encoding against the facts-file vectors."""

from __future__ import annotations

import pytest

from atcaprov.atcacert import (
    ATCACERT_E_DECODING_ERROR,
    ATCACERT_E_INVALID_DATE,
    CertDate,
    CertError,
    DateFormat,
    decode_compressed_dates,
    decode_date,
    encode_compressed_dates,
    encode_date,
    max_date,
)


def test_compressed_date_vectors() -> None:
    for issue, years, enc in (
        (CertDate(2021, 3, 7, 10), 28, "A99D5C"),
        (CertDate(2000, 1, 1, 0), 0, "008400"),
    ):
        dates = encode_compressed_dates(issue, years)
        assert (dates.format_version, dates.enc, dates.ext) == (0, bytes.fromhex(enc), 0)
        assert dates.hashed == bytes.fromhex(enc)


@pytest.mark.parametrize(
    ("issue", "years", "enc", "ext"),
    [
        # worked by hand from the bit layout of cryptoauth-facts.md 5.1:
        # 2127-12-31 23h + 127 y: 5-bit fields all ones but the month; bits 6-5 = 11 and 11
        (CertDate(2127, 12, 31, 23), 127, "FE7EFF", 0xF0),
        # 2032-01-01 0h + 40 y: year 32 = 01|00000, years 40 = 01|01000
        (CertDate(2032, 1, 1, 0), 40, "008408", 0x50),
        # 2064-06-15 12h + 5 y: year 64 = 10|00000 -> byte 71 bit 7 only
        (CertDate(2064, 6, 15, 12), 5, "033D85", 0x80),
        # 2031-01-01 0h + 64 y: only the expire years need format 1: 10|00000 -> bit 5
        (CertDate(2031, 1, 1, 0), 64, "F88400", 0x20),
    ],
)
def test_format_1_vectors(issue: CertDate, years: int, enc: str, ext: int) -> None:
    dates = encode_compressed_dates(issue, years)
    assert (dates.format_version, dates.enc.hex().upper(), dates.ext) == (1, enc, ext)
    assert dates.hashed == bytes.fromhex(enc) + bytes([ext])


def test_decode_vector_gives_the_rebuilt_dates() -> None:
    issue, expire, years = decode_compressed_dates(bytes.fromhex("A99D5C"), DateFormat.RFC5280_UTC)
    assert (issue, expire, years) == (CertDate(2021, 3, 7, 10), CertDate(2049, 3, 7, 10), 28)
    assert encode_date(DateFormat.RFC5280_UTC, issue) == b"210307100000Z"
    assert encode_date(DateFormat.RFC5280_UTC, expire) == b"490307100000Z"


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (DateFormat.RFC5280_UTC, CertDate(2049, 12, 31, 23, 59, 59)),
        (DateFormat.RFC5280_GEN, CertDate(9999, 12, 31, 23, 59, 59)),
        (DateFormat.ISO8601_SEP, CertDate(9999, 12, 31, 23, 59, 59)),
        (DateFormat.POSIX_UINT32_BE, CertDate(2106, 2, 7, 6, 28, 15)),
        (DateFormat.POSIX_UINT32_LE, CertDate(2106, 2, 7, 6, 28, 15)),
    ],
)
def test_zero_expire_years_means_max_date(fmt: DateFormat, expected: CertDate) -> None:
    _issue, expire, years = decode_compressed_dates(bytes.fromhex("008400"), fmt)
    assert years == 0 and expire == expected == max_date(fmt)


def test_posix_max_is_uint32_max() -> None:
    assert (
        encode_date(DateFormat.POSIX_UINT32_BE, max_date(DateFormat.POSIX_UINT32_BE))
        == b"\xff\xff\xff\xff"
    )


@pytest.mark.parametrize(
    ("fmt", "raw"),
    [
        (DateFormat.RFC5280_UTC, b"210307100000Z"),
        (DateFormat.RFC5280_GEN, b"20210307100000Z"),
        (DateFormat.ISO8601_SEP, b"2021-03-07T10:00:00Z"),
        (DateFormat.POSIX_UINT32_BE, (1615111200).to_bytes(4, "big")),
        (DateFormat.POSIX_UINT32_LE, (1615111200).to_bytes(4, "little")),
    ],
)
def test_every_format_both_ways(fmt: DateFormat, raw: bytes) -> None:
    date = CertDate(2021, 3, 7, 10)
    assert encode_date(fmt, date) == raw
    assert decode_date(fmt, raw) == date
    assert len(raw) == fmt.size


def test_utc_century_rule() -> None:
    assert decode_date(DateFormat.RFC5280_UTC, b"500101000000Z").year == 1950
    assert decode_date(DateFormat.RFC5280_UTC, b"491231235959Z").year == 2049
    with pytest.raises(CertError) as err:
        encode_date(DateFormat.RFC5280_UTC, CertDate(2050, 1, 1))
    assert err.value.code == ATCACERT_E_INVALID_DATE


@pytest.mark.parametrize(
    ("issue", "years", "field", "limit"),
    [
        (CertDate(2128, 1, 1), 1, "issue_date", "2000-2127"),
        (CertDate(1999, 12, 31, 23), 1, "issue_date", "2000-2127"),
        (CertDate(2020, 1, 1), 128, "expire_years", "0-127"),
        (CertDate(2020, 1, 1), -1, "expire_years", "0-127"),
    ],
)
def test_what_no_format_holds_is_refused_not_wrapped(
    issue: CertDate, years: int, field: str, limit: str
) -> None:
    with pytest.raises(CertError) as err:
        encode_compressed_dates(issue, years)
    assert err.value.code == ATCACERT_E_INVALID_DATE
    assert err.value.field == field and limit in str(err.value)


@pytest.mark.parametrize(
    ("issue", "years", "field"),
    [
        (CertDate(2032, 1, 1), 1, "issue_date"),
        (CertDate(2020, 1, 1), 32, "expire_years"),
    ],
)
def test_format_0_on_request_refuses_extended_dates(
    issue: CertDate, years: int, field: str
) -> None:
    with pytest.raises(CertError) as err:
        encode_compressed_dates(issue, years, format_version=0)
    assert err.value.code == ATCACERT_E_INVALID_DATE and err.value.field == field
    assert "format 0" in str(err.value)
    assert encode_compressed_dates(issue, years).format_version == 1


@pytest.mark.parametrize("raw", [b"21030710000Z!", b"2103071000000", b"21-30710000Z"])
def test_bad_text_dates(raw: bytes) -> None:
    with pytest.raises(CertError) as err:
        decode_date(DateFormat.RFC5280_UTC, raw)
    assert err.value.code == ATCACERT_E_DECODING_ERROR


def test_all_issue_fields_round_trip_through_compressed_form() -> None:
    for year in (2000, 2015, 2031, 2032, 2063, 2064, 2095, 2096, 2127):
        for month in (1, 12):
            for day in (1, 31):
                for hour in (0, 23):
                    for years in (0, 1, 31, 32, 63, 64, 95, 96, 127):
                        d = CertDate(year, month, day, hour)
                        enc = encode_compressed_dates(d, years)
                        assert enc.format_version == (0 if year <= 2031 and years <= 31 else 1)
                        issue, _exp, got = decode_compressed_dates(
                            enc.enc,
                            DateFormat.RFC5280_GEN,
                            format_version=enc.format_version,
                            ext=enc.ext,
                        )
                        assert (issue, got) == (d, years)
