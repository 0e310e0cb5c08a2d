"""X.509 certificates for the tests: one builder, a test root CA, signer certificates, TLS files.

:func:`make_cert` is the one place tests build a certificate with ``x509.CertificateBuilder``
(self-signed or issued, with or without CA constraints and a 127.0.0.1 SAN). The chip-shaped
root/signer/device chain of the product lives in :mod:`tests.support.pki`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID

from tests.support.keys import new_key

START = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)


def cn_name(cn: str) -> x509.Name:
    """The name ``CN=cn``."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(
    subject: str | x509.Name,
    public_key: CertificatePublicKeyTypes,
    signing_key: CertificateIssuerPrivateKeyTypes,
    *,
    issuer: str | x509.Name | None = None,
    serial: int | None = None,
    not_before: dt.datetime = START,
    not_after: dt.datetime | None = None,
    ca: bool | None = None,
    path_length: int | None = None,
    san: bool = False,
) -> x509.Certificate:
    """A certificate for ``public_key`` signed by ``signing_key``.

    ``issuer`` defaults to the subject (self-signed), ``serial`` to a random one, the validity to
    one day from ``not_before``. ``ca`` adds critical BasicConstraints; ``san`` adds the
    subjectAltName 127.0.0.1 / localhost a TLS peer on loopback needs.
    """
    subject_name = cn_name(subject) if isinstance(subject, str) else subject
    if issuer is None:
        issuer_name = subject_name
    else:
        issuer_name = cn_name(issuer) if isinstance(issuer, str) else issuer
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_name)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() if serial is None else serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after or not_before + dt.timedelta(days=1))
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length), critical=True
        )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    edwards = isinstance(signing_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))
    return builder.sign(signing_key, None if edwards else hashes.SHA256())


def self_signed(
    subject: str | x509.Name, key: CertificateIssuerPrivateKeyTypes | None = None, **options: Any
) -> x509.Certificate:
    """A self-signed certificate (a new P-256 key unless ``key``); options as :func:`make_cert`."""
    key = key if key is not None else new_key()
    return make_cert(subject, key.public_key(), key, **options)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def der_to_pem(cert_der: bytes) -> bytes:
    return pem(x509.load_der_x509_certificate(cert_der))


def key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM of ``key``, encrypted when a password is given."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def write_cert_and_key(
    path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None
) -> None:
    """``path``.crt (PEM) and, given a key, ``path``.key (PKCS#8 PEM)."""
    path.with_suffix(".crt").write_bytes(pem(cert))
    if key is not None:
        path.with_suffix(".key").write_bytes(key_pem(key))


def an_hour_ago() -> dt.datetime:
    """A start of validity that a peer's clock surely passed (TLS checks the dates)."""
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)


def tls_files(
    folder: Path, ca_cn: str = "Line CA", peers: tuple[str, ...] = ("server", "station")
) -> dict[str, Path]:
    """A CA and, per peer, a certificate it issued for 127.0.0.1 (CN = the peer's name).

    Writes ``ca.crt``/``ca.key`` and ``<peer>.crt``/``<peer>.key`` into ``folder``; returns
    those paths by file name."""
    now = an_hour_ago()
    ca_key = new_key()
    ca = self_signed(ca_cn, ca_key, not_before=now, ca=True)
    write_cert_and_key(folder / "ca", ca, ca_key)
    for peer in peers:
        key = new_key()
        cert = make_cert(
            peer, key.public_key(), ca_key, issuer=ca.subject, not_before=now, ca=False, san=True
        )
        write_cert_and_key(folder / peer, cert, key)
    return {
        f"{stem}.{ext}": folder / f"{stem}.{ext}"
        for stem in ("ca", *peers)
        for ext in ("crt", "key")
    }


# --------------------------------------------------------------------------------------------
# A test root CA and signer (intermediate CA) certificates it issues
# --------------------------------------------------------------------------------------------
@dataclass
class TestRoot:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    __test__ = False  # not a pytest class


def make_root(cn: str = "Test Root CA") -> TestRoot:
    key = new_key()
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    cert = self_signed(
        cn, key, serial=1, not_before=start, not_after=start + dt.timedelta(days=3650), ca=True
    )
    return TestRoot(key, cert)


def issue_signer_cert(
    root: TestRoot, public_key: CertificatePublicKeyTypes, cn: str = "Test Signer C48B"
) -> x509.Certificate:
    start = dt.datetime(2025, 6, 1, 10, tzinfo=dt.timezone.utc)
    return make_cert(
        cn,
        public_key,
        root.key,
        issuer=root.cert.subject,
        serial=0x40C48B,
        not_before=start,
        not_after=start.replace(year=2045),
        ca=True,
        path_length=0,
    )


def make_ca_cert(
    key: ec.EllipticCurvePrivateKey,
    cn: str,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    issuer_cn: str | None = None,
) -> bytes:
    """A CA certificate (DER) for ``key``, self-signed unless an issuer is given."""
    cert = make_cert(
        cn,
        key.public_key(),
        issuer_key or key,
        issuer=issuer_cn or cn,
        not_after=START + dt.timedelta(days=365 * 30),
        ca=True,
        path_length=0,
    )
    return der(cert)
