"""atcaprov.crypto: raw P-256 forms <-> cryptography's, checked against independent expectations
(DER written out by hand from X.690, signatures made and checked by cryptography directly)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from atcaprov.crypto import (
    P256_P,
    CryptoFormatError,
    certificate_public_key,
    der_to_rs,
    is_p256_point,
    public_key_from_xy,
    public_key_xy,
    rs_to_der,
    sign_digest,
    verify_digest,
)
from atcaprov.errors import AtcaprovError

PREHASHED = ec.ECDSA(Prehashed(hashes.SHA256()))
DIGEST = hashlib.sha256(b"atcaprov crypto test").digest()
KEY = ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1())
# P-256 generator G (FIPS 186-4 D.1.2.3): the public key of private scalar 1.
GX = bytes.fromhex("6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296")
GY = bytes.fromhex("4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5")


# ---- signatures: raw r||s <-> DER -------------------------------------------------------------
def test_rs_to_der_small_values_by_hand() -> None:
    # r = 1, s = 0x7F: minimal INTEGERs, no sign byte needed.
    rs = (1).to_bytes(32, "big") + (0x7F).to_bytes(32, "big")
    assert rs_to_der(rs) == bytes.fromhex("300602010102017F")


def test_rs_to_der_high_bit_gets_a_zero_byte_by_hand() -> None:
    # r = 0x80 needs a leading 00 (else negative); s = 0x0100 keeps its 2 bytes.
    rs = (0x80).to_bytes(32, "big") + (0x0100).to_bytes(32, "big")
    assert rs_to_der(rs) == bytes.fromhex("30080202008002020100")


def test_rs_to_der_full_size_by_hand() -> None:
    r = b"\xff" * 32  # 33-byte INTEGER (00 ff..ff)
    s = b"\x01" + b"\x00" * 31  # 32-byte INTEGER, high bit clear
    expected = b"\x30\x45" + b"\x02\x21\x00" + r + b"\x02\x20" + s
    assert rs_to_der(r + s) == expected
    assert der_to_rs(expected) == r + s


def test_der_to_rs_pads_short_integers() -> None:
    assert der_to_rs(bytes.fromhex("3006020101020102")) == (1).to_bytes(32, "big") + (2).to_bytes(
        32, "big"
    )


@pytest.mark.parametrize("size", [0, 63, 65])
def test_rs_to_der_refuses_wrong_size(size: int) -> None:
    with pytest.raises(CryptoFormatError, match="64 bytes"):
        rs_to_der(bytes(size))


def test_der_to_rs_refuses_garbage_and_oversized_values() -> None:
    with pytest.raises(CryptoFormatError, match="not a DER ECDSA signature"):
        der_to_rs(b"\x30\x03\x02\x01")
    too_big = b"\x30\x26" + b"\x02\x21\x01" + b"\x00" * 32 + b"\x02\x01\x01"  # r = 2^256
    with pytest.raises(CryptoFormatError, match="32 bytes"):
        der_to_rs(too_big)


def test_crypto_format_error_is_rooted_and_a_value_error() -> None:
    assert issubclass(CryptoFormatError, AtcaprovError)
    assert issubclass(CryptoFormatError, ValueError)


# ---- sign / verify a prehashed digest ---------------------------------------------------------
def test_cryptography_signature_converts_and_verifies() -> None:
    der = KEY.sign(DIGEST, PREHASHED)  # made by cryptography, not by us
    rs = der_to_rs(der)
    assert len(rs) == 64
    assert rs_to_der(rs) == der  # cryptography's DER is minimal, so the round trip is exact
    assert verify_digest(KEY.public_key(), DIGEST, rs)
    assert verify_digest(public_key_xy(KEY), DIGEST, rs)  # raw X||Y works as well


def test_sign_digest_verifies_with_cryptography() -> None:
    rs = sign_digest(KEY, DIGEST)
    assert len(rs) == 64
    KEY.public_key().verify(rs_to_der(rs), DIGEST, PREHASHED)  # raises if wrong
    assert verify_digest(KEY.public_key(), DIGEST, rs)


def test_tampered_digest_signature_or_key_fails() -> None:
    rs = sign_digest(KEY, DIGEST)
    assert not verify_digest(KEY.public_key(), bytes([DIGEST[0] ^ 1]) + DIGEST[1:], rs)
    assert not verify_digest(KEY.public_key(), DIGEST, rs[:63] + bytes([rs[63] ^ 1]))
    other = ec.derive_private_key(7, ec.SECP256R1())
    assert not verify_digest(other.public_key(), DIGEST, rs)
    with pytest.raises(InvalidSignature):  # and cryptography agrees
        other.public_key().verify(rs_to_der(rs), DIGEST, PREHASHED)


def test_verify_digest_wrong_sizes() -> None:
    rs = sign_digest(KEY, DIGEST)
    assert not verify_digest(KEY.public_key(), DIGEST, rs + b"\x00")
    assert not verify_digest(KEY.public_key(), DIGEST, bytes(64))  # r = s = 0
    with pytest.raises(CryptoFormatError, match="32 bytes"):
        verify_digest(KEY.public_key(), DIGEST[:31], rs)
    with pytest.raises(CryptoFormatError, match="32 bytes"):
        sign_digest(KEY, DIGEST + b"\x00")


def test_other_curves_are_refused() -> None:
    p384 = ec.derive_private_key(5, ec.SECP384R1())
    with pytest.raises(CryptoFormatError, match="secp384r1, not P-256"):
        sign_digest(p384, DIGEST)
    with pytest.raises(CryptoFormatError, match="secp384r1, not P-256"):
        verify_digest(p384.public_key(), DIGEST, bytes(64))
    with pytest.raises(CryptoFormatError, match="secp384r1, not P-256"):
        public_key_xy(p384)


# ---- public keys ------------------------------------------------------------------------------
def test_public_key_xy_of_the_generator() -> None:
    one = ec.derive_private_key(1, ec.SECP256R1())
    assert public_key_xy(one) == GX + GY  # private key: its public half
    assert public_key_xy(one.public_key()) == GX + GY


def test_public_key_from_xy_round_trip() -> None:
    key = public_key_from_xy(GX + GY)
    numbers = key.public_numbers()
    assert (numbers.x, numbers.y) == (int.from_bytes(GX, "big"), int.from_bytes(GY, "big"))
    assert (
        public_key_from_xy(public_key_xy(KEY)).public_numbers() == KEY.public_key().public_numbers()
    )


def test_is_p256_point_agrees_with_cryptography() -> None:
    keys = [GX + GY] + [public_key_xy(ec.generate_private_key(ec.SECP256R1())) for _ in range(20)]
    candidates = list(keys)
    for xy in keys:  # each coordinate nudged: off the curve (almost always)
        candidates += [xy[:31] + bytes([xy[31] ^ 1]) + xy[32:], xy[:63] + bytes([xy[63] ^ 1])]
    p = P256_P.to_bytes(32, "big")
    y_of_x0 = GY  # x = p + Gx mod 2^256 is out of range even where it would fit the equation
    candidates += [
        bytes(64),
        b"\xff" * 64,
        p + GY,
        GX + p,
        (int.from_bytes(GX, "big") + P256_P).to_bytes(33, "big")[-32:] + y_of_x0,
    ]
    for xy in candidates:
        try:
            public_key_from_xy(xy)
            full = True
        except CryptoFormatError:
            full = False
        assert is_p256_point(xy) is full, xy.hex()
    assert all(is_p256_point(xy) for xy in keys)
    assert not is_p256_point(GX + GY[:31])  # 63 bytes


def test_public_key_from_xy_refuses_bad_points() -> None:
    with pytest.raises(CryptoFormatError):
        public_key_from_xy(GX + bytes([GY[0] ^ 1]) + GY[1:])  # not on the curve
    with pytest.raises(CryptoFormatError, match="64 bytes"):
        public_key_from_xy(b"\x04" + GX + GY)
    with pytest.raises(CryptoFormatError, match="64 bytes"):
        verify_digest(GX, DIGEST, bytes(64))


def _cert(subject_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crypto test")])
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(subject_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(KEY, hashes.SHA256())
    )


def test_certificate_public_key() -> None:
    assert public_key_xy(certificate_public_key(_cert(KEY))) == public_key_xy(KEY)
    with pytest.raises(CryptoFormatError, match="RSAPublicKey, not EC P-256"):
        certificate_public_key(_cert(rsa.generate_private_key(65537, 1024)))
    with pytest.raises(CryptoFormatError, match="secp384r1, not P-256"):
        certificate_public_key(_cert(ec.derive_private_key(5, ec.SECP384R1())))
