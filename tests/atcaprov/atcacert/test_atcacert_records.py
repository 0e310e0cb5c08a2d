"""72-byte records, SN sources, key ids, padding and the signature DER."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509

from atcaprov.atcacert import (
    ATCACERT_E_BAD_PARAMS,
    ATCACERT_E_DECODING_ERROR,
    ATCACERT_E_UNIMPLEMENTED,
    CertDate,
    CertError,
    CompCert,
    DateFormat,
    SnSource,
    generate_cert_sn,
    key_id,
    pad_public_key,
    raw_public_key,
    unpad_public_key,
)
from atcaprov.atcacert.der import decode_ecdsa_sig_value, encode_ecdsa_sig_value
from tests.support.keys import key, pub

FACTS_TAIL = bytes.fromhex("A99D5CC48B109000")


def test_comp_cert_tail_vector() -> None:
    comp = CompCert.from_dates(
        signature=bytes(range(64)),
        issue_date=CertDate(2021, 3, 7, 10),
        expire_years=28,
        signer_id=bytes.fromhex("C48B"),
        template_id=1,
        chain_id=0,
        sn_source=SnSource.SIGNER_ID,
    )
    raw = comp.encode()
    assert len(raw) == 72 and raw[:64] == bytes(range(64)) and raw[64:] == FACTS_TAIL


def test_comp_cert_tail_decodes_as_facts_say() -> None:
    comp = CompCert.decode(bytes(64) + FACTS_TAIL)
    assert (comp.template_id, comp.chain_id, comp.sn_source, comp.format_version) == (
        1,
        0,
        SnSource.SIGNER_ID,
        0,
    )
    assert comp.signer_id.hex().upper() == "C48B"
    issue, expire, years = comp.dates(DateFormat.RFC5280_UTC)
    assert issue == CertDate(2021, 3, 7, 10) and expire == CertDate(2049, 3, 7, 10)
    assert years == 28


@pytest.mark.parametrize("fmt", [3, 4, 15])
def test_unknown_format_version_is_a_decoding_error(fmt: int) -> None:
    raw = bytearray(bytes(64) + FACTS_TAIL)
    raw[70] |= fmt
    with pytest.raises(CertError) as err:
        CompCert.decode(bytes(raw))
    assert err.value.code == ATCACERT_E_DECODING_ERROR and err.value.field == "format_version"
    assert f"version {fmt} is unknown" in str(err.value)


@pytest.mark.parametrize("size", [72, 72 + 32, 72 + 68])
def test_format_2_is_refused_clearly(size: int) -> None:
    """Format 2 records carry P-384/P-521 signatures past byte 72; atcaprov's are P-256."""
    raw = bytearray(bytes(64) + FACTS_TAIL + bytes(size - 72))
    raw[70] |= 2
    with pytest.raises(CertError) as err:
        CompCert.decode(bytes(raw))
    assert err.value.code == ATCACERT_E_UNIMPLEMENTED and err.value.field == "format_version"
    assert "format version 2" in str(err.value) and "P-256" in str(err.value)


def test_format_1_record_decodes_the_extended_bits() -> None:
    raw = bytearray(bytes(64) + FACTS_TAIL)
    raw[70] |= 1
    raw[71] = 0xF5  # year bits 6-5 = 11, expire bits 6-5 = 11, reserved nibble 5 (ignored)
    comp = CompCert.decode(bytes(raw))
    assert comp.format_version == 1 and comp.encode() == bytes(raw)
    issue, expire, years = comp.dates(DateFormat.RFC5280_GEN)
    assert issue == CertDate(2021 + 96, 3, 7, 10) and years == 28 + 96
    assert expire == CertDate(2117 + 124, 3, 7, 10)
    raw[70] &= 0xF0  # the same bytes in format 0 ignore byte 71
    assert CompCert.decode(bytes(raw)).dates(DateFormat.RFC5280_GEN)[0] == CertDate(2021, 3, 7, 10)


def test_wrong_size_record() -> None:
    with pytest.raises(CertError) as err:
        CompCert.decode(bytes(71))
    assert err.value.code == ATCACERT_E_BAD_PARAMS and "71" in str(err.value)


def test_key_id_rule_matches_rfc5280_method_1() -> None:
    k = key(7).public_key()
    xy = pub(key(7))
    assert key_id(xy) == hashlib.sha1(b"\x04" + xy).digest()
    assert key_id(xy) == x509.SubjectKeyIdentifier.from_public_key(k).digest


def test_padding_helpers() -> None:
    xy = pub(key(8))
    padded = pad_public_key(xy)
    assert padded == b"\0" * 4 + xy[:32] + b"\0" * 4 + xy[32:]
    assert unpad_public_key(padded) == xy == raw_public_key(padded)
    assert raw_public_key(b"\x04" + xy) == xy
    with pytest.raises(CertError):
        raw_public_key(xy[:63])


DATES = CertDate(2021, 3, 7, 10)
ENC = bytes.fromhex("A99D5C")


def _fix(h: bytes, pos: bool, no_trim: bool) -> bytes:
    b = bytearray(h)
    if pos:
        b[0] &= 0x7F
    if no_trim:
        b[0] |= 0x40
    return bytes(b)


@pytest.mark.parametrize(
    ("source", "pos", "no_trim", "use_pub"),
    [
        (SnSource.PUB_KEY_HASH, True, True, True),
        (SnSource.PUB_KEY_HASH_POS, True, False, True),
        (SnSource.PUB_KEY_HASH_RAW, False, False, True),
        (SnSource.DEVICE_SN_HASH, True, True, False),
        (SnSource.DEVICE_SN_HASH_POS, True, False, False),
        (SnSource.DEVICE_SN_HASH_RAW, False, False, False),
    ],
)
def test_hash_sn_sources(source: SnSource, pos: bool, no_trim: bool, use_pub: bool) -> None:
    xy = pub(key(9))
    device_sn = bytes.fromhex("0123C5D92CA571EEEE")
    for size in (1, 16, 32):
        got = generate_cert_sn(
            source, size, issue_date=DATES, expire_years=28, public_key=xy, device_sn=device_sn
        )
        material = (xy if use_pub else device_sn) + ENC
        assert got == _fix(hashlib.sha256(material).digest()[:size], pos, no_trim)


def test_fixed_sn_sources() -> None:
    device_sn = bytes.fromhex("0123C5D92CA571EEEE")
    assert (
        generate_cert_sn(
            SnSource.DEVICE_SN, 10, issue_date=DATES, expire_years=0, device_sn=device_sn
        )
        == b"\x40" + device_sn
    )
    assert (
        generate_cert_sn(
            SnSource.SIGNER_ID, 3, issue_date=DATES, expire_years=0, signer_id=b"\xc4\x8b"
        )
        == b"\x40\xc4\x8b"
    )
    with pytest.raises(CertError) as err:
        generate_cert_sn(SnSource.DEVICE_SN, 10, issue_date=DATES, expire_years=0)
    assert err.value.field == "device_sn"


def test_stored_sources_are_not_generated() -> None:
    with pytest.raises(CertError):
        generate_cert_sn(SnSource.STORED, 8, issue_date=DATES, expire_years=0)


@pytest.mark.parametrize(
    ("r", "s", "size"),
    [
        (b"\x7f" + b"\x11" * 31, b"\x22" * 32, 3 + 2 + 34 + 34),
        (b"\x80" + b"\x11" * 31, b"\xff" * 32, 3 + 2 + 35 + 35),
        (b"\x00\x05" + b"\x11" * 30, b"\x22" * 32, 3 + 2 + 33 + 34),
    ],
)
def test_signature_der(r: bytes, s: bytes, size: int) -> None:
    der = encode_ecdsa_sig_value(r + s)
    assert len(der) == size and der[0] == 0x03 and der[2] == 0x00
    assert decode_ecdsa_sig_value(der) == r + s


def test_signature_der_rejects_trailing_bytes() -> None:
    der = encode_ecdsa_sig_value(b"\x01" * 64)
    with pytest.raises(CertError):
        decode_ecdsa_sig_value(der + b"\x00")
