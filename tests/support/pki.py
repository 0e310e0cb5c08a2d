"""The small PKI of the tests: a root CA, a signer (intermediate CA) and the standard cert defs.

One implementation (:func:`make_pki`) with the product's own builders
(``atcaprov.atcacert.standard``); the presets differ only in names, dates and keys: the default
one for the flow, client and server tests, :func:`atcacert_pki` (deterministic keys) for the
atcacert tests.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from atcaprov.atcacert import (
    StandardCertDefs,
    make_root_cert,
    make_signer_cert,
    make_standard_cert_defs,
)
from atcaprov.certinfo import CertInfo
from tests.support.keys import key, new_key, pub

NOW = datetime(2026, 11, 21, 5, 0, tzinfo=timezone.utc)
SIGNER_ID = b"\xc4\x8b"


@dataclass(frozen=True)
class Pki:
    root_key: ec.EllipticCurvePrivateKey
    signer_key: ec.EllipticCurvePrivateKey
    root_cert: bytes
    signer_cert: bytes
    defs: StandardCertDefs
    cert_info: CertInfo = field(repr=False)

    def write_certinfo(self, folder: Path) -> Path:
        path = folder / "atcaprov_cert_info_0.c"
        path.write_text(self.cert_info.to_c_source(), encoding="utf-8")
        return path


def make_pki(
    signer_id: bytes = SIGNER_ID,
    *,
    now: datetime = NOW,
    root_key: ec.EllipticCurvePrivateKey | None = None,
    signer_key: ec.EllipticCurvePrivateKey | None = None,
    root_cn: str = "Test Root CA",
    signer_cn: str = "Test Signer",
    organization: str | None = None,
    signer_expire_years: int = 0,
    device_cn: str = "Device",
    device_expire_years: int = 0,
) -> Pki:
    """Root, signer and cert defs (new keys unless given); ``organization`` names all three."""
    root_key = root_key or new_key()
    signer_key = signer_key or new_key()
    root = make_root_cert(root_key, common_name=root_cn, organization=organization, now=now)
    signer = make_signer_cert(
        root,
        root_key,
        pub(signer_key),
        signer_id=signer_id,
        now=now,
        common_name=signer_cn,
        organization=organization,
        expire_years=signer_expire_years,
    )
    defs = make_standard_cert_defs(
        root,
        signer,
        now=now,
        signer_id=signer_id,
        device_common_name=device_cn,
        device_organization=organization,
        device_expire_years=device_expire_years,
    )
    info = CertInfo.from_certs(signer, root, signer_cn, defs.device, defs.signer)
    return Pki(root_key, signer_key, root, signer, defs, info)


# --------------------------------------------------------------------------------------------
# The atcacert tests' preset: deterministic keys, an organization, a 2021 date
# --------------------------------------------------------------------------------------------
ATCACERT_NOW = datetime(2021, 3, 7, 10, 42, 17, tzinfo=timezone.utc)


def atcacert_pki(device_expire_years: int = 0, signer_expire_years: int = 28) -> Pki:
    return make_pki(
        now=ATCACERT_NOW,
        root_key=key(1001),
        signer_key=key(1002),
        root_cn="Test Root",
        organization="Example Inc",
        signer_expire_years=signer_expire_years,
        device_cn="Test Device",
        device_expire_years=device_expire_years,
    )


@functools.cache
def standard_pki() -> Pki:
    return atcacert_pki()
