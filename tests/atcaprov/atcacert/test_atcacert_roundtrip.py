"""Property tests: build, verify with cryptography, compress, rebuild -> identical DER.

Over random keys, issue dates, device serial numbers and signer ids, for a signer def
(SNSRC_SIGNER_ID, public key padded in a 72-byte slot) and device defs (SNSRC_PUB_KEY_HASH and
SNSRC_DEVICE_SN, public key from GenKey on slot 0)."""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from atcaprov.atcacert import (
    CertDef,
    CertError,
    DeviceLoc,
    DevZone,
    SnSource,
    build_cert,
    cert_def_from_cert,
    compress,
    load_cert_defs,
    make_device_template_cert,
    make_signer_cert,
    pad_public_key,
    prepare,
    rebuild,
)
from tests.support.keys import key, pub, signer_fn
from tests.support.pki import ATCACERT_NOW as NOW
from tests.support.pki import Pki, atcacert_pki

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
SETTINGS = settings(max_examples=100, deadline=None)

private_ints = st.integers(min_value=1, max_value=P256_N - 1)
issue_dates = st.builds(
    lambda y, m, d, h: datetime(y, m, d, h, tzinfo=timezone.utc),
    st.integers(2000, 2031),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
)
device_sns = st.binary(min_size=9, max_size=9)
signer_ids = st.binary(min_size=2, max_size=2)


@functools.cache
def pki_10y() -> Pki:
    return atcacert_pki(device_expire_years=10)


@functools.cache
def device_sn_def() -> CertDef:
    p = pki_10y()
    template = make_device_template_cert(p.signer_cert, now=NOW, sn_size=10, expire_years=0)
    return cert_def_from_cert(
        template,
        template_id=3,
        chain_id=1,
        sn_source=SnSource.DEVICE_SN,
        private_key_slot=0,
        public_key_dev_loc=DeviceLoc(DevZone.DATA, 0, True, 0, 64),
        comp_cert_dev_loc=DeviceLoc(DevZone.DATA, 10, False, 0, 72),
    )


def _check(
    d: CertDef,
    der: bytes,
    record: bytes,
    public_key: bytes,
    device_sn: bytes | None,
    ca_key: bytes,
    issuer_der: bytes,
) -> None:
    assert compress(d, der) == record
    rebuilt = rebuild(d, record, public_key, device_sn, ca_public_key=ca_key)
    assert rebuilt == der
    x509.load_der_x509_certificate(rebuilt).verify_directly_issued_by(
        x509.load_der_x509_certificate(issuer_der)
    )


@SETTINGS
@given(k=private_ints, issue=issue_dates, device_sn=device_sns)
def test_device_pub_key_hash(k: int, issue: datetime, device_sn: bytes) -> None:
    p = pki_10y()
    dk = key(k)
    built = build_cert(
        p.defs.device,
        public_key=pub(dk),
        issue_date=issue,
        signer_id=b"\xc4\x8b",
        sign=signer_fn(p.signer_key),
        ca_public_key=pub(p.signer_key),
    )
    _check(
        p.defs.device,
        built.cert_der,
        built.comp_cert,
        pub(dk),
        device_sn,
        pub(p.signer_key),
        p.signer_cert,
    )


@SETTINGS
@given(k=private_ints, issue=issue_dates, device_sn=device_sns)
def test_device_sn_source(k: int, issue: datetime, device_sn: bytes) -> None:
    p = pki_10y()
    d = device_sn_def()
    dk = key(k)
    built = build_cert(
        d,
        public_key=pub(dk),
        issue_date=issue,
        signer_id=b"\xc4\x8b",
        device_sn=device_sn,
        sign=signer_fn(p.signer_key),
        ca_public_key=pub(p.signer_key),
    )
    assert x509.load_der_x509_certificate(built.cert_der).serial_number == int.from_bytes(
        b"\x40" + device_sn, "big"
    )
    _check(d, built.cert_der, built.comp_cert, pub(dk), device_sn, pub(p.signer_key), p.signer_cert)


@SETTINGS
@given(k=private_ints, issue=issue_dates, signer_id=signer_ids)
def test_signer_cert(k: int, issue: datetime, signer_id: bytes) -> None:
    """A signer cert made by cryptography (not by our build) compresses and rebuilds."""
    p = pki_10y()
    sk = key(k)
    der = make_signer_cert(
        p.root_cert,
        p.root_key,
        pub(sk),
        signer_id=signer_id,
        now=issue,
        common_name="Test Signer",
        organization="Example Inc",
        expire_years=28,
    )
    d = p.defs.signer
    if issue.year + 28 > 2049:
        # cryptography writes a GeneralizedTime there; the UTCTime template cannot hold it
        with pytest.raises(CertError):
            compress(d, der)
        return
    record = compress(d, der)
    assert record[67:69] == signer_id
    rebuilt = rebuild(d, record, pad_public_key(pub(sk)), ca_public_key=pub(p.root_key))
    assert rebuilt == der
    x509.load_der_x509_certificate(rebuilt).verify_directly_issued_by(
        x509.load_der_x509_certificate(p.root_cert)
    )


@functools.cache
def esp_signer_def() -> CertDef:
    data = Path(__file__).parent / "data" / "esp_cert_def_1_signer.c"
    return load_cert_defs(data.read_text(), data.name)["g_cert_def_1_signer"]


stored_sns = st.binary(min_size=16, max_size=16).filter(lambda b: 0 < b[0] < 0x80)


@SETTINGS
@given(k=private_ints, issue=issue_dates, sn=stored_sns, signer_id=signer_ids)
def test_stored_serial_numbers(k: int, issue: datetime, sn: bytes, signer_id: bytes) -> None:
    """SNSRC_STORED (Espressif's signer def: SN and dates kept in slot 14)."""
    p = pki_10y()
    d = esp_signer_def()
    sk = key(k)
    issue_text = issue.strftime("%y%m%d%H%M%SZ").encode()
    expire_text = f"{(issue.year + d.expire_years) % 100:02d}".encode() + issue_text[2:]
    elements = {"IssueDate": issue_text, "ExpireDate": expire_text}
    if issue.year + d.expire_years > 2049:  # UTCTime template: refused, never wrapped
        with pytest.raises(CertError) as err:
            prepare(d, public_key=pub(sk), issue_date=issue, signer_id=signer_id, cert_sn=sn)
        assert err.value.field == "expire_date"
        return
    built = build_cert(
        d,
        public_key=pub(sk),
        issue_date=issue,
        signer_id=signer_id,
        cert_sn=sn,
        sign=signer_fn(p.root_key),
        ca_public_key=pub(p.root_key),
        element_data=elements,
    )
    cert = x509.load_der_x509_certificate(built.cert_der)
    assert cert.serial_number == int.from_bytes(sn, "big")
    assert compress(d, built.cert_der) == built.comp_cert
    assert (
        rebuild(
            d,
            built.comp_cert,
            pad_public_key(pub(sk)),
            ca_public_key=pub(p.root_key),
            cert_sn=sn,
            element_data=elements,
        )
        == built.cert_der
    )
    # the template's issuer is the esp fixture root's name; the signature is our root key's
    p.root_key.public_key().verify(
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256())
    )
