"""atcacert's public-key forms: key id (SHA1(04‖X‖Y)), the 72-byte padded slot form
(``00000000‖X‖00000000‖Y``), and the accepted input forms (64, 65 or 72 bytes).

The conversions to and from ``cryptography`` key objects are ``atcaprov.crypto``'s;
``public_key_bytes`` and ``public_key_object`` here call them and keep atcacert's error
(``CertError`` with ``ATCACERT_E_BAD_PARAMS``) and its wider input forms.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import ec

from ..crypto import CryptoFormatError, public_key_from_xy, public_key_xy
from .errors import AtcacertCode, CertError


def key_id(public_key: bytes) -> bytes:
    """Key identifier Microchip puts in SKI/AKI: SHA1(0x04 ‖ X ‖ Y), 20 bytes."""
    return hashlib.sha1(b"\x04" + raw_public_key(public_key)).digest()


def pad_public_key(public_key: bytes) -> bytes:
    """64-byte X‖Y to the 72-byte slot form ``00 00 00 00 ‖ X ‖ 00 00 00 00 ‖ Y``."""
    raw = raw_public_key(public_key)
    return b"\x00" * 4 + raw[:32] + b"\x00" * 4 + raw[32:]


def unpad_public_key(padded: bytes) -> bytes:
    """72-byte slot form to 64-byte X‖Y (the pad bytes are ignored, as atcacert does)."""
    if len(padded) != 72:
        raise CertError(
            AtcacertCode.BAD_PARAMS, f"padded public key must be 72 bytes, got {len(padded)}"
        )
    return bytes(padded[4:36] + padded[40:72])


def raw_public_key(public_key: bytes) -> bytes:
    """Accept X‖Y (64), 04‖X‖Y (65) or the padded slot form (72); return X‖Y."""
    data = bytes(public_key)
    if len(data) == 64:
        return data
    if len(data) == 65 and data[0] == 0x04:
        return data[1:]
    if len(data) == 72:
        return unpad_public_key(data)
    raise CertError(
        AtcacertCode.BAD_PARAMS,
        f"public key must be 64 bytes X||Y (or 65 with 04, or 72 padded), got {len(data)}",
    )


def public_key_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    """X‖Y of a P-256 key object (``crypto.public_key_xy``, raising CertError)."""
    try:
        return public_key_xy(key)
    except CryptoFormatError as exc:
        raise CertError(AtcacertCode.BAD_PARAMS, str(exc)) from exc


def public_key_object(public_key: bytes) -> ec.EllipticCurvePublicKey:
    """A cryptography P-256 key from X‖Y, 04‖X‖Y or the padded form (checks the point is on
    the curve; ``crypto.public_key_from_xy``, raising CertError)."""
    try:
        return public_key_from_xy(raw_public_key(public_key))
    except CryptoFormatError as exc:
        raise CertError(AtcacertCode.BAD_PARAMS, f"not a P-256 public key: {exc}") from exc
