"""The signer interface: registry by name, SignerIdentity checks and derived values."""

from __future__ import annotations

import hashlib
from typing import ClassVar, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from provserver.signers import (
    SignerBackend,
    SignerError,
    SignerIdentity,
    SignerIdentityError,
    SignerModule,
    UnknownBackendError,
    available_backends,
    backend_class,
    open_backend,
    register_backend,
)
from provserver.signers.base import check_digest
from tests.support.certs import der, issue_signer_cert, make_root


def test_builtin_backends_by_name() -> None:
    assert {"pem", "pkcs11", "sim", "hid"} <= set(available_backends())
    for name in ("pem", "pkcs11", "sim", "hid"):
        assert backend_class(name).name == name
    with pytest.raises(UnknownBackendError, match=r"unknown signer back-end 'tpm'.*pem"):
        open_backend("tpm")


def test_register_custom_backend() -> None:
    @register_backend("test-null")
    class NullBackend(SignerBackend):
        warning: ClassVar[str | None] = "null back-end"

        def __init__(self, *, count: int = 0) -> None:
            self.count = count

        def scan(self) -> set[str]:
            return {str(i) for i in range(self.count)}

        def open(self, location: str) -> SignerModule:
            raise SignerError(f"cannot open {location}")

    backend = open_backend("test-null", count=2)
    assert isinstance(backend, NullBackend)
    assert backend.scan() == {"0", "1"}
    assert backend.warning == "null back-end"
    assert "test-null" in available_backends()


def test_identity_values() -> None:
    root = make_root()
    key = ec.generate_private_key(ec.SECP256R1())
    cert_der = der(issue_signer_cert(root, key.public_key(), cn="Example Signer C48B"))
    ident = SignerIdentity("01231E6CD82CA571EE", "Example Signer", cert_der)
    numbers = key.public_key().public_numbers()
    xy = numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
    assert ident.public_key == xy
    assert ident.key_id == hashlib.sha1(b"\x04" + xy).digest()
    assert ident.signer_id == b"\xc4\x8b"
    # The SKI extension is not required; key_id is computed, so check it against the standard
    # method (RFC 5280 method 1 = SHA-1 of the subjectPublicKey bits).
    assert ident.key_id == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest


def test_identity_signer_id_fallback_and_errors() -> None:
    root = make_root()
    key = ec.generate_private_key(ec.SECP256R1())
    cert_der = der(issue_signer_cert(root, key.public_key(), cn="Signer without id"))
    ident = SignerIdentity("X", "n", cert_der)
    assert ident.signer_id == ident.key_id[:2]
    with pytest.raises(SignerIdentityError, match=r"not a DER X\.509 certificate"):
        SignerIdentity("X", "n", b"\x30\x03\x02\x01\x00")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    rsa_cert = issue_signer_cert(root, rsa_key.public_key())
    with pytest.raises(SignerIdentityError, match="expected an EC P-256 key"):
        SignerIdentity("X", "n", der(rsa_cert))
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(SignerIdentityError, match="P-256"):
        SignerIdentity("X", "n", der(issue_signer_cert(root, p384.public_key())))


def test_check_digest() -> None:
    assert check_digest(cast(bytes, bytearray(32))) == bytes(32)  # a bytearray is taken too
    with pytest.raises(SignerError, match="got 33 bytes"):
        check_digest(bytes(33))
    with pytest.raises(SignerError, match="got 'abc'"):
        check_digest("abc")  # type: ignore[arg-type]


def test_backend_with_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from provserver.signers import SignerConfigError, base

    monkeypatch.setitem(
        base.SIGNER_BACKENDS._builtin, "needs-missing", "provserver_no_such_module_xyz"
    )
    monkeypatch.delitem(sys.modules, "provserver_no_such_module_xyz", raising=False)
    with pytest.raises(SignerConfigError, match=r"cannot be loaded.*provserver_no_such_module_xyz"):
        open_backend("needs-missing")
