"""The root CA of signer set-up: a new one, or an existing one checked.

:func:`make_root_ca` makes a new P-256 key and its self-signed CA certificate, written by
:func:`write_root_ca` as PEM files (``root-ca.key``, mode 0600, and ``root-ca.crt``; a root key
is never overwritten); :func:`load_root_ca` reads an existing one and checks that key and
certificate belong together and that the certificate is a P-256 CA. :meth:`RootCa.issuer` signs
signer certificate requests (``provserver signer create``).

Errors are :class:`RootCaError` and the other
:class:`~provserver.signers.create.SignerSetupError` errors.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from atcaprov.atcacert.errors import CertError
from atcaprov.atcacert.standard import make_root_cert
from atcaprov.crypto import public_key_xy
from atcaprov.pemder import load_certificate

from .signers.create import OutputExistsError, SignerSetupError, write_new
from .signers.module_layout import IssueSignerCert, root_ca_issuer

ROOT_KEY_FILE = "root-ca.key"
ROOT_CERT_FILE = "root-ca.crt"
DEFAULT_ROOT_CN = "Example Root CA"
ROOT_KEY_WARNING = (
    "WARNING: {path} is the root CA private key. Move it to offline storage (an encrypted, "
    "disconnected medium) now; it is needed only to issue further signer certificates."
)


class RootCaError(SignerSetupError):
    """The root CA key or certificate is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class RootCa:
    """The root CA key and its self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    cert_der: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.cert_der)

    def issuer(self) -> IssueSignerCert:
        """Signs signer certificate requests with this root (module_layout's CA profile)."""
        return root_ca_issuer(self.key, self.cert)


def make_root_ca(
    *,
    common_name: str = DEFAULT_ROOT_CN,
    organization: str | None = None,
    now: dt.datetime,
    validity_years: int = 0,
) -> RootCa:
    """A new P-256 root key and its self-signed CA certificate (0 years = no expiry)."""
    if not common_name:
        raise SignerSetupError("the root CA common name is empty")
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        der = make_root_cert(
            key,
            common_name=common_name,
            now=now,
            organization=organization,
            expire_years=validity_years,
        )
    except (CertError, ValueError) as exc:
        raise RootCaError(f"cannot make the root CA certificate: {exc}") from exc
    return RootCa(key, der)


def root_ca_paths(folder: Path) -> tuple[Path, Path]:
    return folder / ROOT_KEY_FILE, folder / ROOT_CERT_FILE


def check_root_dir(folder: Path) -> None:
    """Refuse a root folder that already holds a root CA (a root key is never overwritten)."""
    for path in root_ca_paths(folder):
        if path.exists():
            raise OutputExistsError(
                f"{path} exists: a root key is never overwritten; use it with --root-key "
                f"{folder / ROOT_KEY_FILE} --root-cert {folder / ROOT_CERT_FILE}, or choose "
                "another --root-dir"
            )
    if folder.exists() and not folder.is_dir():
        raise SignerSetupError(f"root folder {folder} exists and is not a folder")


def write_root_ca(root: RootCa, folder: Path) -> tuple[Path, Path]:
    """Write ``root-ca.key`` (PKCS#8 PEM, mode 0600) and ``root-ca.crt`` (PEM) into ``folder``."""
    check_root_dir(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise SignerSetupError(f"cannot create root folder {folder}: {exc.strerror}") from exc
    key_path, cert_path = root_ca_paths(folder)
    key_pem = root.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_new(key_path, key_pem, 0o600)
    write_new(cert_path, root.cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return key_path, cert_path


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RootCaError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise RootCaError(f"cannot read {what} {path}: {exc.strerror}") from exc


def root_key_is_encrypted(key_path: Path) -> bool:
    data = _read_file(key_path, "root key")
    return b"ENCRYPTED" in data


def load_root_ca(key_path: Path, cert_path: Path, *, password: bytes | None = None) -> RootCa:
    """Read a root CA (key PEM/DER, certificate PEM/DER) and check they belong together."""
    key_data = _read_file(key_path, "root key")
    cert_data = _read_file(cert_path, "root certificate")
    try:
        key: Any = (
            serialization.load_pem_private_key(key_data, password=password)
            if b"-----BEGIN" in key_data
            else serialization.load_der_private_key(key_data, password=password)
        )
    except TypeError as exc:  # encrypted without password, or password for a clear key
        raise RootCaError(f"root key {key_path}: {exc}") from exc
    except ValueError as exc:
        raise RootCaError(
            f"root key {key_path} is not a readable private key (PEM or DER"
            f"{', or the password is wrong' if password else ''}): {exc}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise RootCaError(f"root key {key_path} is {type(key).__name__}, expected EC P-256")
    try:
        cert = load_certificate(cert_data)
    except ValueError as exc:
        raise RootCaError(f"root certificate {cert_path} is not a certificate: {exc}") from exc
    cert_key = cert.public_key()
    if not isinstance(cert_key, ec.EllipticCurvePublicKey) or not isinstance(
        cert_key.curve, ec.SECP256R1
    ):
        raise RootCaError(
            f"root certificate {cert_path} holds a {type(cert_key).__name__}, expected EC P-256"
        )
    if public_key_xy(cert_key) != public_key_xy(key.public_key()):
        raise RootCaError(
            f"root key {key_path} does not match root certificate {cert_path} (different "
            "public keys)"
        )
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise RootCaError(
            f"root certificate {cert_path} is not a CA certificate (basicConstraints CA=TRUE "
            "missing)"
        )
    return RootCa(key, cert.public_bytes(serialization.Encoding.DER))
