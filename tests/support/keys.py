"""P-256 keys for the tests: deterministic or fresh keys, raw public keys, r||s signatures.

The chip and the signer modules speak 64-byte X||Y public keys and 64-byte r||s signatures over a
32-byte digest; these helpers make and check them with ``cryptography``.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from atcaprov.atcacert import public_key_bytes


def key(n: int) -> ec.EllipticCurvePrivateKey:
    """The deterministic P-256 key with private value ``n``."""
    return ec.derive_private_key(n, ec.SECP256R1())


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh random P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def pub(k: ec.EllipticCurvePrivateKey) -> bytes:
    """The 64-byte X||Y public key of ``k``."""
    return public_key_bytes(k.public_key())


def sign_digest(k: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    """The 64-byte r||s signature of ``k`` over a 32-byte digest."""
    der = k.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def signer_fn(k: ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    """sign(digest32) -> r||s with ``k``, as a signer module would (checks the digest size)."""

    def sign(digest: bytes) -> bytes:
        assert len(digest) == 32
        return sign_digest(k, digest)

    return sign


def verify_rs(public_key: ec.EllipticCurvePublicKey, digest: bytes, signature: bytes) -> bool:
    """True if the 64-byte r||s signature verifies over the 32-byte digest."""
    assert len(signature) == 64
    sig_der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public_key.verify(sig_der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True


def cert_public_key(cert_der: bytes) -> ec.EllipticCurvePublicKey:
    """The EC public key of a DER certificate."""
    k = x509.load_der_x509_certificate(cert_der).public_key()
    assert isinstance(k, ec.EllipticCurvePublicKey)
    return k


def raw_public_key(xy: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a 64-byte X||Y."""
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xy)


def verify_raw(pub64: bytes, digest: bytes, sig64: bytes) -> None:
    """Raise InvalidSignature unless sig64 (R||S) signs the 32-byte digest for X||Y ``pub64``."""
    der = encode_dss_signature(int.from_bytes(sig64[:32], "big"), int.from_bytes(sig64[32:], "big"))
    raw_public_key(pub64).verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
