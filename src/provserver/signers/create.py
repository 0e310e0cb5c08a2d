"""How a new signer module is made: what every back-end's module creator shares.

``provserver signer create`` makes the signer key *inside* a module, issues the signer
certificate from the root CA and stores it in the module. How that is done is each back-end's
business: its :attr:`~provserver.signers.base.SignerBackend.creator`, a :class:`ModuleCreator`
built from the back-end's own create options (:func:`module_creator`). This module owns what
they share:

* :class:`SignerSpec`, what the signer certificate and module get, with the checks of the name
  (:func:`check_signer_name`), the years (:func:`check_validity_years`) and the signer id
  (:func:`parse_signer_id`);
* :func:`signer_cert_request`, the certificate request for a key that is not on a chip, and
  :func:`chip_module_options`, ``module_layout.create_module``'s arguments for one that is;
* the self-test every creator ends with (:func:`check_through_backend`): the new module reopened
  through the server's own back-end (what the server will read) signs, and the signature is
  checked against the certificate;
* :class:`CreatedModule`, what a creator returns, and :func:`write_new` (a file created with a
  mode, never overwritten).

Errors are :class:`SignerSetupError` (one line saying what was given and what was expected),
rooted in :class:`atcaprov.errors.AtcaprovError`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from atcaprov.atcacert.dates import COMP_EXPIRE_YEARS_MAX
from atcaprov.crypto import certificate_public_key, public_key_xy, verify_digest
from atcaprov.errors import AtcaprovError

from .base import (
    SIGNER_ID_SIZE,
    BackendOption,
    SignerBackend,
    SignerIdentity,
    SignerModule,
    backend_class,
)
from .module_layout import (
    DEFAULT_VALIDITY_YEARS,
    NAME_MAX,
    IssueSignerCert,
    SignerCertRequest,
    signer_validity,
)
from .password import DEFAULT_ITERATIONS

MAX_VALIDITY_YEARS = COMP_EXPIRE_YEARS_MAX
_SELF_TEST_DIGEST = hashlib.sha256(b"atcaprov signer set-up check").digest()


class SignerSetupError(AtcaprovError):
    """A signer set-up input or step is wrong (what was given, what was expected)."""


class OutputExistsError(SignerSetupError):
    """A file the set-up would write exists already (and may not be overwritten)."""


# --------------------------------------------------------------------------------------------
# Small input checks
# --------------------------------------------------------------------------------------------
def parse_signer_id(text: str) -> bytes:
    """A signer id given as 4 hex digits (``C48B``, ``0xC48B``) -> 2 bytes."""
    raw = text.strip()
    digits = raw[2:] if raw.lower().startswith("0x") else raw
    if not re.fullmatch(r"[0-9A-Fa-f]{4}", digits):
        raise SignerSetupError(f"signer id {text!r} is not 4 hex digits (e.g. C48B)")
    return bytes.fromhex(digits)


def check_signer_name(name: str) -> str:
    """The signer name: 1..63 UTF-8 bytes of printable text (it is stored on the module)."""
    size = len(name.encode("utf-8"))
    if not name or not name.isprintable() or name != name.strip():
        raise SignerSetupError(
            f"signer name {name!r} must be printable text without leading/trailing spaces"
        )
    if size > NAME_MAX:
        raise SignerSetupError(
            f"signer name {name!r} is {size} UTF-8 bytes; a signer module holds at most {NAME_MAX}"
        )
    return name


def check_validity_years(years: int, what: str) -> int:
    if not 0 <= years <= MAX_VALIDITY_YEARS:
        raise SignerSetupError(
            f"{what} must be 0..{MAX_VALIDITY_YEARS} (0 = no expiry; atcacert stores at most "
            f"{MAX_VALIDITY_YEARS}), got {years}"
        )
    return years


# --------------------------------------------------------------------------------------------
# Signer certificate requests (same shape for every back-end)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignerSpec:
    """What the signer certificate and module get."""

    name: str
    signer_id: bytes | None = None  # None: back-end default (chip: SHA-256(SN)[0:2])
    organization: str | None = None
    validity_years: int = DEFAULT_VALIDITY_YEARS
    password: str | None = None
    kdf_iterations: int = DEFAULT_ITERATIONS

    def __post_init__(self) -> None:
        check_signer_name(self.name)
        check_validity_years(self.validity_years, "--validity-years")
        if self.signer_id is not None and len(self.signer_id) != SIGNER_ID_SIZE:
            raise SignerSetupError(f"signer id must be 2 bytes, got {len(self.signer_id)}")
        if self.password is not None and not self.password:
            raise SignerSetupError("the password is empty: give none for no password")


def signer_cert_request(
    public_key: ec.EllipticCurvePublicKey, spec: SignerSpec, signer_id: bytes, now: dt.datetime
) -> SignerCertRequest:
    """The request module_layout.create_module makes for a chip, for any other key."""
    attributes = []
    if spec.organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, spec.organization))
    attributes.append(
        x509.NameAttribute(NameOID.COMMON_NAME, f"{spec.name} {signer_id.hex().upper()}")
    )
    start, end = signer_validity(now, spec.validity_years)
    return SignerCertRequest(
        public_key=public_key,
        subject=x509.Name(attributes),
        serial_number=int.from_bytes(b"\x40" + signer_id, "big"),
        not_before=start,
        not_after=end,
        signer_id=signer_id,
    )


def key_signer_id(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Default signer id of a key that is not on a chip: its key id's first 2 bytes."""
    return hashlib.sha1(b"\x04" + public_key_xy(public_key)).digest()[:SIGNER_ID_SIZE]


def chip_module_options(
    spec: SignerSpec, issuer: IssueSignerCert, now: dt.datetime
) -> dict[str, Any]:
    """``module_layout.create_module`` arguments for a chip module made to ``spec``."""
    return {
        "name": spec.name,
        "issuer": issuer,
        "organization": spec.organization,
        "signer_id": spec.signer_id,
        "not_before": now,
        "validity_years": spec.validity_years,
        "password": spec.password,
        "kdf_iterations": spec.kdf_iterations,
    }


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreatedModule:
    """A signer module just made, as the server's back-end reads it."""

    backend: str
    location: str
    identity: SignerIdentity
    password_protected: bool
    files: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()


def check_module(module: SignerModule, expected: SignerIdentity, unlock: str | None) -> bool:
    """The module as the server opens it: same identity, it signs, the signature verifies."""
    if module.identity.signer_cert_der != expected.signer_cert_der:
        raise SignerSetupError(
            f"{module.backend} module at {module.location} reads back another certificate "
            "than the one stored"
        )
    if module.needs_password:
        if unlock is None:
            raise SignerSetupError(
                f"{module.backend} module at {module.location} is locked and no password is known"
            )
        module.unlock(unlock)
    signature = module.sign_digest(_SELF_TEST_DIGEST)
    public = certificate_public_key(expected.certificate)
    if not verify_digest(public, _SELF_TEST_DIGEST, signature):
        raise SignerSetupError(
            f"{module.backend} module at {module.location}: its signature does not verify "
            "with the signer certificate"
        ) from None
    return module.password_protected


def check_through_backend(
    backend: SignerBackend, location: str, expected: SignerIdentity, password: str | None
) -> tuple[bool, SignerIdentity]:
    """Reopen a new module as the server will (through ``backend``, closed here) and check it.

    Returns (password protected, the identity the back-end reads).
    """
    try:
        with backend.open(location) as module:
            return check_module(module, expected, password), module.identity
    finally:
        backend.close()


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode``; never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise OutputExistsError(f"{path} exists: will not overwrite it") from None
    except OSError as exc:
        raise SignerSetupError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)  # the umask may have removed bits of ``mode``


# --------------------------------------------------------------------------------------------
# Module creators
# --------------------------------------------------------------------------------------------
class ModuleCreator(ABC):
    """Makes new signer modules of one back-end; built from that back-end's create options.

    A back-end names its creator class in :attr:`SignerBackend.creator`; the creator's
    constructor takes the back-end's own create options (keywords), ``cli_options`` declares
    them for ``provserver signer create``.
    """

    #: Its options on the command line of ``signer create``.
    cli_options: ClassVar[tuple[BackendOption, ...]] = ()
    #: Largest signer certificate the module stores, in bytes (None: no limit). The dry run
    #: checks the worst case against it before anything irreversible.
    cert_max: ClassVar[int | None] = None
    #: The module is a file: without a password anyone who can read it can sign.
    module_is_file: ClassVar[bool] = False
    #: A real module gets a password: ``signer create`` asks for one unless --no-password.
    asks_password: ClassVar[bool] = False
    #: Why a module password does not apply (None: it does), e.g. a token PIN protects the key.
    no_password: ClassVar[str | None] = None

    def check(self, spec: SignerSpec) -> None:  # noqa: B027 - optional for most creators
        """Refuse options or a spec that cannot work, before anything is written."""

    @abstractmethod
    def create(self, spec: SignerSpec, issuer: IssueSignerCert, now: dt.datetime) -> CreatedModule:
        """Make the key inside a new module, have ``issuer`` sign its certificate, store it,
        and check the module through the back-end (:func:`check_through_backend`)."""


def module_creator(backend: str, **options: Any) -> ModuleCreator:
    """The module creator of back-end ``backend``, built with its create ``options``."""
    creator = backend_class(backend).creator
    if creator is None:
        raise SignerSetupError(f"the {backend} back-end cannot create signer modules")
    return creator(**options)
