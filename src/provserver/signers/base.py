"""The signer interface of the provisioning server and the registry of its back-ends.

A *signer module* holds one signer CA private key (in a secure chip, an HSM token, or, for
development only, a file) together with its signer certificate. The server signs device
certificates with it through :meth:`SignerModule.sign_digest`. A *back-end* finds modules
(:meth:`SignerBackend.scan` returns the locations present now; the server's manager diffs two
scans to see modules plugged in or removed) and opens them. Back-ends register under the name the
CLI uses (``sim``, ``hid``, ``pkcs11``, ``pem``) with :func:`register_backend`, and
:func:`open_backend` builds one from its name and options, as python-can does with its
interfaces (``open_backend``, ``backend_class`` and ``available_backends`` are the methods of the
:class:`~atcaprov.registry.Registry` :data:`SIGNER_BACKENDS`).

A back-end also declares its command-line options (:class:`BackendOption`, no click here) and
how a module of its kind is made (its :attr:`SignerBackend.creator`, see
:mod:`provserver.signers.create`).
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from atcaprov.closing import Closeable
from atcaprov.crypto import public_key_xy
from atcaprov.errors import AtcaprovError
from atcaprov.registry import Registry

if TYPE_CHECKING:
    from .create import ModuleCreator

DIGEST_SIZE = 32
SIGNATURE_SIZE = 64
PUBLIC_KEY_SIZE = 64
SIGNER_ID_SIZE = 2


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
class SignerError(AtcaprovError):
    """Root of the signer back-end errors."""


class UnknownBackendError(SignerError):
    """No back-end is registered under the name asked for."""


class SignerConfigError(SignerError):
    """A back-end option is missing or wrong (path, library, label...)."""


class SignerIdentityError(SignerError):
    """A signer certificate that cannot serve as signer identity (not DER, not P-256...)."""


class SignerFormatError(SignerError):
    """A module whose stored contents do not follow the signer module layout."""


class SignerLockedError(SignerError):
    """The module is password protected and has not been unlocked."""


class WrongPasswordError(SignerError):
    """The module refused the password (checked by the module itself)."""


class SignerUnavailableError(SignerError):
    """The module stopped answering (removed, powered off, transport failure)."""


# --------------------------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------------------------
_SIGNER_ID_IN_CN = re.compile(r"([0-9A-F]{4})$")


@dataclass(frozen=True)
class SignerIdentity:
    """Who a signer module is: its serial, its name and its signer certificate.

    ``module_sn`` is the chip serial number in uppercase hex for chip modules, the token serial
    for PKCS#11 tokens and the key fingerprint for PEM files. The certificate must be DER with
    a P-256 public key (checked on construction).
    """

    module_sn: str
    name: str
    signer_cert_der: bytes

    def __post_init__(self) -> None:
        cert = self.certificate  # raises SignerIdentityError for anything unusable
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise SignerIdentityError(
                f"signer certificate of {self.name!r}: public key is "
                f"{type(key).__name__}, expected an EC P-256 key"
            )

    @cached_property
    def certificate(self) -> x509.Certificate:
        """The signer certificate, parsed."""
        try:
            return x509.load_der_x509_certificate(self.signer_cert_der)
        except ValueError as exc:
            head = self.signer_cert_der[:8].hex()
            raise SignerIdentityError(
                f"signer certificate of {self.name!r} is not a DER X.509 certificate "
                f"({len(self.signer_cert_der)} bytes starting {head}): {exc}"
            ) from exc

    @cached_property
    def verify_key(self) -> ec.EllipticCurvePublicKey:
        """The signer public key as a key object (to check the module's signatures)."""
        key = self.certificate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)  # checked in __post_init__
        return key

    @cached_property
    def certificate_pem(self) -> str:
        """The signer certificate as PEM text (what the records store)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @cached_property
    def public_key(self) -> bytes:
        """The signer public key as 64 bytes X‖Y (big-endian), from the certificate."""
        key = self.certificate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)  # checked in __post_init__
        return public_key_xy(key)

    @cached_property
    def key_id(self) -> bytes:
        """SHA1(04‖X‖Y), 20 bytes: the subject key id atcacert puts in the certificates."""
        return hashlib.sha1(b"\x04" + self.public_key).digest()

    @cached_property
    def signer_id(self) -> bytes:
        """The 2-byte signer id.

        Taken from the signer certificate's subject common name when it ends in 4 uppercase hex
        digits (where atcacert signer templates place it, e.g. ``Example Signer C48B``);
        otherwise the first 2 bytes of :attr:`key_id` (such a certificate cannot be rebuilt by
        an atcacert signer definition that expects the id in the name).
        """
        found = signer_id_from_certificate(self.certificate)
        return found if found is not None else self.key_id[:SIGNER_ID_SIZE]


def signer_id_from_certificate(cert: x509.Certificate) -> bytes | None:
    """The signer id written as the last 4 hex digits of the subject CN, if it is there."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    value = names[0].value
    text = value if isinstance(value, str) else value.decode("utf-8", "replace")
    match = _SIGNER_ID_IN_CN.search(text)
    return bytes.fromhex(match.group(1)) if match else None


def check_digest(digest: bytes) -> bytes:
    """Return ``digest`` as bytes if it is 32 bytes long, else raise SignerError."""
    if not isinstance(digest, (bytes, bytearray)) or len(digest) != DIGEST_SIZE:
        got = f"{len(digest)} bytes" if isinstance(digest, (bytes, bytearray)) else repr(digest)
        raise SignerError(f"sign_digest needs a {DIGEST_SIZE}-byte digest, got {got}")
    return bytes(digest)


# --------------------------------------------------------------------------------------------
# Command-line options a back-end declares
# --------------------------------------------------------------------------------------------
#: ``serve``: ``provserver``; ``list``, ``create``: ``provserver signer list/create``.
Command = Literal["serve", "list", "create"]


@dataclass(frozen=True)
class BackendOption:
    """One command-line option of a signer back-end, as the back-end declares it (no click).

    The command lines build their click options from these (:mod:`provserver.backend_options`).
    ``help`` maps each command offering the option to its help text. The value given is passed
    as the keyword option ``key`` of the back-end (``serve``, ``list``) or of its module creator
    (``create``); an option not given is not passed.
    """

    flag: str
    key: str
    help: Mapping[Command, str]
    kind: Literal["text", "path", "file"] = "text"  # file: an existing file
    default: str | None = None
    metavar: str | None = None
    show_default: bool = False
    #: Given, it picks its back-end when none is named, and no other back-end may be named.
    selects: bool = True
    #: The back-end cannot open without it: what to give (e.g. ``FILE_OR_FOLDER``).
    required: str | None = None
    #: Not given: this folder in the server's data folder.
    in_data_dir: str | None = None
    #: The value names an environment variable holding a secret; the secret is what is passed,
    #: asked for (not echoed) with this prompt when the variable is unset (``{var}``: its name).
    secret_prompt: str | None = None

    @property
    def dest(self) -> str:
        """The click parameter name: ``--pkcs11-lib`` -> ``pkcs11_lib``."""
        return self.flag.lstrip("-").replace("-", "_")


# --------------------------------------------------------------------------------------------
# Module and back-end interfaces
# --------------------------------------------------------------------------------------------


class SignerModule(Closeable, ABC):
    """One open signer module.

    ``sign_digest`` blocks (the server runs it in a worker thread) and is not re-entrant: the
    caller serialises operations on one module. A module whose ``sign_digest`` is a short
    in-memory computation that never waits on I/O (a key held in this process) sets
    ``signs_inline``: the server then calls it on its event loop, sparing a thread hand-off.

    ``key_checked_at_load``: the module's private key is held in this process and was checked
    against its signer certificate when it was loaded or unlocked (its public key compared and
    a test signature verified with the certificate's key), so the server does not verify its
    signatures again per request. Modules whose key is elsewhere (hardware: a chip, a PKCS#11
    token) leave it False and every signature they return is verified before it is used.
    """

    identity: SignerIdentity
    backend: str
    location: str
    signs_inline: ClassVar[bool] = False
    key_checked_at_load: ClassVar[bool] = False

    @property
    @abstractmethod
    def password_protected(self) -> bool:
        """True if the module needs a password before it signs."""

    @property
    def needs_password(self) -> bool:
        """True while the module is protected and not unlocked."""
        return self.password_protected and not self.unlocked

    @property
    @abstractmethod
    def unlocked(self) -> bool:
        """True once a correct password was given (always True for unprotected modules)."""

    @abstractmethod
    def unlock(self, password: str) -> None:
        """Check ``password`` with the module; raise WrongPasswordError if it refuses it.

        The password itself is never stored or logged.
        """

    @abstractmethod
    def sign_digest(self, digest: bytes) -> bytes:
        """ECDSA P-256 signature r‖s (64 bytes) of a 32-byte digest.

        Raises SignerLockedError if a password is needed, SignerUnavailableError if the module
        stopped answering.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the module. Idempotent."""

    def __repr__(self) -> str:
        state = "locked" if self.needs_password else "ready"
        return (
            f"<{type(self).__name__} {self.backend}:{self.location} "
            f"sn={self.identity.module_sn} name={self.identity.name!r} {state}>"
        )


class SignerBackend(ABC):
    """A source of signer modules of one kind."""

    name: ClassVar[str] = ""
    #: A text the server prints at start when this back-end is in use (None: nothing to say).
    warning: ClassVar[str | None] = None
    #: Its options on the command lines of the server (``serve``) and ``signer list``.
    cli_options: ClassVar[tuple[BackendOption, ...]] = ()
    #: Used when no back-end is named (by the server and ``signer list``).
    used_by_default: ClassVar[bool] = False
    #: How a module of this kind is made (``signer create``); None: it cannot make one.
    creator: ClassVar[type[ModuleCreator] | None] = None

    @abstractmethod
    def scan(self) -> set[str]:
        """Locations of the modules present now (stable keys: the manager diffs them)."""

    @abstractmethod
    def open(self, location: str) -> SignerModule:
        """Open the module at ``location`` (one of :meth:`scan`'s)."""

    def close(self) -> None:  # noqa: B027 - optional for back-ends holding nothing
        """Release what the back-end holds (libraries, sessions). Idempotent."""


_B = TypeVar("_B", bound=SignerBackend)


def _unloadable(message: str, exc: ImportError) -> SignerConfigError:
    return SignerConfigError(f"{message} (install the package {exc.name!r})")


# Built-in back-ends, imported on first use (hidapi itself loads only when a kit is opened), in
# the order the command lines list them.
SIGNER_BACKENDS: Registry[SignerBackend] = Registry(
    "signer back-end",
    {
        "sim": "provserver.signers.sim",
        "hid": "provserver.signers.hid",
        "pkcs11": "provserver.signers.pkcs11",
        "pem": "provserver.signers.pem",
    },
    unknown=UnknownBackendError,
    unloadable=_unloadable,
)


def register_backend(name: str) -> Callable[[type[_B]], type[_B]]:
    """Class decorator: make a back-end available to :func:`open_backend` under ``name``."""
    return SIGNER_BACKENDS.register(name)


#: The back-end class registered under a name (importing built-ins on demand).
backend_class = SIGNER_BACKENDS.get
#: Build a back-end by name, e.g. ``open_backend("sim", modules="signers/")``.
open_backend = SIGNER_BACKENDS.open
#: Names of all back-ends, built-in and registered.
available_backends = SIGNER_BACKENDS.names
