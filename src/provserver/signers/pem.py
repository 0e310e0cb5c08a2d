"""The ``pem`` signer back-end: the signer CA key in a PEM file. For development only.

A module is a PEM private-key file (``*.pem`` or ``*.key`` holding a ``PRIVATE KEY`` block, EC
P-256, optionally encrypted: then it is "password protected" and :meth:`unlock` decrypts it).
Its signer certificate is a ``CERTIFICATE`` block in the same file, or ``<stem>.crt`` next to
it, or the ``cert`` option (single-file mode). The signer name is the ``name`` option, else the
first line of ``<stem>.name`` next to the key, else the certificate's subject common name.

``path`` is a single key file or a folder: the folder's key files are the modules present
(location = the file path), so adding or removing a file is a hot plug.

:class:`PemModuleCreator` is how ``provserver signer create`` writes a new key file (with its
certificate inside) and ``<stem>.name``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from atcaprov import crypto
from atcaprov.crypto import public_key_xy
from atcaprov.pemder import certificate_der

from .base import (
    BackendOption,
    SignerBackend,
    SignerConfigError,
    SignerIdentity,
    SignerLockedError,
    SignerModule,
    SignerUnavailableError,
    WrongPasswordError,
    check_digest,
    register_backend,
)
from .create import (
    CreatedModule,
    ModuleCreator,
    OutputExistsError,
    SignerSetupError,
    SignerSpec,
    check_through_backend,
    key_signer_id,
    signer_cert_request,
    write_new,
)
from .module_layout import IssueSignerCert

log = logging.getLogger(__name__)

PEM_WARNING = "pem signer back-end: the CA key is in a file; for development only"
CREATED_KEY_WARNING = (
    "WARNING: the pem back-end keeps the signer key in a file ({path}); for development only."
)
KEY_SUFFIXES = (".pem", ".key")
_KEY_MARKER = b"PRIVATE KEY-----"
_ENCRYPTED_MARKERS = (b"BEGIN ENCRYPTED PRIVATE KEY", b"Proc-Type: 4,ENCRYPTED")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise SignerUnavailableError(f"{what} {path} is gone") from exc
    except OSError as exc:
        raise SignerConfigError(f"cannot read {what} {path}: {exc}") from exc


def _is_key_file(path: Path) -> bool:
    if path.suffix not in KEY_SUFFIXES or not path.is_file():
        return False
    try:
        return _KEY_MARKER in path.read_bytes()
    except OSError:
        # A file that vanished or cannot be read between listing and reading is not present.
        log.debug("pem back-end: %s not readable during scan", path)
        return False


def _load_cert(key_path: Path, key_pem: bytes, cert_path: Path | None) -> bytes:
    if cert_path is not None:
        data = _read(cert_path, "signer certificate")
    elif b"BEGIN CERTIFICATE" in key_pem:
        data = key_pem
    else:
        sibling = key_path.with_suffix(".crt")
        if not sibling.exists():
            raise SignerConfigError(
                f"no signer certificate for {key_path}: expected a CERTIFICATE block in it, "
                f"or {sibling}, or the cert option"
            )
        data = _read(sibling, "signer certificate")
    try:
        return certificate_der(data)
    except ValueError as exc:
        raise SignerConfigError(f"signer certificate for {key_path} unreadable: {exc}") from exc


def _signer_name(key_path: Path, cert_der: bytes, name: str | None) -> str:
    if name:
        return name
    name_file = key_path.with_suffix(".name")
    if name_file.exists():
        lines = _read(name_file, "signer name file").decode("utf-8").splitlines()
        if lines and lines[0].strip():
            return lines[0].strip()
    cert = x509.load_der_x509_certificate(cert_der)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cns:
        value = cns[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return key_path.stem


class PemSignerModule(SignerModule):
    """A signer whose private key is read from a PEM file."""

    signs_inline = True  # the key is in memory: one ECDSA sign, no I/O
    key_checked_at_load = True  # _load_key: public key compared, test signature verified

    def __init__(
        self, key_path: Path, *, cert_path: Path | None = None, name: str | None = None
    ) -> None:
        self.backend = "pem"
        self.location = str(key_path)
        self._path = key_path
        self._pem = _read(key_path, "signer key file")
        if _KEY_MARKER not in self._pem:
            raise SignerConfigError(f"{key_path} holds no PEM PRIVATE KEY block")
        cert_der = _load_cert(key_path, self._pem, cert_path)
        probe = SignerIdentity("", "", cert_der)
        self.identity = SignerIdentity(
            module_sn=probe.key_id.hex().upper(),
            name=_signer_name(key_path, cert_der, name),
            signer_cert_der=cert_der,
        )
        self._protected = any(marker in self._pem for marker in _ENCRYPTED_MARKERS)
        self._key: ec.EllipticCurvePrivateKey | None = None
        if not self._protected:
            self._key = self._load_key(None)

    def _load_key(self, password: bytes | None) -> ec.EllipticCurvePrivateKey:
        try:
            key = serialization.load_pem_private_key(self._pem, password=password)
        except (ValueError, TypeError) as exc:
            if self._protected:
                raise WrongPasswordError(
                    f"pem signer {self._path}: the password does not decrypt the key"
                ) from exc
            raise SignerConfigError(f"pem signer {self._path}: key unreadable: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise SignerConfigError(
                f"pem signer {self._path}: key is {type(key).__name__}, expected EC P-256"
            )
        if public_key_xy(key.public_key()) != self.identity.public_key:
            raise SignerConfigError(
                f"pem signer {self._path}: the private key does not match the signer "
                "certificate's public key"
            )
        probe = hashlib.sha256(b"atcaprov pem signer self-check " + self.identity.key_id).digest()
        if not crypto.verify_digest(
            self.identity.verify_key, probe, crypto.sign_digest(key, probe)
        ):  # checked once here, so the server need not verify each signature of this key
            raise SignerConfigError(
                f"pem signer {self._path}: a test signature does not verify with the signer "
                "certificate's public key"
            )
        return key

    @property
    def password_protected(self) -> bool:
        return self._protected

    @property
    def unlocked(self) -> bool:
        return self._key is not None

    def unlock(self, password: str) -> None:
        if not self._protected:
            return
        self._key = self._load_key(password.encode("utf-8"))

    def sign_digest(self, digest: bytes) -> bytes:
        digest = check_digest(digest)
        if self._key is None:
            raise SignerLockedError(f"pem signer {self._path} is locked: unlock it first")
        return crypto.sign_digest(self._key, digest)

    def close(self) -> None:
        self._key = None


def key_signer_fingerprint(cert_der: bytes) -> str:
    """The pem back-end's module SN: the key id in uppercase hex."""
    return SignerIdentity("", "", cert_der).key_id.hex().upper()


@dataclass(frozen=True)
class PemModuleCreator(ModuleCreator):
    """Writes a new key file ``path`` (with its certificate inside) and ``<stem>.name``;
    development only.

    Options: ``path`` (the key file to write, ``.pem`` or ``.key``; it must not exist).
    """

    path: Path | None = None

    cli_options = (
        BackendOption(
            "--pem-key",
            "path",
            {"create": "pem: key file to write (.pem/.key; development only)."},
            kind="path",
        ),
    )
    module_is_file = True

    def check(self, spec: SignerSpec) -> None:
        if self.path is None:
            raise SignerSetupError("the pem back-end needs --pem-key FILE (the key file to write)")

    def create(self, spec: SignerSpec, issuer: IssueSignerCert, now: dt.datetime) -> CreatedModule:
        self.check(spec)
        assert self.path is not None
        key_path = self.path
        if key_path.suffix not in (".pem", ".key"):
            raise SignerSetupError(f"pem key file {key_path} must end in .pem or .key")
        name_path = key_path.with_suffix(".name")
        for path in (key_path, name_path, key_path.with_suffix(".crt")):
            if path.exists():
                raise OutputExistsError(f"{path} exists: will not overwrite it")
        key = ec.generate_private_key(ec.SECP256R1())
        sid = spec.signer_id if spec.signer_id is not None else key_signer_id(key.public_key())
        cert_der = issuer(signer_cert_request(key.public_key(), spec, sid, now))
        identity = SignerIdentity(key_signer_fingerprint(cert_der), spec.name, cert_der)
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(spec.password.encode("utf-8"))
            if spec.password is not None
            else serialization.NoEncryption()
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        cert_pem = x509.load_der_x509_certificate(cert_der).public_bytes(serialization.Encoding.PEM)
        try:
            key_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SignerSetupError(f"cannot create {key_path.parent}: {exc.strerror}") from exc
        write_new(key_path, key_pem + cert_pem, 0o600)
        write_new(name_path, (spec.name + "\n").encode("utf-8"), 0o644)
        protected, identity = check_through_backend(
            PemBackend(key_path), str(key_path), identity, spec.password
        )
        return CreatedModule(
            "pem",
            str(key_path),
            identity,
            protected,
            files=(key_path, name_path),
            notes=(CREATED_KEY_WARNING.format(path=key_path),),
        )


@register_backend("pem")
class PemBackend(SignerBackend):
    """Signer keys in PEM files: ``path`` is one key file or a folder of them.

    Options: ``path`` (required), ``cert`` (certificate file, single-file mode only), ``name``
    (signer name, single-file mode only).
    """

    warning: ClassVar[str | None] = PEM_WARNING
    cli_options = (
        BackendOption(
            "--pem-key",
            "path",
            dict.fromkeys(("serve", "list"), "pem: key file or folder of keys."),
            kind="path",
            required="FILE_OR_FOLDER",
        ),
        BackendOption(
            "--pem-cert",
            "cert",
            {"serve": "pem: signer certificate file."},
            kind="file",
            selects=False,
        ),
    )
    creator = PemModuleCreator

    def __init__(
        self, path: str | Path, *, cert: str | Path | None = None, name: str | None = None
    ) -> None:
        self._path = Path(path)
        if not self._path.exists():
            raise SignerConfigError(f"pem back-end: {self._path} does not exist")
        if self._path.is_dir() and (cert is not None or name is not None):
            raise SignerConfigError(
                "pem back-end: the cert and name options need a single key file, "
                f"not the folder {self._path}"
            )
        self._cert = Path(cert) if cert is not None else None
        self._name = name
        # PEM_WARNING is the class's ``warning``: whoever uses the back-end prints it in its
        # own format (the server's console line, signer list's WARNING line), once.

    def scan(self) -> set[str]:
        if self._path.is_dir():
            return {str(p) for p in sorted(self._path.iterdir()) if _is_key_file(p)}
        return {str(self._path)} if self._path.is_file() else set()

    def open(self, location: str) -> PemSignerModule:
        path = Path(location)
        if path == self._path:
            return PemSignerModule(path, cert_path=self._cert, name=self._name)
        if not self._path.is_dir() or path.parent != self._path:
            raise SignerConfigError(f"pem back-end: {location} is not a module of {self._path}")
        return PemSignerModule(path)
