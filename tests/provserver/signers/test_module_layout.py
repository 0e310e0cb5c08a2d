"""Signer module layout (sans-IO parts), password derivation, and create_module's checks."""

from __future__ import annotations

import datetime as dt
import hashlib
import struct

import pytest
from signer_testkit import make_root

from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.hal.emulator import EmulatorHal
from provserver.signers import SignerError, SignerFormatError
from provserver.signers import module_layout as ml
from provserver.signers import password as pw

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
    cert = bytes(range(256)) + bytes(100)
    raw = ml.encode_cert_slot(cert)
    assert len(raw) == 416 and raw[:2] == struct.pack(">H", len(cert))
    assert ml.decode_cert_slot(raw) == cert
    with pytest.raises(SignerError, match="at most 414"):
        ml.encode_cert_slot(bytes(415))
    with pytest.raises(SignerFormatError, match="certificate length 0"):
        ml.decode_cert_slot(bytes(416))

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
    assert raw[:6] == b"SGNR\x01\x01" and len(raw) == 64
    assert ml.ModuleInfo.decode(raw) == info
    with pytest.raises(SignerFormatError, match="not a signer module"):
        ml.ModuleInfo.decode(bytes(64))
    with pytest.raises(SignerFormatError, match="layout version 2"):
        ml.ModuleInfo.decode(b"SGNR\x02" + raw[5:])


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
    assert pw.nonce_random_tempkey(rand_out, num_in) == hashlib.sha256(
        rand_out + num_in + b"\x16\x00\x00"
    ).digest()


def test_validity_dates() -> None:
    start, end = ml.signer_validity(dt.datetime(2026, 11, 21, 5, 13, 24), 20)
    assert start == dt.datetime(2026, 11, 21, 5, tzinfo=dt.timezone.utc)
    assert end == dt.datetime(2046, 11, 21, 5, tzinfo=dt.timezone.utc)
    _, forever = ml.signer_validity(start, 0)
    assert forever.year == 9999
    with pytest.raises(SignerError, match=r"0\.\.31"):
        ml.signer_validity(start, 32)


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
    from signer_testkit import issue_signer_cert

    root = make_root()
    other = ec.generate_private_key(ec.SECP256R1())

    def bad_issuer(req: ml.SignerCertRequest) -> bytes:
        cert = issue_signer_cert(root, other.public_key())
        return cert.public_bytes(serialization.Encoding.DER)

    with Device(EmulatorHal(Atecc508a())) as device, pytest.raises(
        SignerError, match="another public key"
    ):
        ml.create_module(device, name="n", issuer=bad_issuer)
