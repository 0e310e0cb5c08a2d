"""Compressed certificate formats 0 and 1: issue years 2000-2127, validities 0-127 years.

Property tests build a device certificate, check its record byte by byte against the layout of
cryptoauth-facts.md 5.1 (computed here with plain bit arithmetic), check its serial number
against SHA-256 over the bytes 5.1 names, verify it against the signer, then compress and
rebuild it to the identical DER. The definitions: issue date UTCTime (a template made in 2021)
for issue years up to 2049, GeneralizedTime (a template made in 2060) past it; expire dates
GeneralizedTime (9999-12-31 23:59:59 when the validity is 0).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from cryptography import x509
from hypothesis import example, given, settings
from hypothesis import strategies as st

from atcaprov.atcacert import (
    CertDate,
    CertDef,
    DateFormat,
    SnSource,
    build_cert,
    compress,
    generate_cert_sn,
    make_standard_cert_defs,
    rebuild,
)
from tests.support.keys import key, pub, signer_fn
from tests.support.pki import SIGNER_ID, Pki, atcacert_pki

UTC = timezone.utc
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
DEVICE_SN = bytes.fromhex("0123C5D92CA571EEEE")
HASH_SOURCES = (SnSource.PUB_KEY_HASH, SnSource.DEVICE_SN_HASH)


@functools.cache
def _pki() -> Pki:
    return atcacert_pki(device_expire_years=40)  # device template: UTCTime -> GeneralizedTime


@functools.cache
def _base_def(generalized_issue: bool) -> CertDef:
    p = _pki()
    if not generalized_issue:
        return p.defs.device
    later = make_standard_cert_defs(
        p.root_cert,
        p.signer_cert,
        now=datetime(2060, 1, 1, tzinfo=UTC),
        signer_id=SIGNER_ID,
        device_common_name="Test Device",
        device_organization="Example Inc",
        device_expire_years=40,
    )
    return later.device


@functools.cache
def _def(generalized_issue: bool, years: int, sn_source: SnSource) -> CertDef:
    d = replace(_base_def(generalized_issue), expire_years=years, sn_source=sn_source)
    assert d.expire_date_format == DateFormat.RFC5280_GEN
    want = DateFormat.RFC5280_GEN if generalized_issue else DateFormat.RFC5280_UTC
    assert d.issue_date_format == want
    return d


def _tail_by_hand(issue: datetime, years: int) -> tuple[bytes, int, int]:
    """(bytes 64-66, format version, byte 71) from the facts' bit layout, independently."""
    y = issue.year - 2000
    bits = (
        format(y & 0x1F, "05b")
        + format(issue.month, "04b")
        + format(issue.day, "05b")
        + format(issue.hour, "05b")
        + format(years & 0x1F, "05b")
    )
    enc = int(bits, 2).to_bytes(3, "big")
    extended = issue.year > 2031 or years > 31
    byte71 = ((y >> 5) << 6) | ((years >> 5) << 4) if extended else 0
    return enc, int(extended), byte71


def _expected_sn(
    source: SnSource, size: int, public_key: bytes, device_sn: bytes, record: bytes
) -> bytes:
    """SHA-256 over key or chip SN, bytes 64-66, and (formats 1, 2) byte 71 & 0xF0."""
    head = public_key if source == SnSource.PUB_KEY_HASH else device_sn
    msg = head + record[64:67]
    if record[70] & 0x0F in (1, 2):
        msg += bytes([record[71] & 0xF0])
    sn = bytearray(hashlib.sha256(msg).digest()[:size])
    sn[0] = (sn[0] & 0x7F) | 0x40
    return bytes(sn)


def _expire(issue: datetime, years: int) -> datetime:
    if years == 0:
        return datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    return issue.replace(year=issue.year + years)


@settings(max_examples=150, deadline=None)
@given(
    year=st.integers(2000, 2127),
    years=st.integers(0, 127),
    month=st.integers(1, 12),
    day=st.integers(1, 28),
    hour=st.integers(0, 23),
    k=st.integers(1, P256_N - 1),
    source=st.sampled_from(HASH_SOURCES),
    device_sn=st.binary(min_size=9, max_size=9),
)
@example(
    year=2031,
    years=31,
    month=12,
    day=28,
    hour=23,
    k=3,
    source=SnSource.PUB_KEY_HASH,
    device_sn=DEVICE_SN,
)
@example(
    year=2031,
    years=32,
    month=1,
    day=1,
    hour=0,
    k=4,
    source=SnSource.DEVICE_SN_HASH,
    device_sn=DEVICE_SN,
)
@example(
    year=2032,
    years=31,
    month=1,
    day=1,
    hour=0,
    k=5,
    source=SnSource.PUB_KEY_HASH,
    device_sn=DEVICE_SN,
)
@example(
    year=2032,
    years=32,
    month=6,
    day=15,
    hour=12,
    k=6,
    source=SnSource.DEVICE_SN_HASH,
    device_sn=DEVICE_SN,
)
@example(
    year=2000,
    years=0,
    month=1,
    day=1,
    hour=0,
    k=7,
    source=SnSource.PUB_KEY_HASH,
    device_sn=DEVICE_SN,
)
@example(
    year=2127,
    years=127,
    month=12,
    day=28,
    hour=23,
    k=8,
    source=SnSource.PUB_KEY_HASH,
    device_sn=DEVICE_SN,
)
@example(
    year=2049,
    years=64,
    month=12,
    day=28,
    hour=23,
    k=9,
    source=SnSource.PUB_KEY_HASH,
    device_sn=DEVICE_SN,
)
@example(
    year=2050,
    years=96,
    month=1,
    day=1,
    hour=0,
    k=10,
    source=SnSource.DEVICE_SN_HASH,
    device_sn=DEVICE_SN,
)
def test_build_compress_rebuild_over_every_date(
    year: int,
    years: int,
    month: int,
    day: int,
    hour: int,
    k: int,
    source: SnSource,
    device_sn: bytes,
) -> None:
    p = _pki()
    d = _def(year >= 2050, years, source)
    issue = datetime(year, month, day, hour, tzinfo=UTC)
    device_key = pub(key(k))
    built = build_cert(
        d,
        public_key=device_key,
        issue_date=issue,
        signer_id=SIGNER_ID,
        sign=signer_fn(p.signer_key),
        device_sn=device_sn,
        ca_public_key=pub(p.signer_key),
    )
    record = built.comp_cert

    enc, fmt, byte71 = _tail_by_hand(issue, years)
    assert len(record) == 72
    assert record[64:67] == enc
    assert record[70] == (int(source) << 4) | fmt
    assert record[71] == byte71

    cert = x509.load_der_x509_certificate(built.cert_der)
    cert.verify_directly_issued_by(x509.load_der_x509_certificate(p.signer_cert))
    assert cert.not_valid_before_utc == issue
    assert cert.not_valid_after_utc == _expire(issue, years)
    size = d.std_cert_elements.cert_sn.count
    assert cert.serial_number.to_bytes(size, "big") == _expected_sn(
        source, size, device_key, device_sn, record
    )

    assert compress(d, built.cert_der) == record
    rebuilt = rebuild(d, record, device_key, device_sn, ca_public_key=pub(p.signer_key))
    assert rebuilt == built.cert_der
    x509.load_der_x509_certificate(rebuilt).verify_directly_issued_by(
        x509.load_der_x509_certificate(p.signer_cert)
    )


# ---- the facts-file serial-number rule for format 1, on fixed values ---------------------------
@pytest.mark.parametrize("source", HASH_SOURCES)
def test_format_1_serial_number_hashes_the_fourth_date_byte(source: SnSource) -> None:
    """2032-01-01 00h + 40 years: bytes 64-66 = 00 84 08 and byte 71 = 0x50 (worked by hand:
    year 32 = 01|00000, 40 years = 01|01000); the SN hashes those four bytes."""
    p = _pki()
    d = _def(False, 40, source)
    issue = datetime(2032, 1, 1, 0, tzinfo=UTC)
    device_key = pub(key(4242))
    built = build_cert(
        d,
        public_key=device_key,
        issue_date=issue,
        signer_id=SIGNER_ID,
        sign=signer_fn(p.signer_key),
        device_sn=DEVICE_SN,
        ca_public_key=pub(p.signer_key),
    )
    assert built.comp_cert[64:67] == bytes.fromhex("008408")
    assert built.comp_cert[70] & 0x0F == 1 and built.comp_cert[71] == 0x50
    head = device_key if source == SnSource.PUB_KEY_HASH else DEVICE_SN
    four = bytearray(hashlib.sha256(head + bytes.fromhex("008408") + b"\x50").digest()[:16])
    four[0] = (four[0] & 0x7F) | 0x40
    three = bytearray(hashlib.sha256(head + bytes.fromhex("008408")).digest()[:16])
    three[0] = (three[0] & 0x7F) | 0x40
    sn = x509.load_der_x509_certificate(built.cert_der).serial_number.to_bytes(16, "big")
    assert sn == bytes(four) != bytes(three)
    assert (
        rebuild(d, built.comp_cert, device_key, DEVICE_SN, ca_public_key=pub(p.signer_key))
        == built.cert_der
    )


@pytest.mark.parametrize("source", HASH_SOURCES)
def test_format_0_serial_number_hashes_three_date_bytes(source: SnSource) -> None:
    """The last dates format 0 holds (2031, 31 years): three date bytes, byte 71 zero."""
    p = _pki()
    d = _def(False, 31, source)
    issue = datetime(2031, 12, 28, 23, tzinfo=UTC)
    device_key = pub(key(4243))
    built = build_cert(
        d,
        public_key=device_key,
        issue_date=issue,
        signer_id=SIGNER_ID,
        sign=signer_fn(p.signer_key),
        device_sn=DEVICE_SN,
        ca_public_key=pub(p.signer_key),
    )
    enc = bytes.fromhex("FE72FF")  # 11111 1100 11100 10111 11111
    assert built.comp_cert[64:67] == enc
    assert built.comp_cert[70] & 0x0F == 0 and built.comp_cert[71] == 0
    head = device_key if source == SnSource.PUB_KEY_HASH else DEVICE_SN
    want = bytearray(hashlib.sha256(head + enc).digest()[:16])
    want[0] = (want[0] & 0x7F) | 0x40
    sn = x509.load_der_x509_certificate(built.cert_der).serial_number.to_bytes(16, "big")
    assert sn == bytes(want)


@pytest.mark.parametrize(
    ("source", "fix"),
    [
        (SnSource.PUB_KEY_HASH_POS, lambda b: b & 0x7F),
        (SnSource.DEVICE_SN_HASH_POS, lambda b: b & 0x7F),
        (SnSource.PUB_KEY_HASH_RAW, lambda b: b),
        (SnSource.DEVICE_SN_HASH_RAW, lambda b: b),
    ],
)
def test_deprecated_hash_sources_use_the_same_four_bytes(
    source: SnSource, fix: Callable[[int], int]
) -> None:
    public_key = pub(key(4244))
    head = DEVICE_SN if source.uses_device_sn else public_key
    digest = hashlib.sha256(head + bytes.fromhex("008408") + b"\x50").digest()[:20]
    want = bytes([fix(digest[0])]) + digest[1:]
    assert (
        generate_cert_sn(
            source,
            20,
            issue_date=CertDate(2032, 1, 1, 0),
            expire_years=40,
            public_key=public_key,
            device_sn=DEVICE_SN,
        )
        == want
    )
