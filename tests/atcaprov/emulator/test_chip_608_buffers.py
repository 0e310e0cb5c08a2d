"""The ATECC608A/B's Nonce targets, Sign and Verify message sources, and SHA command.

Each ``*608`` fixture runs once per 608 model. The packets are the ones CryptoAuthLib sends a
608 (``calib_nonce_load`` with target 0x40, ``calib_sign`` with Sign 0xA0,
``calib_verify_extern`` with Verify 0x22) and the modes of Microchip's 608 command tables;
expected digests come from hashlib and the published formulas.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.chip import ChipDriver
from tests.support.host_digests import nonce_random, sha256
from tests.support.keys import pub as raw_pub
from tests.support.keys import sign_digest, verify_raw

READ, INFO, NONCE, RANDOM = 0x02, 0x30, 0x16, 0x1B
GENKEY, SIGN, VERIFY, SHA = 0x40, 0x41, 0x45, 0x47
OK, MISCOMPARE, PARSE, EXEC = 0x00, 0x01, 0x03, 0x0F
TEMPKEY_VALID = 0x80  # Info State byte 1, bit 7
SOURCE_INPUT = 0x10  # Info State byte 0, bit 4


def tempkey_state(d: ChipDriver) -> tuple[bool, int]:
    """(TempKey valid, TempKey flags byte) as Info State shows them."""
    state = d.ok(INFO, 0x02)
    return bool(state[1] & TEMPKEY_VALID), state[0]


# ---- Nonce ---------------------------------------------------------------------------------
def test_nonce_fixed_targets(provisioned608: ChipDriver) -> None:
    d = provisioned608
    pub = d.ok(GENKEY, 0x00, 0)
    m_tempkey, m_digest, m_alt = sha256(b"tempkey"), sha256(b"digest buffer"), sha256(b"alt")
    d.chip.wake()
    assert d.status(NONCE, 0x03, 0, m_tempkey) == OK
    assert tempkey_state(d) == (True, SOURCE_INPUT)
    assert d.status(NONCE, 0x43, 0, m_digest) == OK  # Message Digest Buffer
    assert d.status(NONCE, 0x83, 0, m_alt) == OK  # Alternate Key Buffer
    assert tempkey_state(d) == (True, SOURCE_INPUT)  # TempKey untouched by the other targets
    verify_raw(pub, m_digest, d.ok(SIGN, 0xA0, 0))
    verify_raw(pub, m_tempkey, d.ok(SIGN, 0x80, 0))


def test_nonce_64_byte_loads(provisioned608: ChipDriver) -> None:
    """Modes 0x23 (TempKey) and 0x63 (Message Digest Buffer) take 64 bytes; the message is the
    lower 32."""
    d = provisioned608
    pub = d.ok(GENKEY, 0x00, 0)
    low, high = sha256(b"low"), sha256(b"high")
    d.chip.wake()
    assert d.status(NONCE, 0x63, 0, low + high) == OK
    verify_raw(pub, low, d.ok(SIGN, 0xA0, 0))
    assert d.status(NONCE, 0x23, 0, high + low) == OK
    verify_raw(pub, high, d.ok(SIGN, 0x80, 0))


@pytest.mark.parametrize(
    ("mode", "p2", "size"),
    [
        (0xA3, 0, 64),  # the Alternate Key Buffer takes 32 bytes only
        (0xC3, 0, 32),  # target bits 11
        (0x43, 0, 64),  # 32-byte mode with 64 bytes
        (0x63, 0, 32),  # 64-byte mode with 32 bytes
        (0x03, 1, 32),  # param2 must be 0 for a pass-through
        (0x02, 0, 20),  # mode 2 does not exist
        (0x07, 0, 32),  # bit 2 reserved
        (0x40, 0, 20),  # a random nonce has no target
        (0x00, 0x4000, 20),  # random: param2 0x0000 or 0x8000 only
        (0x00, 0, 32),  # random: 20 bytes of NumIn
    ],
)
def test_nonce_bad_parameters(blank608: ChipDriver, mode: int, p2: int, size: int) -> None:
    assert blank608.status(NONCE, mode, p2, bytes(size)) == PARSE


def test_nonce_random_and_tempkey_calculation(configured608: ChipDriver) -> None:
    """Param2 0x0000 answers RandOut (TempKey = SHA256(RandOut || NumIn || 16 mode 00)); 0x8000
    puts TempKey in the place of RandOut and answers the new TempKey."""
    d = configured608
    d.chip.sleep()
    assert d.status(NONCE, 0x00, 0x8000, bytes(20)) == EXEC  # no valid TempKey yet
    num1, num2 = bytes(range(20)), bytes(range(20, 40))
    rand_out = d.ok(NONCE, 0x01, 0x0000, num1)
    tempkey1 = nonce_random(rand_out, num1, 0x01)
    assert tempkey_state(d) == (True, 0x00)  # SourceFlag random
    tempkey2 = d.ok(NONCE, 0x00, 0x8000, num2)
    assert tempkey2 == nonce_random(tempkey1, num2, 0x00)
    assert tempkey_state(d) == (True, 0x00)


# ---- Sign ----------------------------------------------------------------------------------
def test_sign_from_the_message_digest_buffer(provisioned608: ChipDriver) -> None:
    """calib_sign on a 608: Random (seed update), Nonce 0x43, Sign 0xA0."""
    d = provisioned608
    pub = d.ok(GENKEY, 0x00, 0)
    digest = sha256(b"factory line message")
    d.chip.wake()
    d.ok(RANDOM, 0x00)
    assert d.status(NONCE, 0x43, 0, digest) == OK
    signature = d.ok(SIGN, 0xA0, 0)
    verify_raw(pub, digest, signature)
    with pytest.raises(InvalidSignature):
        verify_raw(pub, sha256(b"other"), signature)
    assert d.status(SIGN, 0xA0, 0) == EXEC  # the buffer was consumed
    d.ok(NONCE, 0x43, 0, digest)
    verify_raw(pub, digest, d.ok(SIGN, 0xE0, 0))  # bit 6 (serial number): no effect here


def test_sign_sources_are_separate(provisioned608: ChipDriver) -> None:
    d = provisioned608
    pub = d.ok(GENKEY, 0x00, 0)
    in_tempkey, in_buffer = sha256(b"in TempKey"), sha256(b"in the buffer")
    d.chip.wake()
    d.nonce_load(in_tempkey)
    assert d.status(SIGN, 0xA0, 0) == EXEC  # the buffer is empty
    d.ok(NONCE, 0x43, 0, in_buffer)
    verify_raw(pub, in_buffer, d.ok(SIGN, 0xA0, 0))
    assert tempkey_state(d) == (True, SOURCE_INPUT)  # TempKey kept for other operations
    verify_raw(pub, in_tempkey, d.ok(SIGN, 0x80, 0))
    d.ok(NONCE, 0x43, 0, in_buffer)
    assert d.status(SIGN, 0x80, 0) == EXEC  # TempKey consumed: the buffer is not TempKey
    d.chip.sleep()
    d.chip.wake()
    assert d.status(SIGN, 0xA0, 0) == EXEC  # sleep empties the buffer


def test_sign_refusals(configured608: ChipDriver) -> None:
    d = configured608
    d.genkey(0)
    d.chip.wake()
    d.ok(NONCE, 0x43, 0, bytes(32))
    assert d.status(SIGN, 0xA0, 0) == EXEC  # data zone not locked
    d.lock_data()
    d.ok(NONCE, 0x43, 0, bytes(32))
    assert d.status(SIGN, 0xA0, 7) == EXEC  # slot 7 (SlotConfig 2082): no external sign
    assert d.status(SIGN, 0xA0, 10) == EXEC  # not a private key
    assert d.status(SIGN, 0xA0, 2) == 0x05  # private-key slot without a key: ECC fault
    for mode in (0x81, 0xA1, 0x01, 0x90, 0x88):  # bit 0 (invalidate) and bits 1-4
        assert d.status(SIGN, mode, 0) == PARSE
    assert d.status(SIGN, 0xA0, 0, bytes(32)) == PARSE
    assert d.status(SIGN, 0xA0, 16) == PARSE


@pytest.mark.parametrize("mode", [0x00, 0x20, 0x40, 0x60])
def test_sign_internal_modes(provisioned608: ChipDriver, mode: int) -> None:
    """Internal messages are always in TempKey (from GenKey here); bit 6 adds the serial
    number to the 55-byte message, bit 5 enters it only as part of the mode byte."""
    d = provisioned608
    sn = d.chip.serial_number
    cfg = d.read_config()
    nonce = bytes(range(32))
    d.chip.wake()
    d.nonce_load(nonce)
    pub0 = d.ok(GENKEY, 0x08, 0)
    tempkey = sha256(nonce + b"\x40\x08\x00\x00" + bytes((sn[8],)) + sn[0:2] + bytes(25) + pub0)
    sig = d.ok(SIGN, mode, 2)
    with_sn = bool(mode & 0x40)
    msg = (
        tempkey
        + bytes((0x41, mode))
        + b"\x02\x00"
        + cfg[20:22]
        + cfg[96:98]
        + bytes((0x10 | 0x40, 0, 0, sn[8]))  # keyId 0, SourceFlag input, GenKeyData
        + (sn[4:8] if with_sn else bytes(4))
        + sn[0:2]
        + (sn[2:4] if with_sn else bytes(2))
        + b"\x01\x00\x00"
    )
    verify_raw(d.ok(GENKEY, 0x00, 2), sha256(msg), sig)


# ---- Verify --------------------------------------------------------------------------------
def test_verify_external_from_either_source(blank608: ChipDriver) -> None:
    """calib_verify_extern on a 608: Nonce 0x43, then Verify 0x22 (p2 = 0x0004, P-256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = sha256(b"hello")
    sig, pub = sign_digest(key, digest), raw_pub(key)
    d = blank608
    d.chip.wake()
    d.ok(NONCE, 0x43, 0, digest)
    assert d.status(VERIFY, 0x22, 0x0004, sig + pub) == OK
    assert d.status(VERIFY, 0x22, 0x0004, sig + pub) == EXEC  # the buffer was consumed
    d.ok(NONCE, 0x43, 0, sha256(b"other"))
    assert d.status(VERIFY, 0x22, 0x0004, sig + pub) == MISCOMPARE
    d.nonce_load(digest)
    assert d.status(VERIFY, 0x22, 0x0004, sig + pub) == EXEC  # TempKey is not the buffer
    assert d.status(VERIFY, 0x02, 0x0004, sig + pub) == OK  # TempKey source, as on a 508A
    d.ok(NONCE, 0x43, 0, digest)
    assert d.status(VERIFY, 0x22, 0x0004, sig + bytes(64)) == EXEC  # not a curve point
    for mode in (0x82, 0xA2, 0x01, 0x21, 0x23, 0x27, 0x04):
        assert d.status(VERIFY, mode, 0x0004, sig + pub) == PARSE


def test_verify_stored_from_either_source(blank608: ChipDriver) -> None:
    d = blank608
    d.set_key_config(11, 0x0010)  # P-256 public key, no validation
    d.set_slot_config(11, 0x0000)
    d.lock_config()
    pub = d.genkey(0)
    d.write_slot(11, bytes(4) + pub[:32] + bytes(4) + pub[32:])
    d.lock_data()
    digest = sha256(b"stored")
    d.chip.wake()
    d.ok(NONCE, 0x43, 0, digest)
    sig = d.ok(SIGN, 0xA0, 0)
    d.ok(NONCE, 0x43, 0, digest)
    assert d.status(VERIFY, 0x20, 11, sig) == OK
    d.nonce_load(digest)
    assert d.status(VERIFY, 0x00, 11, sig) == OK
    d.ok(NONCE, 0x43, 0, sha256(b"tampered"))
    assert d.status(VERIFY, 0x20, 11, sig) == MISCOMPARE
    d.ok(NONCE, 0x43, 0, digest)
    assert d.status(VERIFY, 0x20, 0, sig) == EXEC  # a private-key slot


# ---- SHA -----------------------------------------------------------------------------------
def test_sha_digest_and_its_targets(provisioned608: ChipDriver) -> None:
    d = provisioned608
    pub = d.ok(GENKEY, 0x00, 0)
    message = bytes(range(190))
    d.chip.wake()

    def digest_of(end_mode: int) -> bytes:
        d.ok(SHA, 0x00)
        d.ok(SHA, 0x01, 64, message[:64])
        d.ok(SHA, 0x01, 1, message[64:65])  # 1 to 64 bytes per update on a 608
        d.ok(SHA, 0x01, 64, message[65:129])
        return d.ok(SHA, end_mode, 61, message[129:])

    expected = hashlib.sha256(message).digest()
    d.nonce_load(sha256(b"kept"))
    assert digest_of(0xC2) == expected  # output only: TempKey untouched
    verify_raw(pub, sha256(b"kept"), d.ok(SIGN, 0x80, 0))
    assert digest_of(0x42) == expected  # and into the Message Digest Buffer
    verify_raw(pub, expected, d.ok(SIGN, 0xA0, 0))
    assert digest_of(0x02) == expected  # and into TempKey
    verify_raw(pub, expected, d.ok(SIGN, 0x80, 0))
    d.ok(SHA, 0x00)
    assert d.ok(SHA, 0x02, 64, message[:64]) == sha256(message[:64])  # 64 bytes at the end
    d.ok(SHA, 0x00)
    assert d.ok(SHA, 0xC2, 0) == sha256(b"")


def test_sha_context_is_its_own(blank608: ChipDriver) -> None:
    """The start does not clear TempKey, other commands may run between the steps, and sleep
    loses the context."""
    d = blank608
    d.chip.wake()
    d.nonce_load(bytes(32))
    d.ok(SHA, 0x00)
    assert tempkey_state(d) == (True, SOURCE_INPUT)
    d.ok(SHA, 0x01, 3, b"abc")
    d.ok(RANDOM, 0x00)
    d.ok(NONCE, 0x43, 0, bytes(32))
    d.ok(READ, 0x00, 0)
    assert d.ok(SHA, 0xC2, 3, b"def") == sha256(b"abcdef")
    d.ok(SHA, 0x00)
    d.chip.sleep()
    assert d.status(SHA, 0x02, 0) == EXEC  # no context after a sleep
    d.chip.idle()
    assert d.status(SHA, 0x01, 1, b"x") == EXEC


def test_sha_hmac(blank608: ChipDriver) -> None:
    """HMAC start 0x04 with a slot key or TempKey (param2 0xFFFF); the 608 ends it with 0x02."""
    d = blank608
    key9 = bytes(range(100, 132))
    assert d.status(SHA, 0x04, 9) == EXEC  # needs the config lock
    d.lock_config()
    d.write_slot(9, key9 + bytes(40))
    message = b"message for the HMAC" * 5
    d.ok(SHA, 0x04, 9)
    d.ok(SHA, 0x01, 64, message[:64])
    mac = d.ok(SHA, 0x02, len(message) - 64, message[64:])
    assert mac == hmac.new(key9, message, hashlib.sha256).digest()
    assert tempkey_state(d) == (True, SOURCE_INPUT)  # end 0x02: the HMAC is in TempKey too
    d.chip.sleep()
    assert d.status(SHA, 0x04, 0xFFFF) == EXEC  # no TempKey
    tempkey = sha256(b"a TempKey key")
    d.nonce_load(tempkey)
    d.ok(SHA, 0x04, 0xFFFF)
    assert d.ok(SHA, 0xC2, 3, b"abc") == hmac.new(tempkey, b"abc", hashlib.sha256).digest()
    assert d.status(SHA, 0x04, 0) == EXEC  # slot 0 holds a private key
    assert d.status(SHA, 0x04, 16) == PARSE
    d.ok(SHA, 0x04, 9)
    assert d.status(SHA, 0x05, 0) == PARSE  # the 508A's HMAC end does not exist here


@pytest.mark.parametrize(
    ("mode", "p2", "size"),
    [
        (0x01, 0, 0),  # an update carries 1 to 64 bytes
        (0x01, 65, 65),
        (0x01, 4, 3),  # param2 = the byte count
        (0x02, 65, 65),  # an end carries 0 to 64 bytes
        (0x02, 1, 2),
        (0x82, 0, 0),  # target 10 does not exist
        (0x40, 0, 0),  # a target on a start
        (0x41, 1, 1),  # ... or on an update
        (0x0A, 0, 0),  # bits 3-5 reserved
    ],
)
def test_sha_bad_parameters(blank608: ChipDriver, mode: int, p2: int, size: int) -> None:
    d = blank608
    d.ok(SHA, 0x00)
    assert d.status(SHA, mode, p2, bytes(size)) == PARSE
    assert d.ok(SHA, 0xC2, 0) == sha256(b"")  # the context survived the refused step
