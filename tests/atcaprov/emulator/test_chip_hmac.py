"""HMAC (opcode 0x11) and the SHA command's HMAC mode (start 0x04, update 0x01, end 0x05).

Expected values are computed here with hashlib/hmac from the published message layouts
(tests/support/host_digests.py), never taken from the emulator. The SHA-HMAC vector is also
checked against the answer Microchip's own ``sha_hmac`` device test expects.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tests.support import host_digests as host
from tests.support.chip import ChipDriver

INFO, NONCE, HMAC, SHA, CHECKMAC = 0x30, 0x16, 0x11, 0x47, 0x28
OK, PARSE, EXEC = 0x00, 0x03, 0x0F
SHA_START, SHA_UPDATE, SHA_END, HMAC_START, HMAC_END = 0x00, 0x01, 0x02, 0x04, 0x05

# Microchip's test key for slot 4 and its sha_hmac vector (65-byte message, expected HMAC).
SLOT4_KEY = bytes.fromhex("3780e63d4968ade5d822c013fcc323845d1b569fe705b60006feec145a0db1e3")
SHA_HMAC_MESSAGE = bytes.fromhex(
    "6fb3ec66f9eb070a719bebbe708b93a65b201b78e2d26d8cccdf1c33f741904a"
    "9ade640fce000c334d04bb30795683dca09dbf3e7e32aea103d760e857a6d6211c"
)
SHA_HMAC_EXPECTED = bytes.fromhex(
    "297f22b8d251b063a7c08dcf4dba0d1fb35d32a3baab15aceaf4391c4adb3277"
)
KEY10 = bytes(range(100, 132))


@pytest.fixture
def keyed(blank: ChipDriver) -> ChipDriver:
    """Slot 4: SLOT4_KEY (SlotConfig 0x0F8F, KeyConfig 0x003C); slot 5: NoMac secret; slot 10:
    a clear data key. Config and data locked."""
    d = blank
    d.set_slot_config(5, 0x8F9F)  # IsSecret + NoMac
    d.lock_config()
    d.write_slot(4, SLOT4_KEY + bytes(4))
    d.write_slot(5, bytes(range(32)) + bytes(4))
    d.write_slot(10, KEY10 + bytes(40))
    d.lock_data()
    return d


def random_tempkey(d: ChipDriver, num_in: bytes = bytes(20), mode: int = 0x00) -> bytes:
    rand_out = d.ok(NONCE, mode, 0, num_in)
    return host.nonce_random(rand_out, num_in, mode)


# ---- HMAC command ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [0x00, 0x40])  # the modes Microchip's hmac test runs on a 508A
def test_hmac_over_random_nonce(keyed: ChipDriver, mode: int) -> None:
    d = keyed
    tempkey = random_tempkey(d)
    expected = host.hmac_command(SLOT4_KEY, tempkey, mode, 4, d.chip.serial_number)
    assert d.ok(HMAC, mode, 4) == expected


@pytest.mark.parametrize("mode", [0x04, 0x44])
def test_hmac_over_passthrough_nonce(keyed: ChipDriver, mode: int) -> None:
    d = keyed
    tempkey = bytes(range(0x40, 0x60))
    d.nonce_load(tempkey)
    expected = host.hmac_command(KEY10, tempkey, mode, 10, d.chip.serial_number)
    assert d.ok(HMAC, mode, 10) == expected


def test_hmac_known_answer_fixed_inputs(keyed: ChipDriver) -> None:
    """One vector spelled out in full: key, message and HMAC built here by hand."""
    d = keyed
    sn = d.chip.serial_number
    tempkey = bytes(32)
    d.nonce_load(tempkey)
    message = (
        bytes(32)  # zeros
        + tempkey
        + b"\x11\x44\x0a\x00"  # opcode, mode (source flag + full SN), KeyID 10
        + bytes(8)  # OTP[0:8] not included on a 508A
        + bytes(3)
        + bytes((sn[8],))
        + sn[4:8]
        + sn[0:2]
        + sn[2:4]
    )
    assert len(message) == 88
    assert d.ok(HMAC, 0x44, 10) == hmac.new(KEY10, message, hashlib.sha256).digest()


def test_hmac_invalidates_tempkey(keyed: ChipDriver) -> None:
    d = keyed
    random_tempkey(d)
    assert len(d.ok(HMAC, 0x00, 4)) == 32
    assert d.ok(INFO, 2)[1] & 0x80 == 0  # TempKey.Valid cleared
    assert d.status(HMAC, 0x00, 4) == EXEC


@pytest.mark.parametrize("mode", [0x10, 0x20, 0x30, 0x50, 0x01, 0x02, 0x08, 0x80])
def test_hmac_mode_bits_refused(keyed: ChipDriver, mode: int) -> None:
    # Bits 4/5 (OTP) are "not applicable for ATECC508A"; 0, 1, 3, 7 must be zero.
    random_tempkey(keyed)
    assert keyed.status(HMAC, mode, 4) == PARSE


def test_hmac_refusals(keyed: ChipDriver) -> None:
    d = keyed
    assert d.status(HMAC, 0x00, 4) == EXEC  # no TempKey
    random_tempkey(d)
    assert d.status(HMAC, 0x04, 4) == EXEC  # SourceFlag (random) does not match mode bit 2
    assert d.status(HMAC, 0x00, 5) == EXEC  # slot 5 has NoMac
    assert d.status(HMAC, 0x00, 0) == EXEC  # slot 0 holds a private key
    assert d.status(HMAC, 0x00, 16) == PARSE
    assert d.status(HMAC, 0x00, 4, bytes(32)) == PARSE  # HMAC takes no data


def test_hmac_honours_req_random(blank: ChipDriver) -> None:
    d = blank  # slot 1: KeyConfig 0x005C, ReqRandom
    d.lock_config()
    d.write_slot(1, KEY10 + bytes(4))
    d.nonce_load(bytes(32))
    assert d.status(HMAC, 0x04, 1) == EXEC
    tempkey = random_tempkey(d)
    assert d.ok(HMAC, 0x00, 1) == host.hmac_command(KEY10, tempkey, 0x00, 1, d.chip.serial_number)


def test_hmac_honours_req_auth(blank: ChipDriver) -> None:
    d = blank
    d.set_key_config(10, 0x003C | 0x0080 | (4 << 8))  # ReqAuth, AuthKey = slot 4
    d.lock_config()
    d.write_slot(4, SLOT4_KEY + bytes(4))
    d.write_slot(10, KEY10 + bytes(40))
    d.lock_data()
    random_tempkey(d)
    assert d.status(HMAC, 0x00, 10) == EXEC
    challenge, other = bytes(range(32)), bytes(13)
    response = host.checkmac_response(SLOT4_KEY, challenge, other, d.chip.serial_number)
    assert d.status(CHECKMAC, 0x00, 4, challenge + response + other) == OK
    tempkey = random_tempkey(d)
    assert d.ok(HMAC, 0x00, 10) == host.hmac_command(KEY10, tempkey, 0x00, 10, d.chip.serial_number)


def test_hmac_needs_config_lock_only(blank: ChipDriver) -> None:
    d = blank
    assert d.status(HMAC, 0x00, 4) == EXEC  # config zone unlocked
    d.lock_config()
    d.write_slot(4, SLOT4_KEY + bytes(4))
    tempkey = random_tempkey(d)
    assert d.ok(HMAC, 0x00, 4) == host.hmac_command(
        SLOT4_KEY, tempkey, 0x00, 4, d.chip.serial_number
    )


# ---- SHA command, HMAC mode ---------------------------------------------------------------
def sha_hmac(d: ChipDriver, slot: int, message: bytes) -> bytes:
    """Drive HMAC start, 64-byte updates and HMAC end as CryptoAuthLib's calib_sha_hmac does."""
    assert d.status(SHA, HMAC_START, slot) == OK
    whole = len(message) - len(message) % 64
    for at in range(0, whole, 64):
        assert d.status(SHA, SHA_UPDATE, 64, message[at : at + 64]) == OK
    rest = message[whole:]
    return d.ok(SHA, HMAC_END, len(rest), rest)


def test_sha_hmac_microchip_vector(keyed: ChipDriver) -> None:
    reference = hmac.new(SLOT4_KEY, SHA_HMAC_MESSAGE, hashlib.sha256).digest()
    assert reference == SHA_HMAC_EXPECTED  # Microchip's vector is a plain HMAC-SHA256
    assert sha_hmac(keyed, 4, SHA_HMAC_MESSAGE) == SHA_HMAC_EXPECTED


@pytest.mark.parametrize("length", [0, 1, 63, 64, 130])
def test_sha_hmac_lengths(keyed: ChipDriver, length: int) -> None:
    message = bytes((i * 7) & 0xFF for i in range(length))
    expected = hmac.new(KEY10, message, hashlib.sha256).digest()
    assert sha_hmac(keyed, 10, message) == expected


def test_sha_hmac_result_left_in_tempkey(keyed: ChipDriver) -> None:
    d = keyed
    sha_hmac(d, 4, b"abc")
    state = d.ok(INFO, 2)
    assert state[1] & 0x80 and state[0] & 0x10  # TempKey valid, SourceFlag = input
    assert d.status(SHA, HMAC_END, 0) == EXEC  # the context is closed


def test_sha_hmac_start_refusals(keyed: ChipDriver) -> None:
    d = keyed
    assert d.status(SHA, HMAC_START, 0) == EXEC  # private key
    assert d.status(SHA, HMAC_START, 5) == EXEC  # NoMac
    assert d.status(SHA, HMAC_START, 16) == PARSE
    assert d.status(SHA, HMAC_START, 4, bytes(4)) == PARSE  # no data with a start


def test_sha_hmac_start_needs_config_lock(blank: ChipDriver) -> None:
    assert blank.status(SHA, HMAC_START, 4) == EXEC


def test_sha_and_hmac_contexts_do_not_mix(keyed: ChipDriver) -> None:
    d = keyed
    assert d.status(SHA, SHA_START) == OK
    assert d.status(SHA, HMAC_END, 0) == EXEC
    assert d.ok(SHA, SHA_END, 3, b"abc") == hashlib.sha256(b"abc").digest()
    assert d.status(SHA, HMAC_START, 4) == OK
    assert d.status(SHA, SHA_END, 0) == EXEC
    assert d.ok(SHA, HMAC_END, 0) == hmac.new(SLOT4_KEY, b"", hashlib.sha256).digest()
    assert d.status(SHA, HMAC_END, 0) == EXEC  # no context left
    assert d.status(SHA, HMAC_END, 2, b"a") == PARSE  # length param differs from the data
