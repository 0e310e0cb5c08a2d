"""The pkcs11 back-end against a SoftHSM2 token set up by the test in a temporary folder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from provserver.signers import (
    SignerLockedError,
    SignerUnavailableError,
    WrongPasswordError,
    open_backend,
)
from provserver.signers.pkcs11 import Pkcs11Backend
from tests.support.certs import TestRoot, der, issue_signer_cert, make_root
from tests.support.keys import cert_public_key, verify_rs
from tests.support.softhsm import (
    SOFTHSM_LIB,
    init_token,
    needs_softhsm,
    reinitialize_softhsm,
    write_softhsm_conf,
)

pytestmark = needs_softhsm

PIN = "4711"
TOKENS = ("signer-a", "signer-b")


def _provision_token(lib_path: str, label: str, root: TestRoot) -> bytes:
    """EC P-256 key made on the token + a signer certificate object; returns the cert DER."""
    import pkcs11
    from pkcs11 import Attribute, CertificateType, KeyType, ObjectClass
    from pkcs11.util.ec import encode_named_curve_parameters

    token = pkcs11.lib(lib_path).get_token(token_label=label)
    with token.open(rw=True, user_pin=PIN) as session:
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        public, _private = params.generate_keypair(store=True, label="signer")
        point = bytes(public[Attribute.EC_POINT])
        assert point[0] == 0x04 and point[1] == 65  # DER OCTET STRING around 04||X||Y
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point[2:])
        cert = issue_signer_cert(root, key, cn=f"{label} Signer 7E57")
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: False,
                Attribute.LABEL: "signer",
                Attribute.VALUE: der(cert),
                Attribute.SUBJECT: cert.subject.public_bytes(),
            }
        )
    return der(cert)


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, bytes]]:
    """Two fresh tokens in a private SoftHSM2 store; yields {label: signer cert DER}."""
    assert SOFTHSM_LIB is not None
    conf = write_softhsm_conf(tmp_path_factory.mktemp("softhsm"))
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        for label in TOKENS:
            init_token(label, PIN, "99999")
        reinitialize_softhsm()  # re-read SOFTHSM2_CONF if loaded before
        root = make_root()
        yield {label: _provision_token(SOFTHSM_LIB, label, root) for label in TOKENS}
    finally:
        if saved is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = saved


def test_scan_open_with_pin_env_sign_verify(
    softhsm: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SIGNER_PIN", PIN)
    backend = open_backend("pkcs11", library=SOFTHSM_LIB, pin_env="TEST_SIGNER_PIN")
    found = backend.scan()
    assert len(found) == 2
    names = set()
    for location in found:
        with backend.open(location) as module:
            assert not module.needs_password
            assert module.identity.module_sn == location
            names.add(module.identity.name)
            cert_der = softhsm[module.identity.name]
            assert module.identity.signer_cert_der == cert_der
            assert module.identity.signer_id == bytes.fromhex("7E57")
            digest = hashlib.sha256(location.encode()).digest()
            signature = module.sign_digest(digest)
            assert verify_rs(cert_public_key(cert_der), digest, signature)
            assert not verify_rs(cert_public_key(cert_der), bytes(32), signature)
    assert names == set(TOKENS)


def test_pin_prompt_wrong_then_right(
    softhsm: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATCAPROV_PKCS11_PIN", raising=False)
    backend = Pkcs11Backend(library=SOFTHSM_LIB, token_label="signer-b", name="HSM B")
    (location,) = backend.scan()
    module = backend.open(location)
    assert module.identity.name == "HSM B"
    assert module.needs_password
    with pytest.raises(SignerLockedError):
        module.sign_digest(bytes(32))
    with pytest.raises(WrongPasswordError):
        module.unlock("0000")
    assert module.needs_password
    module.unlock(PIN)
    assert not module.needs_password
    digest = hashlib.sha256(b"device tbs").digest()
    assert verify_rs(cert_public_key(softhsm["signer-b"]), digest, module.sign_digest(digest))
    module.close()
    with pytest.raises(SignerLockedError):
        module.sign_digest(digest)


def test_certificate_from_file_and_unknown_token(
    softhsm: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATCAPROV_PKCS11_PIN", PIN)
    cert_file = tmp_path / "signer.der"
    cert_file.write_bytes(softhsm["signer-a"])
    backend = Pkcs11Backend(library=SOFTHSM_LIB, token_label="signer-a", cert=cert_file)
    (location,) = backend.scan()
    with backend.open(location) as module:
        assert module.identity.signer_cert_der == softhsm["signer-a"]
        digest = hashlib.sha256(b"abc").digest()
        assert verify_rs(cert_public_key(softhsm["signer-a"]), digest, module.sign_digest(digest))
    with pytest.raises(SignerUnavailableError, match="no token with serial"):
        backend.open("not-a-serial")
