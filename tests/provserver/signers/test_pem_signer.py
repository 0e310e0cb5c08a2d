"""The pem back-end: scan a folder, open, sign and verify, encrypted keys, errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provserver.signers import (
    SignerConfigError,
    SignerError,
    SignerLockedError,
    WrongPasswordError,
    open_backend,
)
from provserver.signers.pem import PEM_WARNING, PemBackend
from tests.support.certs import TestRoot, der, issue_signer_cert, key_pem, pem
from tests.support.keys import cert_public_key, new_key, verify_rs


def write_signer(
    folder: Path, stem: str, root: TestRoot, *, password: bytes | None = None, bundle: bool = True
) -> ec.EllipticCurvePrivateKey:
    key = new_key()
    cert = issue_signer_cert(root, key.public_key(), cn=f"{stem} Signer 0A1B")
    if bundle:
        (folder / f"{stem}.pem").write_bytes(key_pem(key, password) + pem(cert))
    else:
        (folder / f"{stem}.key").write_bytes(key_pem(key, password))
        (folder / f"{stem}.crt").write_bytes(der(cert))
    return key


def test_folder_scan_open_sign_verify(tmp_path: Path, root: TestRoot) -> None:
    write_signer(tmp_path, "alpha", root)
    write_signer(tmp_path, "beta", root, bundle=False)
    (tmp_path / "notes.pem").write_text("no key here\n")
    backend = open_backend("pem", path=tmp_path)
    assert backend.warning == PEM_WARNING
    found = backend.scan()
    assert found == {str(tmp_path / "alpha.pem"), str(tmp_path / "beta.key")}
    for location in found:
        with backend.open(location) as module:
            assert not module.needs_password
            ident = module.identity
            assert ident.signer_id == bytes.fromhex("0A1B")
            assert ident.module_sn == ident.key_id.hex().upper()
            assert ident.name.endswith("Signer 0A1B")
            digest = hashlib.sha256(location.encode()).digest()
            signature = module.sign_digest(digest)
            key = cert_public_key(ident.signer_cert_der)
            assert verify_rs(key, digest, signature)
            assert not verify_rs(key, hashlib.sha256(b"other").digest(), signature)
    (tmp_path / "beta.key").unlink()
    assert backend.scan() == {str(tmp_path / "alpha.pem")}


def test_single_file_with_name(tmp_path: Path, root: TestRoot) -> None:
    write_signer(tmp_path, "solo", root, bundle=False)
    backend = PemBackend(tmp_path / "solo.key", cert=tmp_path / "solo.crt", name="Dev Signer")
    assert backend.scan() == {str(tmp_path / "solo.key")}
    module = backend.open(str(tmp_path / "solo.key"))
    assert module.identity.name == "Dev Signer"


def test_encrypted_key_needs_password(tmp_path: Path, root: TestRoot) -> None:
    write_signer(tmp_path, "locked", root, password=b"s3cret")
    module = PemBackend(tmp_path).open(str(tmp_path / "locked.pem"))
    assert module.password_protected and module.needs_password
    with pytest.raises(SignerLockedError):
        module.sign_digest(bytes(32))
    with pytest.raises(WrongPasswordError):
        module.unlock("wrong")
    assert module.needs_password
    module.unlock("s3cret")
    assert not module.needs_password
    digest = hashlib.sha256(b"x").digest()
    key = cert_public_key(module.identity.signer_cert_der)
    assert verify_rs(key, digest, module.sign_digest(digest))


def test_key_not_matching_certificate(tmp_path: Path, root: TestRoot) -> None:
    write_signer(tmp_path, "a", root, bundle=False)
    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "a.crt").write_bytes(der(issue_signer_cert(root, other.public_key())))
    with pytest.raises(SignerConfigError, match="does not match"):
        PemBackend(tmp_path).open(str(tmp_path / "a.key"))


def test_bad_digest_and_missing_cert(tmp_path: Path, root: TestRoot) -> None:
    write_signer(tmp_path, "a", root)
    module = PemBackend(tmp_path).open(str(tmp_path / "a.pem"))
    with pytest.raises(SignerError, match="32-byte digest, got 31 bytes"):
        module.sign_digest(bytes(31))
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "nocert.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SignerConfigError, match="no signer certificate"):
        PemBackend(tmp_path).open(str(tmp_path / "nocert.pem"))
    with pytest.raises(SignerConfigError, match="does not exist"):
        PemBackend(tmp_path / "missing")
