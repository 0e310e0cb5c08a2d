"""The ``pkcs11`` signer back-end: the signer CA key on a PKCS#11 token (HSM, smart card, SoftHSM).

Uses python-pkcs11. A module is one initialised token (location = the token serial; with the
``token_label`` option only tokens of that label). The private key is found by label
(``key_label``, CKO_PRIVATE_KEY, CKK_EC) and signs with CKM_ECDSA over the 32-byte digest; the
signer certificate is a CKO_CERTIFICATE object on the token (label ``cert_label``, default the
key label; it must be a public object so the identity is known before login) or a file (``cert``
option, PEM or DER). The user PIN comes from the environment variable named by ``pin_env``
(default ``ATCAPROV_PKCS11_PIN``) when it is set, otherwise through :meth:`unlock` (the server
prompts). The PIN is never stored: the logged-in session is what stays open.

:class:`Pkcs11ModuleCreator` is how ``provserver signer create`` generates the signer key on a
token and stores the signer certificate next to it.

python-pkcs11 is an optional package: without it this module still loads (the back-end's
options and creator are declared here), and opening the back-end or creating a module says
which package is missing.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from atcaprov.crypto import certificate_public_key, public_key_from_xy, verify_digest
from atcaprov.pemder import certificate_der

from .base import (
    SIGNATURE_SIZE,
    BackendOption,
    SignerBackend,
    SignerConfigError,
    SignerError,
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
)
from .module_layout import IssueSignerCert

try:
    import pkcs11
    from pkcs11 import (
        Attribute,
        CertificateType,
        KeyType,
        Mechanism,
        MechanismFlag,
        ObjectClass,
        TokenFlag,
    )
    from pkcs11 import exceptions as p11e
    from pkcs11.util.ec import encode_named_curve_parameters
except ImportError as exc:  # optional package: see the module docstring
    _MISSING: ImportError | None = exc
else:
    _MISSING = None

log = logging.getLogger(__name__)

DEFAULT_PIN_ENV = "ATCAPROV_PKCS11_PIN"
DEFAULT_KEY_LABEL = "signer"
# Where Debian/Ubuntu (and a few other distributions) install SoftHSM2's PKCS#11 module.
SOFTHSM2_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
# PKCS#11 errors meaning the token (or the session on it) went away.
_GONE: tuple[type[Exception], ...] = (
    (
        p11e.DeviceRemoved,
        p11e.TokenNotPresent,
        p11e.SessionClosed,
        p11e.SessionHandleInvalid,
        p11e.DeviceError,
        p11e.TokenNotRecognised,
    )
    if _MISSING is None
    else ()
)


def _check_package() -> None:
    """Raise SignerConfigError (as the registry does for a missing package) without it."""
    if _MISSING is not None:
        raise SignerConfigError(
            f"signer back-end 'pkcs11' cannot be loaded: {_MISSING} "
            f"(install the package {_MISSING.name!r})"
        ) from _MISSING


def find_softhsm2() -> str | None:
    """Path of SoftHSM2's library in the usual places, or None."""
    for candidate in SOFTHSM2_PATHS:
        if Path(candidate).is_file():
            return candidate
    return None


def _serial(token: Any) -> str:
    raw = token.serial
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
    return text.strip()


def _load_cert_file(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SignerConfigError(f"pkcs11 back-end: cannot read certificate {path}: {exc}") from exc
    try:
        return certificate_der(data)
    except ValueError as exc:
        raise SignerConfigError(f"pkcs11 back-end: {path} is no certificate: {exc}") from exc


class Pkcs11SignerModule(SignerModule):
    """A signer key on one PKCS#11 token."""

    def __init__(
        self,
        token: Any,
        *,
        key_label: str,
        cert_label: str,
        cert_der: bytes | None,
        name: str | None,
        pin_env: str,
    ) -> None:
        self.backend = "pkcs11"
        self._token = token
        self._serial = _serial(token)
        self.location = self._serial
        self._key_label = key_label
        self._session: Any = None
        self._key: Any = None
        try:
            flags = token.flags
            self._protected = bool(flags & TokenFlag.LOGIN_REQUIRED)
            if cert_der is None:
                cert_der = self._read_cert_object(cert_label)
            label = token.label.strip()
        except _GONE as exc:
            raise SignerUnavailableError(f"pkcs11 token {self._serial} is gone: {exc}") from exc
        self.identity = SignerIdentity(
            module_sn=self._serial, name=name or label, signer_cert_der=cert_der
        )
        if not self._protected:
            self._login(None)
        else:
            pin = os.environ.get(pin_env)
            if pin:
                log.info("pkcs11 token %s: logging in with the PIN from $%s", label, pin_env)
                self._login(pin)

    def _read_cert_object(self, cert_label: str) -> bytes:
        with self._token.open() as session:
            found = list(
                session.get_objects(
                    {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: cert_label}
                )
            )
            if len(found) != 1:
                raise SignerConfigError(
                    f"pkcs11 token {self._token.label.strip()!r}: expected one public "
                    f"certificate object labelled {cert_label!r}, found {len(found)}"
                )
            value = found[0][Attribute.VALUE]
        return bytes(value)

    def _login(self, pin: str | None) -> None:
        try:
            session = self._token.open(user_pin=pin) if pin is not None else self._token.open()
        except (p11e.PinIncorrect, p11e.PinLenRange, p11e.PinInvalid) as exc:
            raise WrongPasswordError(
                f"pkcs11 token {self._serial}: PIN refused by the token"
            ) from exc
        except p11e.PinLocked as exc:
            raise WrongPasswordError(f"pkcs11 token {self._serial}: PIN locked") from exc
        except _GONE as exc:
            raise SignerUnavailableError(f"pkcs11 token {self._serial} is gone: {exc}") from exc
        try:
            key = session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=self._key_label
            )
        except (p11e.NoSuchKey, p11e.MultipleObjectsReturned) as exc:
            session.close()
            raise SignerConfigError(
                f"pkcs11 token {self._serial}: expected one EC private key labelled "
                f"{self._key_label!r}: {type(exc).__name__}"
            ) from exc
        self._session, self._key = session, key
        self._self_test()

    def _self_test(self) -> None:
        """Sign a fixed digest and check it against the certificate's public key."""
        digest = bytes(range(32))
        signature = self.sign_digest(digest)
        public = certificate_public_key(self.identity.certificate)
        if not verify_digest(public, digest, signature):
            self.close()
            raise SignerConfigError(
                f"pkcs11 token {self._serial}: key {self._key_label!r} does not match the "
                "signer certificate"
            )

    @property
    def password_protected(self) -> bool:
        return self._protected

    @property
    def unlocked(self) -> bool:
        return self._key is not None

    def unlock(self, password: str) -> None:
        if self._key is not None:
            return
        self._login(password)

    def sign_digest(self, digest: bytes) -> bytes:
        digest = check_digest(digest)
        if self._key is None:
            raise SignerLockedError(f"pkcs11 token {self._serial} is locked: give its PIN")
        try:
            signature = bytes(self._key.sign(digest, mechanism=Mechanism.ECDSA))
        except _GONE as exc:
            self._key = self._session = None
            raise SignerUnavailableError(f"pkcs11 token {self._serial} is gone: {exc}") from exc
        except p11e.UserNotLoggedIn as exc:
            self._key = self._session = None
            raise SignerLockedError(f"pkcs11 token {self._serial} logged out") from exc
        except p11e.PKCS11Error as exc:
            raise SignerError(f"pkcs11 token {self._serial}: sign failed: {exc!r}") from exc
        if len(signature) != SIGNATURE_SIZE:
            raise SignerError(
                f"pkcs11 token {self._serial}: CKM_ECDSA gave {len(signature)} bytes, "
                f"expected r||s of {SIGNATURE_SIZE}"
            )
        return signature

    def close(self) -> None:
        session, self._session, self._key = self._session, None, None
        if session is not None:
            try:
                session.close()
            except p11e.PKCS11Error as exc:
                log.debug("pkcs11 token %s: closing the session: %r", self._serial, exc)


def _ec_point(raw: bytes) -> bytes:
    """X||Y from CKA_EC_POINT (DER OCTET STRING of 04||X||Y, or raw as some tokens give it)."""
    if len(raw) == 67 and raw[:3] == b"\x04\x41\x04":
        return raw[3:]
    if len(raw) == 65 and raw[0] == 0x04:
        return raw[1:]
    raise SignerSetupError(f"pkcs11: EC point of {len(raw)} bytes ({raw[:4].hex()}...) not P-256")


@dataclass(frozen=True)
class Pkcs11ModuleCreator(ModuleCreator):
    """Generates the EC P-256 signer key on a PKCS#11 token and stores the signer certificate.

    The key pair and a public CKO_CERTIFICATE object are labelled ``label`` (what the pkcs11
    back-end looks for); the private key is sensitive and not extractable. A token that already
    holds objects with that label is refused.

    Options: ``pin`` (the token's user PIN, required), ``library`` (default SoftHSM2),
    ``token_label`` (needed when several tokens exist), ``label`` (default ``signer``).
    """

    pin: str | None = field(default=None, repr=False)
    library: str | None = None
    token_label: str | None = None
    label: str = DEFAULT_KEY_LABEL

    cli_options = (
        BackendOption(
            "--pkcs11-lib", "library", {"create": "pkcs11: PKCS#11 library (default SoftHSM2)."}
        ),
        BackendOption("--pkcs11-token", "token_label", {"create": "pkcs11: token label."}),
        BackendOption(
            "--pkcs11-pin-env",
            "pin",
            {"create": "pkcs11: environment variable with the user PIN (else prompted)."},
            default=DEFAULT_PIN_ENV,
            metavar="VAR",
            show_default=True,
            selects=False,
            secret_prompt="User PIN of the token (or set {var})",
        ),
    )
    no_password = "the token's user PIN protects the key (--pkcs11-pin-env or the PIN prompt)"

    def check(self, spec: SignerSpec) -> None:
        if self.pin is None:
            raise SignerSetupError("the pkcs11 back-end needs the token's user PIN")
        if spec.password is not None:
            raise SignerSetupError(
                "pkcs11: the token's user PIN protects the key; a module password does not apply"
            )

    def create(self, spec: SignerSpec, issuer: IssueSignerCert, now: dt.datetime) -> CreatedModule:
        self.check(spec)
        assert self.pin is not None
        pin, label, token_label = self.pin, self.label, self.token_label
        if _MISSING is not None:
            raise SignerSetupError(
                f"pkcs11: python-pkcs11 is not installed ({_MISSING}); pip install python-pkcs11"
            ) from _MISSING
        path = self.library or find_softhsm2()
        if path is None:
            raise SignerSetupError(
                "pkcs11: give --pkcs11-lib (SoftHSM2 not found in "
                + ", ".join(SOFTHSM2_PATHS)
                + ")"
            )
        try:
            lib = pkcs11.lib(path)
            tokens = [
                t
                for t in lib.get_tokens(token_label=token_label)
                if t.flags & TokenFlag.TOKEN_INITIALIZED
            ]
        except p11e.PKCS11Error as exc:
            raise SignerSetupError(f"pkcs11: cannot use library {path}: {exc!r}") from exc
        if len(tokens) != 1:
            labels = ", ".join(repr(t.label.strip()) for t in tokens) or "none"
            which = f"labelled {token_label!r}" if token_label else "initialised"
            raise SignerSetupError(
                f"pkcs11: expected one token {which} in {path}, found {len(tokens)} ({labels}); "
                "choose one with --pkcs11-token"
            )
        token = tokens[0]
        location = _serial(token)
        token_name = str(token.label).strip()
        try:
            session = token.open(rw=True, user_pin=pin)
        except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange, p11e.PinLocked) as exc:
            raise SignerSetupError(
                f"pkcs11: token {token_name!r} refused the PIN ({type(exc).__name__})"
            ) from exc
        except p11e.PKCS11Error as exc:
            raise SignerSetupError(f"pkcs11: cannot open token {token_name!r}: {exc!r}") from exc
        try:
            existing = list(session.get_objects({Attribute.LABEL: label}))
            if existing:
                raise OutputExistsError(
                    f"pkcs11: token {token_name!r} already holds {len(existing)} object(s) "
                    f"labelled {label!r}: will not add a second signer key"
                )
            object_id = secrets.token_bytes(20)
            params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                local=True,
            )
            public, private = params.generate_keypair(
                store=True,
                label=label,
                id=object_id,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
            )
            try:
                point = _ec_point(bytes(public[Attribute.EC_POINT]))
                key = public_key_from_xy(point)
                sid = spec.signer_id if spec.signer_id is not None else key_signer_id(key)
                cert_der = issuer(signer_cert_request(key, spec, sid, now))
                cert = x509.load_der_x509_certificate(cert_der)
                session.create_object(
                    {
                        Attribute.CLASS: ObjectClass.CERTIFICATE,
                        Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: False,
                        Attribute.LABEL: label,
                        Attribute.ID: object_id,
                        Attribute.VALUE: cert_der,
                        Attribute.SUBJECT: cert.subject.public_bytes(),
                        Attribute.ISSUER: cert.issuer.public_bytes(),
                    }
                )
            except BaseException:
                private.destroy()  # leave the token as it was
                public.destroy()
                raise
        except p11e.PKCS11Error as exc:
            raise SignerSetupError(f"pkcs11: token {token_name!r}: {exc!r}") from exc
        finally:
            session.close()
        identity = SignerIdentity(location, token_name, cert_der)
        protected, identity = check_through_backend(
            Pkcs11Backend(library=path, token_label=token_name), location, identity, pin
        )
        notes = []
        if token_name != spec.name:
            notes.append(
                f"Note: the pkcs11 back-end names a signer after its token label "
                f"({token_name!r}), not {spec.name!r}; the cert info file uses {spec.name!r}."
            )
        return CreatedModule("pkcs11", location, identity, protected, notes=tuple(notes))


@register_backend("pkcs11")
class Pkcs11Backend(SignerBackend):
    """Signer keys on PKCS#11 tokens.

    Options: ``library`` (module path; default SoftHSM2 in the usual Debian paths),
    ``token_label`` (only tokens with this label), ``key_label`` (default ``signer``),
    ``cert_label`` (certificate object label, default the key label), ``cert`` (certificate
    file instead of the token object), ``name`` (signer name, default the token label),
    ``pin_env`` (environment variable holding the user PIN, default ``ATCAPROV_PKCS11_PIN``).
    """

    cli_options = (
        BackendOption(
            "--pkcs11-lib",
            "library",
            {"serve": "pkcs11: PKCS#11 library (.so/.dll).", "list": "pkcs11: PKCS#11 library."},
        ),
        BackendOption(
            "--pkcs11-token",
            "token_label",
            dict.fromkeys(("serve", "list"), "pkcs11: token label."),
        ),
        BackendOption(
            "--pkcs11-pin-env",
            "pin_env",
            {"list": "pkcs11: environment variable with the user PIN (optional for listing)."},
            default=DEFAULT_PIN_ENV,
            metavar="VAR",
            show_default=True,
            selects=False,
        ),
    )
    creator = Pkcs11ModuleCreator

    def __init__(
        self,
        *,
        library: str | None = None,
        token_label: str | None = None,
        key_label: str = DEFAULT_KEY_LABEL,
        cert_label: str | None = None,
        cert: str | Path | None = None,
        name: str | None = None,
        pin_env: str = DEFAULT_PIN_ENV,
    ) -> None:
        _check_package()
        path = library or find_softhsm2()
        if path is None:
            raise SignerConfigError(
                "pkcs11 back-end: no library given and SoftHSM2 not found in "
                + ", ".join(SOFTHSM2_PATHS)
            )
        try:
            self._lib = pkcs11.lib(path)
        except p11e.PKCS11Error as exc:
            raise SignerConfigError(f"pkcs11 back-end: cannot load {path}: {exc}") from exc
        self.library = path
        self._token_label = token_label
        self._key_label = key_label
        self._cert_label = cert_label or key_label
        self._cert_der = _load_cert_file(Path(cert)) if cert is not None else None
        self._name = name
        self._pin_env = pin_env

    def _tokens(self) -> list[Any]:
        try:
            tokens = list(self._lib.get_tokens(token_label=self._token_label))
        except p11e.PKCS11Error as exc:
            raise SignerUnavailableError(f"pkcs11 back-end: listing tokens: {exc!r}") from exc
        return [t for t in tokens if t.flags & TokenFlag.TOKEN_INITIALIZED]

    def scan(self) -> set[str]:
        return {_serial(t) for t in self._tokens()}

    def open(self, location: str) -> Pkcs11SignerModule:
        for token in self._tokens():
            if _serial(token) == location:
                return Pkcs11SignerModule(
                    token,
                    key_label=self._key_label,
                    cert_label=self._cert_label,
                    cert_der=self._cert_der,
                    name=self._name,
                    pin_env=self._pin_env,
                )
        raise SignerUnavailableError(f"pkcs11 back-end: no token with serial {location!r}")
