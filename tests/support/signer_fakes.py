"""Fake signer modules for the server tests: an in-memory key behind the SignerModule API."""

from __future__ import annotations

import threading
import time

from cryptography.hazmat.primitives.asymmetric import ec

from provserver.signers.base import (
    SignerBackend,
    SignerIdentity,
    SignerLockedError,
    SignerModule,
    SignerUnavailableError,
    WrongPasswordError,
    check_digest,
)
from tests.support.keys import sign_digest


class FakeModule(SignerModule):
    """A signer module with an in-memory key; counts concurrency; can fail on demand."""

    def __init__(
        self,
        location: str,
        key: ec.EllipticCurvePrivateKey,
        cert_der: bytes,
        *,
        sn: str,
        name: str = "Example ATECC508A Signer",
        password: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self.backend = "fake"
        self.location = location
        self.identity = SignerIdentity(sn, name, cert_der)
        self._key = key
        self._password = password
        self._unlocked = password is None
        self.delay = delay
        self.fail_next = False
        self.active = 0
        self.max_active = 0
        self.signed = 0
        self.closed = False
        self._count_lock = threading.Lock()

    @property
    def password_protected(self) -> bool:
        return self._password is not None

    @property
    def unlocked(self) -> bool:
        return self._unlocked

    def unlock(self, password: str) -> None:
        if password != self._password:
            raise WrongPasswordError("wrong password")
        self._unlocked = True

    def sign_digest(self, digest: bytes) -> bytes:
        digest = check_digest(digest)
        if not self._unlocked:
            raise SignerLockedError("locked")
        with self._count_lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.fail_next or self.closed:
                self.fail_next = False
                raise SignerUnavailableError(f"{self.location} stopped answering")
            signature = sign_digest(self._key, digest)
            self.signed += 1
            return signature
        finally:
            with self._count_lock:
                self.active -= 1

    def close(self) -> None:
        self.closed = True


class FakeBackend(SignerBackend):
    """Modules are whatever is in ``present`` (location -> factory) at scan time."""

    name = "fake"

    def __init__(self) -> None:
        self.present: dict[str, FakeModule] = {}
        self.opened: list[str] = []

    def scan(self) -> set[str]:
        return set(self.present)

    def open(self, location: str) -> SignerModule:
        self.opened.append(location)
        module = self.present[location]
        module.closed = False
        return module
