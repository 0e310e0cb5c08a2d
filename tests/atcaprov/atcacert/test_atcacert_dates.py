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
    assert encode_compressed_dates(CertDate(2021, 3, 7, 10), 28) == bytes.fromhex("A99D5C")
    assert encode_compressed_dates(CertDate(2000, 1, 1, 0), 0) == bytes.fromhex("008400")


def test_decode_vector_gives_the_rebuilt_dates() -> None:
    issue, expire, years = decode_compressed_dates(bytes.fromhex("A99D5C"),
                                                   DateFormat.RFC5280_UTC)
    assert (issue, expire, years) == (CertDate(2021, 3, 7, 10), CertDate(2049, 3, 7, 10), 28)
    assert encode_date(DateFormat.RFC5280_UTC, issue) == b"210307100000Z"
    assert encode_date(DateFormat.RFC5280_UTC, expire) == b"490307100000Z"


@pytest.mark.parametrize(("fmt", "expected"), [
    (DateFormat.RFC5280_UTC, CertDate(2049, 12, 31, 23, 59, 59)),
    (DateFormat.RFC5280_GEN, CertDate(9999, 12, 31, 23, 59, 59)),
    (DateFormat.ISO8601_SEP, CertDate(9999, 12, 31, 23, 59, 59)),
    (DateFormat.POSIX_UINT32_BE, CertDate(2106, 2, 7, 6, 28, 15)),
    (DateFormat.POSIX_UINT32_LE, CertDate(2106, 2, 7, 6, 28, 15)),
])
def test_zero_expire_years_means_max_date(fmt: DateFormat, expected: CertDate) -> None:
    _issue, expire, years = decode_compressed_dates(bytes.fromhex("008400"), fmt)
    assert years == 0 and expire == expected == max_date(fmt)


def test_posix_max_is_uint32_max() -> None:
    assert encode_date(DateFormat.POSIX_UINT32_BE, max_date(DateFormat.POSIX_UINT32_BE)) \
        == b"\xff\xff\xff\xff"


@pytest.mark.parametrize(("fmt", "raw"), [
    (DateFormat.RFC5280_UTC, b"210307100000Z"),
    (DateFormat.RFC5280_GEN, b"20210307100000Z"),
    (DateFormat.ISO8601_SEP, b"2021-03-07T10:00:00Z"),
    (DateFormat.POSIX_UINT32_BE, (1615111200).to_bytes(4, "big")),
    (DateFormat.POSIX_UINT32_LE, (1615111200).to_bytes(4, "little")),
])
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


def test_issue_year_past_2031_is_refused_not_wrapped() -> None:
    with pytest.raises(CertError) as err:
        encode_compressed_dates(CertDate(2032, 1, 1), 1)
    assert err.value.code == ATCACERT_E_INVALID_DATE
    assert err.value.field == "issue_date"
    assert "2031" in str(err.value)


def test_expire_years_past_31_is_refused() -> None:
    with pytest.raises(CertError) as err:
        encode_compressed_dates(CertDate(2020, 1, 1), 32)
    assert err.value.field == "expire_years" and "31" in str(err.value)


@pytest.mark.parametrize("raw", [b"21030710000Z!", b"2103071000000", b"21-30710000Z"])
def test_bad_text_dates(raw: bytes) -> None:
    with pytest.raises(CertError) as err:
        decode_date(DateFormat.RFC5280_UTC, raw)
    assert err.value.code == ATCACERT_E_DECODING_ERROR


def test_all_issue_fields_round_trip_through_compressed_form() -> None:
    for year in (2000, 2015, 2031):
        for month in (1, 12):
            for day in (1, 31):
                for hour in (0, 23):
                    for years in (0, 1, 31):
                        d = CertDate(year, month, day, hour)
                        issue, _exp, got = decode_compressed_dates(
                            encode_compressed_dates(d, years), DateFormat.RFC5280_GEN)
                        assert (issue, got) == (d, years)
