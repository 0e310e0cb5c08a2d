"""Shared keys, certificates and definitions for the atcacert tests (deterministic keys).

Imported by the test modules of this folder (pytest puts the folder on sys.path)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from atcaprov.atcacert import (
    StandardCertDefs,
    make_root_cert,
    make_signer_cert,
    make_standard_cert_defs,
    public_key_bytes,
)

DATA = Path(__file__).parent / "data"
NOW = datetime(2021, 3, 7, 10, 42, 17, tzinfo=timezone.utc)
SIGNER_ID = bytes.fromhex("C48B")


def key(n: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(n, ec.SECP256R1())


def pub(k: ec.EllipticCurvePrivateKey) -> bytes:
    return public_key_bytes(k.public_key())


def signer_fn(k: ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    """sign(digest32) -> r||s, as a signer module would."""

    def sign(digest: bytes) -> bytes:
        assert len(digest) == 32
        r, s = decode_dss_signature(k.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


@dataclass(frozen=True)
class Pki:
    root_key: ec.EllipticCurvePrivateKey
    signer_key: ec.EllipticCurvePrivateKey
    root_der: bytes
    signer_der: bytes
    defs: StandardCertDefs


def make_pki(device_expire_years: int = 0, signer_expire_years: int = 28) -> Pki:
    root_key, signer_key = key(1001), key(1002)
    root = make_root_cert(root_key, common_name="Test Root", organization="Example Inc",
                          now=NOW)
    signer = make_signer_cert(root, root_key, pub(signer_key), signer_id=SIGNER_ID, now=NOW,
                              common_name="Test Signer", organization="Example Inc",
                              expire_years=signer_expire_years)
    defs = make_standard_cert_defs(root, signer, now=NOW, device_common_name="Test Device",
                                   device_organization="Example Inc",
                                   device_expire_years=device_expire_years)
    return Pki(root_key, signer_key, root, signer, defs)


@functools.cache
def standard_pki() -> Pki:
    return make_pki()
