"""Signer module layout (sans-IO parts), password derivation, and create_module's checks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.hal.emulator import EmulatorHal
from atcaprov.packet import Opcode
from provserver.signers import (
    SignerConfigError,
    SignerError,
    SignerFormatError,
    SignerIdentityError,
    open_backend,
)
from provserver.signers import module_layout as ml
from provserver.signers import password as pw
from provserver.signers.sim import create_sim_module
from tests.support.certs import TestRoot, der, issue_signer_cert, make_root, self_signed
from tests.support.keys import cert_public_key, verify_rs

BASE_CONFIG = bytes(Atecc508a(bytes.fromhex("01231E6CD82CA571EE")).config_zone)


def _words(config: bytes, offset: int) -> list[int]:
    return [struct.unpack_from("<H", config, offset + 2 * i)[0] for i in range(16)]


def test_config_words() -> None:
    plain = ml.signer_module_config(BASE_CONFIG, password=False)
    locked = ml.signer_module_config(BASE_CONFIG, password=True)
    assert len(plain) == 128 and plain[:18] == BASE_CONFIG[:18]
    assert plain[84:88] == BASE_CONFIG[84:88]  # UpdateExtra/Lock bytes untouched
    slot_cfg = _words(plain, 20)
    key_cfg = _words(plain, 96)
    assert slot_cfg[0] == 0x2081 and key_cfg[0] == 0x0013
    assert slot_cfg[1] == 0x8080 and key_cfg[1] == 0x001C
    assert all(w == 0x8000 for w in slot_cfg[2:]) and all(w == 0x001C for w in key_cfg[2:])
    assert _words(locked, 96)[0] == 0x0193  # ReqAuth, AuthKey = slot 1
    assert plain[18] == 0xAA and plain[88:90] == b"\xff\xff"
    with pytest.raises(ValueError):
        ml.signer_module_config(bytes(10), password=False)


def test_check_module_config() -> None:
    config = bytearray(ml.signer_module_config(BASE_CONFIG, password=True))
    with pytest.raises(SignerFormatError, match="both must be 0x00"):
        ml.check_module_config(bytes(config))
    config[86] = config[87] = 0x00
    assert ml.check_module_config(bytes(config)) == (True, 1)
    struct.pack_into("<H", config, 96, 0x001C)  # slot 0 not a private key
    with pytest.raises(SignerFormatError, match="not a P-256 private key"):
        ml.check_module_config(bytes(config))


def test_slot_encodings_round_trip() -> None:
    short = bytes(range(256)) + bytes(100)
    images = ml.encode_cert_slots(short)
    assert list(images) == [8, 11, 12, 13, 14, 15]  # write order
    assert len(images[8]) == 416 and images[8][:2] == struct.pack(">H", len(short))
    assert images[8][2 : 2 + len(short)] == short and not any(images[8][2 + len(short) :])
    assert all(len(images[s]) == 72 and not any(images[s]) for s in (11, 12, 13, 14, 15))
    assert ml.decode_cert_slots(images) == short
    assert ml.decode_cert_slots(images, 1) == short  # a layout-1 module reads the same way
    assert ml.decode_cert_slots({8: images[8][: 2 + len(short)]}) == short  # slot 8 suffices

    for size in (415, 414 + 72, 600, 774):  # spills into slots 11.., up to the maximum
        cert = bytes((i * 7 + 3) % 251 for i in range(size))
        images = ml.encode_cert_slots(cert)
        assert images[8][2:] == cert[:414]
        assert images[11][: min(72, size - 414)] == cert[414:486]
        assert ml.decode_cert_slots(images) == cert
        assert b"".join(images[s] for s in (11, 12, 13, 14, 15))[: size - 414] == cert[414:]
        with pytest.raises(SignerFormatError, match=r"expected 1\.\.414 \(layout 1\)"):
            ml.decode_cert_slots(images, 1)  # layout 1 never held more than slot 8
    assert ml.cert_extents(600) == ((8, 2, 414), (11, 0, 72), (12, 0, 72), (13, 0, 42))
    assert ml.CERT_MAX == 774 and ml.CERT_MAX_V1 == 414

    with pytest.raises(SignerError, match="at most 774"):
        ml.encode_cert_slots(bytes(775))
    with pytest.raises(SignerFormatError, match="certificate length 0"):
        ml.decode_cert_slots({8: bytes(416)})
    with pytest.raises(SignerFormatError, match="certificate length 775"):
        ml.decode_cert_slots({8: struct.pack(">H", 775) + bytes(414)})
    images = ml.encode_cert_slots(bytes(range(200)) * 3)
    with pytest.raises(SignerFormatError, match=r"slot 12: 10 bytes read, need 72"):
        ml.decode_cert_slots({**images, 12: images[12][:10]})
    with pytest.raises(SignerFormatError, match=r"slot 13: 0 bytes read, need 42"):
        ml.decode_cert_slots({s: images[s] for s in (8, 11, 12)})

    name = "Signeur Élysée ✓"
    raw = ml.encode_name_slot(name)
    assert len(raw) == 64 and raw[0] == len(name.encode())
    assert ml.decode_name_slot(raw) == name
    with pytest.raises(SignerError, match="UTF-8 bytes"):
        ml.encode_name_slot("x" * 64)
    with pytest.raises(SignerFormatError, match="not UTF-8"):
        ml.decode_name_slot(b"\x02\xff\xfe" + bytes(61))

    info = ml.ModuleInfo(pw.KDF_PBKDF2_SHA256, 12345, bytes(range(32)))
    raw = info.encode()
    assert raw[:6] == b"SGNR\x02\x01" and len(raw) == 64 and info.version == 2
    assert ml.ModuleInfo.decode(raw) == info
    old = ml.ModuleInfo.decode(b"SGNR\x01" + raw[5:])  # a layout-1 module
    assert old.version == 1 and (old.scheme, old.iterations, old.salt) == (1, 12345, info.salt)
    assert old.encode()[:6] == b"SGNR\x01\x01"
    with pytest.raises(SignerFormatError, match="not a signer module"):
        ml.ModuleInfo.decode(bytes(64))
    with pytest.raises(SignerFormatError, match="layout version 3, this code reads 1, 2"):
        ml.ModuleInfo.decode(b"SGNR\x03" + raw[5:])
    with pytest.raises(ValueError, match="bad module info"):
        ml.ModuleInfo(0, version=3).encode()


def test_password_key_derivation() -> None:
    salt = bytes(range(32))
    key = pw.derive_password_key("pässword", salt, 1000)
    expected = hashlib.pbkdf2_hmac("sha256", "pässword".encode(), salt, 1000, 32)
    assert key == expected
    decomposed = "pa\u0308ssword"  # same text, combining diaeresis
    assert pw.derive_password_key(decomposed, salt, 1000) == key
    assert pw.derive_password_key("password", salt, 1000) != key
    with pytest.raises(ValueError):
        pw.derive_password_key("x", bytes(16), 1000)


def test_checkmac_message_layout() -> None:
    key, chal = bytes([1]) * 32, bytes([2]) * 32
    other = bytes(range(0x10, 0x1D))
    sn = bytes.fromhex("01231E6CD82CA571EE")
    msg = (
        key + chal + other[0:4] + bytes(8) + other[4:7] + b"\xee" + other[7:11] + b"\x01\x23"
        + other[11:13]
    )  # fmt: skip
    assert pw.checkmac_response(key, chal, other, sn) == hashlib.sha256(msg).digest()
    rand_out, num_in = bytes([3]) * 32, bytes([4]) * 20
    assert (
        pw.nonce_random_tempkey(rand_out, num_in)
        == hashlib.sha256(rand_out + num_in + b"\x16\x00\x00").digest()
    )


def test_validity_dates() -> None:
    start, end = ml.signer_validity(dt.datetime(2026, 11, 21, 5, 13, 24), 20)
    assert start == dt.datetime(2026, 11, 21, 5, tzinfo=dt.timezone.utc)
    assert end == dt.datetime(2046, 11, 21, 5, tzinfo=dt.timezone.utc)
    _, forever = ml.signer_validity(start, 0)
    assert forever.year == 9999
    assert ml.signer_validity(start, 40)[1] == dt.datetime(2066, 11, 21, 5, tzinfo=dt.timezone.utc)
    with pytest.raises(SignerError, match=r"0\.\.127"):
        ml.signer_validity(start, 128)


def test_create_module_refusals() -> None:
    root = make_root()
    chip = Atecc508a()
    with Device(EmulatorHal(chip)) as device:
        with pytest.raises(SignerError, match="UTF-8 bytes"):
            ml.create_module(device, name="n" * 100, issuer=(root.key, root.cert))
        assert not chip.config_locked  # refused before touching the chip
        with pytest.raises(SignerError, match="empty password"):
            ml.create_module(device, name="n", issuer=(root.key, root.cert), password="")
        ml.create_module(device, name="n", issuer=(root.key, root.cert))
        with pytest.raises(SignerError, match="blank chip"):
            ml.create_module(device, name="n", issuer=(root.key, root.cert))


def test_issuer_for_another_key_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    root = make_root()
    other = ec.generate_private_key(ec.SECP256R1())

    def bad_issuer(req: ml.SignerCertRequest) -> bytes:
        cert = issue_signer_cert(root, other.public_key())
        return cert.public_bytes(serialization.Encoding.DER)

    with (
        Device(EmulatorHal(Atecc508a())) as device,
        pytest.raises(SignerError, match="another public key"),
    ):
        ml.create_module(device, name="n", issuer=bad_issuer)


# --------------------------------------------------------------------------------------------
# Certificates longer than slot 8 (layout 2), the size check before the lock, layout 1 modules
# --------------------------------------------------------------------------------------------
DATA = Path(__file__).parent / "data"
NOW = dt.datetime(2026, 11, 21, 5, tzinfo=dt.timezone.utc)


def _root(*attributes: tuple[x509.ObjectIdentifier, str], key: Any = None) -> TestRoot:
    """A self-signed root CA with these name attributes (P-256 unless ``key`` is given)."""
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])
    cert = self_signed(
        name, key, serial=1, not_before=NOW, not_after=NOW.replace(year=2060), ca=True
    )
    return TestRoot(key, cert)


def _example_root() -> TestRoot:
    return _root(
        (NameOID.ORGANIZATION_NAME, "Example Inc"), (NameOID.COMMON_NAME, "Example Root CA")
    )


def test_worst_case_cert_size() -> None:
    p384 = _root((NameOID.COMMON_NAME, "R384"), key=ec.generate_private_key(ec.SECP384R1()))
    for root, longest in ((make_root(), 72), (p384, 104)):
        subject = ec.generate_private_key(ec.SECP256R1()).public_key()
        cert = issue_signer_cert(root, subject)
        # SEQUENCE { INTEGER r, INTEGER s }, each with a leading zero: 2 + 2 * (2 + n + 1)
        assert ml.worst_case_cert_size(der(cert)) == len(der(cert)) - len(cert.signature) + longest
    ed_root = _root((NameOID.COMMON_NAME, "Ed"), key=ed25519.Ed25519PrivateKey.generate())
    ed_cert = der(ed_root.cert)  # fixed-size signature: the size is the size
    assert ml.worst_case_cert_size(ed_cert) == len(ed_cert)
    with pytest.raises(SignerIdentityError, match=r"not a DER X\.509 certificate"):
        ml.worst_case_cert_size(b"\x30\x03\x02\x01\x00")


def test_long_name_certificate_fits_and_reads_back(tmp_path: Path) -> None:
    """Ordinary names (an O= and a CN on both sides, dates past 2049) make a signer certificate
    longer than slot 8; it now continues into slots 11-15 and every back-end path reads it."""
    root = _example_root()
    path = tmp_path / "long.json"
    identity = create_sim_module(
        path,
        name="Example ATECC508A Signer",
        organization="Example Inc",
        issuer=(root.key, root.cert),
        not_before=NOW,
        validity_years=31,
        password="pin",
        kdf_iterations=10,
    )
    size = len(identity.signer_cert_der)
    assert ml.CERT_MAX_V1 < size <= ml.CERT_MAX, size
    assert identity.certificate.not_valid_after_utc.year == 2057
    assert identity.certificate.issuer == root.cert.subject

    chip = Atecc508a.load(path)
    with Device(EmulatorHal(chip)) as device:
        contents = ml.read_module(device)
        assert contents.identity == identity and contents.layout_version == 2
        assert contents.protected and contents.info.iterations == 10
        slot8 = device.read_bytes_zone(2, 8, 0, 416)
        slot11 = device.read_bytes_zone(2, 11, 0, 72)
        slot12 = device.read_bytes_zone(2, 12, 0, 72)
    assert slot8[:2] == struct.pack(">H", size) and slot8[2:] == identity.signer_cert_der[:414]
    assert slot11[: size - 414] == identity.signer_cert_der[414:] and not any(slot11[size - 414 :])
    assert not any(slot12)  # written as zeros past the end of the certificate

    backend = open_backend("sim", modules=tmp_path, transport="kit-hid", timeout=2.0)
    try:
        with backend.open(str(path)) as module:
            assert module.identity == identity
            module.unlock("pin")
            digest = hashlib.sha256(b"device tbs").digest()
            signature = module.sign_digest(digest)
            assert verify_rs(cert_public_key(identity.signer_cert_der), digest, signature)
    finally:
        backend.close()


def test_certificate_near_the_maximum(tmp_path: Path) -> None:
    """A certificate that needs all of slots 11-15 (a long organization) round-trips."""
    root = _example_root()
    organization = "Example Organisation for Secure Provisioning " * 6  # 270 bytes
    with Device(EmulatorHal(Atecc508a())) as device:
        identity = ml.create_module(
            device,
            name="Signer",
            organization=organization,
            issuer=(root.key, root.cert),
            not_before=NOW,
        )
        assert 414 + 4 * 72 < len(identity.signer_cert_der) <= ml.CERT_MAX  # reaches slot 15
        assert ml.read_module(device).identity == identity


def test_too_big_certificate_is_refused_before_the_config_lock() -> None:
    root = _example_root()
    calls: list[ml.SignerCertRequest] = []
    issue = ml.root_ca_issuer(root.key, root.cert)

    def counting_issuer(req: ml.SignerCertRequest) -> bytes:
        calls.append(req)
        return issue(req)

    chip = Atecc508a()
    blank_config = chip.config_zone
    with Device(EmulatorHal(chip)) as device:
        with pytest.raises(
            SignerConfigError, match=r"up to (\d+) bytes .*at most 774 bytes of certificate"
        ) as caught:
            ml.create_module(
                device,
                name="Example ATECC508A Signer",
                organization="Example Organisation for Secure Provisioning " * 8,
                issuer=counting_issuer,
            )
        sent = dict(device.opcode_counts)
    worst = int(re.search(r"up to (\d+) bytes", str(caught.value)).group(1))  # type: ignore[union-attr]
    assert worst > ml.CERT_MAX
    assert len(calls) == 1  # the trial certificate only
    assert not chip.config_locked and not chip.data_locked
    assert chip.config_zone == blank_config
    assert not {Opcode.WRITE, Opcode.LOCK, Opcode.GENKEY} & set(sent), sent
    # The same chip is still blank: a module that fits can be made on it.
    with Device(EmulatorHal(chip)) as device:
        ml.create_module(device, name="Example ATECC508A Signer", issuer=(root.key, root.cert))
    assert chip.data_locked


def test_issuer_growing_after_its_trial_is_caught() -> None:
    """An issuer whose real certificate outgrows its trial one is still refused (after the
    config lock: the trial is what keeps well-behaved issuers from getting there)."""
    root = _example_root()
    issue = ml.root_ca_issuer(root.key, root.cert)
    calls = 0

    def growing_issuer(req: ml.SignerCertRequest) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            return issue(req)
        big = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "O" * 500)])
        return issue(dataclasses.replace(req, subject=big))

    with (
        Device(EmulatorHal(Atecc508a())) as device,
        pytest.raises(SignerError, match=r"returned a \d+-byte signer certificate \(its trial one"),
    ):
        ml.create_module(device, name="n", issuer=growing_issuer)


def test_layout_1_module_file_still_reads(tmp_path: Path) -> None:
    """A module saved by the layout-1 code (data/README.md says how) opens and signs."""
    shutil.copy(DATA / "signer_module_layout_v1.json", tmp_path / "old.json")
    cert_der = x509.load_pem_x509_certificate(
        (DATA / "signer_module_layout_v1.crt.pem").read_bytes()
    ).public_bytes(serialization.Encoding.DER)
    chip = Atecc508a.load(tmp_path / "old.json")
    with Device(EmulatorHal(chip)) as device:
        contents = ml.read_module(device)
    assert contents.layout_version == 1 and contents.protected
    assert contents.identity.signer_cert_der == cert_der
    assert contents.identity.name == "Old Layout Signer"
    assert contents.identity.module_sn == "0123AABBCCDDEEFFEE"

    backend = open_backend("sim", modules=tmp_path, transport="kit-hid", timeout=2.0)
    try:
        with backend.open(str(tmp_path / "old.json")) as module:
            assert module.identity == contents.identity and module.needs_password
            module.unlock("old-password")
            digest = hashlib.sha256(b"old module").digest()
            assert verify_rs(cert_public_key(cert_der), digest, module.sign_digest(digest))
    finally:
        backend.close()
