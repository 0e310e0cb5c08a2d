"""A signer module that is an ATECC508A chip, reached through a Device (any HAL).

Shared by the ``sim`` and ``hid`` back-ends: they differ only in how the Device's HAL is made.
Opening reads the identity and password scheme (:func:`module_layout.read_module`) and, once the
key may be used (at open, or at unlock when protected), signs a fixed digest and checks it with
the certificate's public key. Unlocking
derives the password key and has the chip check it (Nonce + CheckMac); the derived key, never
the password, stays in memory to re-authorize each signature, since the chip forgets the
authorization when it sleeps. ``sign_digest`` runs in one Device session: authorize (if
protected), load the digest into TempKey (Nonce pass-through), Sign external with slot 0.

Transport failures (the chip stopped answering, the kit was unplugged) become
:class:`SignerUnavailableError`; chip refusals become :class:`SignerError`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from atcaprov.crypto import certificate_public_key, verify_digest
from atcaprov.errors import ChipStatusError, CommError
from atcaprov.hal.base import HalError

from . import password as pw
from .base import (
    SIGNATURE_SIZE,
    SignerError,
    SignerFormatError,
    SignerLockedError,
    SignerModule,
    SignerUnavailableError,
    WrongPasswordError,
    check_digest,
)
from .module_layout import SIGNER_KEY_SLOT, ModuleContents, read_module

if TYPE_CHECKING:
    from atcaprov.device import Device

log = logging.getLogger(__name__)

SELF_TEST_DIGEST = hashlib.sha256(b"atcaprov signer module self-test").digest()
# Errors meaning "the module is not there any more" (HAL/transport level).
_TRANSPORT_ERRORS = (CommError, HalError, OSError)


class ChipSignerModule(SignerModule):
    """A signer module on a chip behind ``device``; ``on_close`` releases the transport."""

    def __init__(
        self,
        device: Device,
        *,
        backend: str,
        location: str,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.backend = backend
        self.location = location
        self._device: Device | None = device
        self._on_close = on_close
        self._auth_key: bytes | None = None
        try:
            with self._talking("reading the module") as dev, dev.session():
                self._contents: ModuleContents = read_module(dev)
                if not self._contents.protected:
                    self._self_test(dev)
        except BaseException:
            self.close()
            raise
        self.identity = self._contents.identity

    def _where(self) -> str:
        return f"{self.backend} module at {self.location}"

    @contextmanager
    def _talking(self, what: str) -> Iterator[Device]:
        """Yield the device; map transport failures to SignerUnavailableError."""
        device = self._device
        if device is None:
            raise SignerUnavailableError(f"{self._where()} is closed")
        try:
            yield device
        except _TRANSPORT_ERRORS as exc:
            raise SignerUnavailableError(
                f"{self._where()} stopped answering while {what}: {exc}"
            ) from exc
        except ChipStatusError as exc:
            raise SignerError(f"{self._where()}: chip refused {what}: {exc}") from exc

    @property
    def password_protected(self) -> bool:
        return self._contents.protected

    @property
    def unlocked(self) -> bool:
        return not self._contents.protected or self._auth_key is not None

    def _authorize(self, device: Device, key: bytes) -> bool:
        return pw.authorize(
            device, auth_slot=self._contents.auth_slot, key=key, serial=self._contents.serial
        )

    def _self_test(self, device: Device) -> None:
        """Sign a fixed digest and check it with the certificate's key (a module whose
        certificate is not for its key would make device certificates nobody can verify)."""
        signature = bytes(device.sign(SIGNER_KEY_SLOT, SELF_TEST_DIGEST))
        public = certificate_public_key(self._contents.identity.certificate)
        if not verify_digest(public, SELF_TEST_DIGEST, signature):
            raise SignerFormatError(
                f"{self._where()}: the key in slot {SIGNER_KEY_SLOT} does not match the signer "
                "certificate"
            ) from None

    def unlock(self, password: str) -> None:
        if not self._contents.protected:
            return
        info = self._contents.info
        key = pw.derive_password_key(password, info.salt, info.iterations)
        with self._talking("checking the password") as device, device.session():
            accepted = self._authorize(device, key)
            if accepted:
                self._self_test(device)
        if not accepted:
            raise WrongPasswordError(f"{self._where()}: the module refused the password")
        self._auth_key = key

    def sign_digest(self, digest: bytes) -> bytes:
        digest = check_digest(digest)
        key = self._auth_key
        if self._contents.protected and key is None:
            raise SignerLockedError(f"{self._where()} is locked: give its password")
        with self._talking("signing") as device, device.session():
            if key is not None and not self._authorize(device, key):
                self._auth_key = None
                raise SignerLockedError(
                    f"{self._where()} no longer accepts its password: unlock it again"
                )
            signature = bytes(device.sign(SIGNER_KEY_SLOT, digest))
        if len(signature) != SIGNATURE_SIZE:
            raise SignerError(
                f"{self._where()}: Sign returned {len(signature)} bytes, expected {SIGNATURE_SIZE}"
            )
        return signature

    def close(self) -> None:
        self._auth_key = None
        self._device = None
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            try:
                on_close()
            except _TRANSPORT_ERRORS as exc:
                log.debug("%s: closing the transport: %r", self._where(), exc)
