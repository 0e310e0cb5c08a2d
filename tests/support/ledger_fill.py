"""Filling a ledger with many devices for the records command line and export tests and bench.

:func:`fill_ledger` commits ``count`` new issuances in batches through the ledger's own
``commit`` (the server's write path), with real certificates (``real_certs=True``: a device
certificate per device, signed by a test signer certificate, as a manifest's x5c needs) or
short fake DER bytes (the large benchmark: the exports do not parse them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from atcaprov.crypto import public_key_xy
from provserver.ledger import IssueOp, Ledger
from tests.support.certs import cn_name, der, key_pem, make_cert, make_root, pem
from tests.support.keys import key

ISSUER = "C48B" * 10
BASE_TIME = dt.datetime(2026, 11, 21, 5, 0, tzinfo=dt.timezone.utc)


def device_sn(n: int) -> str:
    """A 9-byte chip serial number (01 23 ... EE, like the ATECC508A's)."""
    return f"0123{n:012X}EE"


@dataclass
class FillPki:
    """The signer that issued the device certificates, and a manifest signer."""

    root_cert: x509.Certificate
    signer_key: ec.EllipticCurvePrivateKey
    signer_cert: x509.Certificate
    manifest_key: ec.EllipticCurvePrivateKey
    manifest_cert: x509.Certificate

    def write_manifest_signer(self, folder: Path) -> tuple[Path, Path]:
        """``manifest.key`` and ``manifest.crt`` (PEM) in ``folder``."""
        key_path, cert_path = folder / "manifest.key", folder / "manifest.crt"
        key_path.write_bytes(key_pem(self.manifest_key))
        cert_path.write_bytes(pem(self.manifest_cert))
        return key_path, cert_path


def make_fill_pki() -> FillPki:
    root = make_root("Records Test Root")
    signer_key = key(0xC48B)
    signer_cert = make_cert(
        "Records Test Signer C48B",
        signer_key.public_key(),
        root.key,
        issuer=root.cert.subject,
        not_after=BASE_TIME,
        ca=True,
    )
    manifest_key = key(0x3A1F)
    manifest_cert = (  # with a subject key identifier, as Microchip's manifest signers have
        x509.CertificateBuilder()
        .subject_name(cn_name("Records Test Manifest Signer"))
        .issuer_name(root.cert.subject)
        .public_key(manifest_key.public_key())
        .serial_number(0x3A1F)
        .not_valid_before(BASE_TIME - dt.timedelta(days=1))
        .not_valid_after(BASE_TIME + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(manifest_key.public_key()), critical=False
        )
        .sign(root.key, hashes.SHA256())
    )
    return FillPki(root.cert, signer_key, signer_cert, manifest_key, manifest_cert)


def issue_op(
    n: int,
    pki: FillPki | None,
    *,
    station: str = "127.0.0.1:1 line-1",
    key_n: int | None = None,
    minutes: int | None = None,
    device_type: str = "",
) -> IssueOp:
    """The request of device ``n`` (its key: private value ``key_n``, default ``n + 1``);
    ``device_type`` the model it stated ("" : none, a protocol v1 request)."""
    device_key = key((n if key_n is None else key_n) + 1)
    serial = n + 1 if key_n is None else (key_n << 32) + n + 1
    public = public_key_xy(device_key)
    when = BASE_TIME + dt.timedelta(minutes=n if minutes is None else minutes)
    if pki is not None:
        cert = make_cert(
            f"Device {device_sn(n)}",
            device_key.public_key(),
            pki.signer_key,
            issuer=pki.signer_cert.subject,
            serial=serial,
            not_before=when,
        )
        device_der, signer_der = der(cert), der(pki.signer_cert)
        root_der: bytes | None = der(pki.root_cert)
    else:
        device_der = b"\x30\x82\x01\x00" + n.to_bytes(8, "big") * 30
        signer_der, root_der = b"\x30\x03SGN", None
    return IssueOp(
        time=when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), station=station, device_sn=device_sn(n),
        public_key=public.hex().upper(), issuer_key_id=ISSUER, signer_id="C48B",
        signer="Records Signer (0123000000000000EE, sim:C48B)",
        cert_sn=f"{serial:032X}", device_cert=device_der, signer_cert=signer_der,
        root_cert=root_der, device_type=device_type,
    )  # fmt: skip


def fill_ledger(
    ledger: Ledger,
    count: int,
    pki: FillPki | None,
    *,
    batch: int = 500,
    start: int = 0,
    station: str = "127.0.0.1:1 line-1",
    device_types: Sequence[str] = ("",),
) -> int:
    """Commit ``count`` new devices (``start`` ...), device ``n`` stating the model
    ``device_types[n % len]``; returns the run id."""
    run_id = ledger.start_run(
        server="fill",
        data_dir="/fill",
        stamp="20261121-050000",
        started_at="2026-11-21T05:00:00.000000Z",
    )
    for first in range(start, start + count, batch):
        ops = [
            issue_op(n, pki, station=station, device_type=device_types[n % len(device_types)])
            for n in range(first, min(first + batch, start + count))
        ]
        ledger.commit(ops, run_id=run_id)
    return run_id
