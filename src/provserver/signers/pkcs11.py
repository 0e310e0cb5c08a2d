"""The ``pkcs11`` signer back-end: the signer CA key on a PKCS#11 token (HSM, smart card, SoftHSM).

Uses python-pkcs11. A module is one initialised token (location = the token serial; with the
``token_label`` option only tokens of that label). The private key is found by label
(``key_label``, CKO_PRIVATE_KEY, CKK_EC) and signs with CKM_ECDSA over the 32-byte digest; the
signer certificate is a CKO_CERTIFICATE object on the token (label ``cert_label``, default the
key label; it must be a public object so the identity is known before login) or a file (``cert``
option, PEM or DER). The user PIN comes from the environment variable named by ``pin_env``
(default ``ATCAPROV_PKCS11_PIN``) when it is set, otherwise through :meth:`unlock` (the server
prompts). The PIN is never stored: the logged-in session is what stays open.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pkcs11
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11e

from atcaprov.pemder import certificate_der

from .base import (
    SIGNATURE_SIZE,
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
_GONE = (
    p11e.DeviceRemoved,
    p11e.TokenNotPresent,
    p11e.SessionClosed,
    p11e.SessionHandleInvalid,
    p11e.DeviceError,
    p11e.TokenNotRecognised,
)


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
        public = self.identity.certificate.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)  # checked by SignerIdentity
        der = utils.encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            public.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        except InvalidSignature as exc:
            self.close()
            raise SignerConfigError(
                f"pkcs11 token {self._serial}: key {self._key_label!r} does not match the "
                "signer certificate"
            ) from exc

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


@register_backend("pkcs11")
class Pkcs11Backend(SignerBackend):
    """Signer keys on PKCS#11 tokens.

    Options: ``library`` (module path; default SoftHSM2 in the usual Debian paths),
    ``token_label`` (only tokens with this label), ``key_label`` (default ``signer``),
    ``cert_label`` (certificate object label, default the key label), ``cert`` (certificate
    file instead of the token object), ``name`` (signer name, default the token label),
    ``pin_env`` (environment variable holding the user PIN, default ``ATCAPROV_PKCS11_PIN``).
    """

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
