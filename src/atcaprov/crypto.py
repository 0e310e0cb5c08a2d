"""P-256 ECDSA in the chip's raw forms, on top of ``cryptography``: the one copy of each helper.

Owns the conversions between what the ATECC508A and the wire carry (a 64-byte public key X‖Y
and a 64-byte signature r‖s, both big-endian) and what ``cryptography`` works with (key
objects, the DER ``ECDSA-Sig-Value``); signing and verifying a SHA-256 digest the caller
already computed (prehashed) in those raw forms; and the P-256 public key of a certificate.
The library, the emulator and the server import these instead of writing them again.

Not here: byte-exact certificate DER (the signature BIT STRING inside a template, which
atcacert must lay out byte for byte) stays in ``atcacert.der``; Microchip's key id and the
72-byte padded slot form of a public key stay in ``atcacert.keys``.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import AtcaprovError

COORDINATE_SIZE = 32  # bytes of X, Y, r and s
PUBLIC_KEY_SIZE = 64  # X ‖ Y
SIGNATURE_SIZE = 64  # r ‖ s
DIGEST_SIZE = 32  # SHA-256

_PREHASHED_ECDSA = ec.ECDSA(Prehashed(hashes.SHA256()))
# P-256 (FIPS 186-4 D.1.2.3, SEC 2 secp256r1): y^2 = x^3 - 3x + b over GF(p), cofactor 1.
P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
P256_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


class CryptoFormatError(AtcaprovError, ValueError):
    """Bytes or a key these helpers cannot take: a public key that is not a point on P-256 (the
    message is then ``cryptography``'s own) or not 64 bytes, a key on another curve or of
    another kind, a signature or digest of the wrong size, DER that is no ECDSA signature.
    Also a ``ValueError``, as ``cryptography`` raises for the same inputs."""


def _require_p256(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> None:
    if not isinstance(key.curve, ec.SECP256R1):
        raise CryptoFormatError(f"key is on {key.curve.name}, not P-256")


# ---- signatures ------------------------------------------------------------------------------
def rs_to_der(signature: bytes) -> bytes:
    """The DER ``ECDSA-Sig-Value`` (SEQUENCE of INTEGER r, INTEGER s) of a raw 64-byte r‖s."""
    if len(signature) != SIGNATURE_SIZE:
        raise CryptoFormatError(
            f"a P-256 signature is {SIGNATURE_SIZE} bytes r||s, got {len(signature)}"
        )
    return encode_dss_signature(
        int.from_bytes(signature[:COORDINATE_SIZE], "big"),
        int.from_bytes(signature[COORDINATE_SIZE:], "big"),
    )


def der_to_rs(der: bytes) -> bytes:
    """The raw 64-byte r‖s of a DER ``ECDSA-Sig-Value`` (r and s must fit 32 bytes each)."""
    try:
        r, s = decode_dss_signature(bytes(der))
    except ValueError as exc:
        raise CryptoFormatError(f"not a DER ECDSA signature: {exc}") from exc
    if not (0 <= r < 1 << 256 and 0 <= s < 1 << 256):
        raise CryptoFormatError("ECDSA signature r or s does not fit 32 bytes (not P-256)")
    return r.to_bytes(COORDINATE_SIZE, "big") + s.to_bytes(COORDINATE_SIZE, "big")


def sign_digest(private_key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    """ECDSA P-256 signature of a 32-byte SHA-256 ``digest``, as raw 64-byte r‖s."""
    _require_p256(private_key)
    if len(digest) != DIGEST_SIZE:
        raise CryptoFormatError(f"a SHA-256 digest is {DIGEST_SIZE} bytes, got {len(digest)}")
    return der_to_rs(private_key.sign(bytes(digest), _PREHASHED_ECDSA))


def verify_digest(
    public_key: bytes | ec.EllipticCurvePublicKey, digest: bytes, signature: bytes
) -> bool:
    """Whether the raw r‖s ``signature`` is an ECDSA signature of the 32-byte SHA-256
    ``digest`` by ``public_key`` (64-byte X‖Y or a key object). A signature that is not 64
    bytes does not verify (False); a public key or digest that is unusable raises
    :class:`CryptoFormatError`."""
    key = (
        public_key
        if isinstance(public_key, ec.EllipticCurvePublicKey)
        else public_key_from_xy(public_key)
    )
    _require_p256(key)
    if len(digest) != DIGEST_SIZE:
        raise CryptoFormatError(f"a SHA-256 digest is {DIGEST_SIZE} bytes, got {len(digest)}")
    if len(signature) != SIGNATURE_SIZE:
        return False
    try:
        key.verify(rs_to_der(signature), bytes(digest), _PREHASHED_ECDSA)
    except InvalidSignature:
        return False
    return True


# ---- public keys -----------------------------------------------------------------------------
def public_key_xy(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    """The 64-byte X‖Y of a P-256 key (of its public half, for a private key)."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    _require_p256(public)
    return public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)[1:]


def is_p256_point(public_key: bytes) -> bool:
    """Is a 64-byte X‖Y a point on P-256? The check :func:`public_key_from_xy` makes (both
    coordinates below p, the curve equation holds; the cofactor is 1, so every such point is
    a valid public key), without making a key object: a few times cheaper, for a server that
    only checks a station's key."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        return False
    x = int.from_bytes(public_key[:COORDINATE_SIZE], "big")
    y = int.from_bytes(public_key[COORDINATE_SIZE:], "big")
    return x < P256_P and y < P256_P and (y * y - x * x * x + 3 * x - P256_B) % P256_P == 0


def public_key_from_xy(public_key: bytes) -> ec.EllipticCurvePublicKey:
    """The ``cryptography`` key of a 64-byte X‖Y (checks the point is on P-256)."""
    data = bytes(public_key)
    if len(data) != PUBLIC_KEY_SIZE:
        raise CryptoFormatError(
            f"a P-256 public key is {PUBLIC_KEY_SIZE} bytes X||Y, got {len(data)}"
        )
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + data)
    except ValueError as exc:
        raise CryptoFormatError(str(exc)) from exc


def certificate_public_key(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    """The public key of a certificate, which must be an EC P-256 key."""
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CryptoFormatError(f"certificate key is {type(key).__name__}, not EC P-256")
    _require_p256(key)
    return key
