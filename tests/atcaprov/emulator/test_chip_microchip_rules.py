"""Behaviour Microchip's own CryptoAuthLib device tests expect of a 508A.

GenDig zone 3 (``gendig_shared_nonce``), the OTP zone in consumption mode (``write_otp_zone``),
a clear Write to a private-key slot before the data lock (``write_boundary_conditions``), a
data address past slot 15 (``write_invalid_block``) and GenDig + encrypted Write + CheckMac on
an unlocked data zone (``write_enc_data_unlock``). The Counter read before the config lock
(``counter_write_test``) is in test_chip_zones.py. Expected digests come from
tests/support/host_digests.py (hashlib only).
"""

from __future__ import annotations

import pytest

from atcaprov.packet import build_command
from tests.support import host_digests as host
from tests.support.chip import ChipDriver

READ, WRITE, NONCE, GENDIG, MAC, CHECKMAC, INFO = 0x02, 0x12, 0x16, 0x15, 0x08, 0x28, 0x30
OK, MISCOMPARE, PARSE, EXEC = 0x00, 0x01, 0x03, 0x0F

SLOT4_KEY = bytes.fromhex("3780e63d4968ade5d822c013fcc323845d1b569fe705b60006feec145a0db1e3")
CHALLENGE = bytes.fromhex("1004bb7bc7e240d4ca1d6b047322d5fdad692a73398eaac33a5ac49e02b48b5d")


def data_addr(slot: int, block: int = 0, word: int = 0) -> int:
    return (block << 8) | (slot << 3) | word


def random_tempkey(d: ChipDriver, num_in: bytes = bytes(20)) -> bytes:
    rand_out = d.ok(NONCE, 0x00, 0, num_in)
    return host.nonce_random(rand_out, num_in, 0x00)


# ---- GenDig zone 3: shared nonce ------------------------------------------------------------
@pytest.fixture
def locked(blank: ChipDriver) -> ChipDriver:
    blank.lock_config()
    blank.write_slot(4, SLOT4_KEY + bytes(4))
    blank.lock_data()
    return blank


@pytest.mark.parametrize("key_id", [0x0004, 0x8004])
@pytest.mark.parametrize("other", [bytes(32), bytes(range(0x80, 0xA0))])
def test_gendig_shared_nonce_then_mac(locked: ChipDriver, key_id: int, other: bytes) -> None:
    """Microchip's gendig_shared_nonce: Nonce, GenDig(3, KeyID, 32 bytes), MAC(0x41, slot 4)."""
    d = locked
    sn = d.chip.serial_number
    tempkey = random_tempkey(d)
    assert d.status(GENDIG, 0x03, key_id, other) == OK
    tempkey = host.gendig_shared_nonce(other, key_id, sn, tempkey)
    assert d.ok(MAC, 0x41, 4) == host.mac(SLOT4_KEY, tempkey, 0x41, 4, sn)


def test_gendig_shared_nonce_spelled_out(locked: ChipDriver) -> None:
    d = locked
    sn = d.chip.serial_number
    start, other = bytes(range(32)), bytes(range(100, 132))
    d.nonce_load(start)
    assert d.status(GENDIG, 0x03, 0x8007, other) == OK
    head = b"\x15\x03\x07\x00" + bytes((sn[8], sn[0], sn[1]))
    tempkey = host.sha256(start + head + bytes(25) + other)  # bit 15: TempKey first
    assert d.ok(MAC, 0x45, 4) == host.mac(SLOT4_KEY, tempkey, 0x45, 4, sn)


def test_gendig_shared_nonce_flags_and_refusals(locked: ChipDriver) -> None:
    d = locked
    assert d.status(GENDIG, 0x03, 0x0004, bytes(32)) == EXEC  # no TempKey
    random_tempkey(d)
    assert d.status(GENDIG, 0x03, 0x0004) == PARSE  # the 32 bytes are required
    assert d.status(GENDIG, 0x03, 0x0004, bytes(4)) == PARSE
    assert d.status(GENDIG, 0x03, 0x0104, bytes(32)) == PARSE  # bits 8-14 mean nothing
    assert d.status(GENDIG, 0x04, 0x0000) == PARSE  # zones 4/5 are the 608's
    assert d.status(GENDIG, 0x03, 0x0004, bytes(32)) == OK
    state = d.ok(INFO, 2)
    assert state[0] == 0x00  # KeyID 0, SourceFlag random, GenDigData 0
    assert state[1] & 0x80  # TempKey valid


def test_gendig_shared_nonce_needs_config_lock(blank: ChipDriver) -> None:
    blank.nonce_load(bytes(32))
    assert blank.status(GENDIG, 0x03, 0x0004, bytes(32)) == EXEC


# ---- OTP consumption mode (OTPmode 0x55) ------------------------------------------------------
OTP_START = b"\xff" * 4 + b"\x7f" + b"\xff" * 58 + b"\xfe"  # Microchip's write_otp_zone_nolock


def otp_chip(d: ChipDriver, otp_mode: int) -> ChipDriver:
    d.write_config_bytes(16, bytes((0xC0, 0x00, otp_mode, 0x00)))
    d.lock_config()
    d.ok(WRITE, 0x81, 0, OTP_START[:32])
    d.ok(WRITE, 0x81, 1 << 3, OTP_START[32:])
    d.lock_data()
    return d


def read_otp(d: ChipDriver) -> bytes:
    return d.ok(READ, 0x81, 0) + d.ok(READ, 0x81, 1 << 3)


def test_otp_consumption_microchip_sequence(blank: ChipDriver) -> None:
    """write_otp_zone: clear the first 1 bit from byte 4 and the last 1 bit, then write bytes
    4..63 back as CryptoAuthLib's write_bytes_zone does (4-byte words up to the block
    boundary, then a 32-byte block)."""
    d = otp_chip(blank, 0x55)
    new = bytearray(read_otp(d))
    assert bytes(new) == OTP_START
    new[4] &= 0x7F ^ 0x40  # 0x7F: bit 7 is already 0, clear bit 6
    new[63] &= 0xFE ^ 0x02  # 0xFE: bit 0 is already 0, clear bit 1
    for at in range(4, 32, 4):
        assert d.status(WRITE, 0x01, at // 4, bytes(new[at : at + 4])) == OK
    assert d.status(WRITE, 0x81, 1 << 3, bytes(new[32:64])) == OK
    assert read_otp(d) == bytes(new)


def test_otp_consumption_refuses_setting_a_bit(blank: ChipDriver) -> None:
    d = otp_chip(blank, 0x55)
    assert d.status(WRITE, 0x01, 1, b"\x00\x00\x00\x00") == OK  # bytes 4..7 all cleared
    assert d.status(WRITE, 0x01, 1, b"\x00\x01\x00\x00") == EXEC  # 0 -> 1: refused
    assert d.status(WRITE, 0x81, 0, b"\xff" * 32) == EXEC
    assert read_otp(d)[4:8] == bytes(4)
    assert d.status(WRITE, 0x01, 1, bytes(4)) == OK  # rewriting the same value is fine
    assert d.status(WRITE, 0xC1, 0, bytes(64)) == EXEC  # never encrypted


def test_otp_read_only_mode_refuses_writes(blank: ChipDriver) -> None:
    d = otp_chip(blank, 0xAA)
    assert d.status(WRITE, 0x01, 1, bytes(4)) == EXEC
    assert read_otp(d) == OTP_START


# ---- Write to a private-key slot before the data lock -----------------------------------------
def test_clear_write_to_private_key_slot_refused_before_data_lock(configured: ChipDriver) -> None:
    """write_boundary_conditions: slot 0 is a P-256 private key (KeyConfig 0x0033)."""
    d = configured
    assert d.status(WRITE, 0x82, data_addr(0), b"\xa5" * 32) == EXEC
    assert d.status(WRITE, 0x82, data_addr(7), b"\xa5" * 32) == EXEC  # slot 7: 0x0033 too
    assert d.status(WRITE, 0x02, data_addr(10, 2), b"\xa5" * 4) == EXEC  # 4-byte, unlocked
    assert d.status(WRITE, 0x82, data_addr(10, 2), b"\xa5" * 32) == OK
    assert d.status(WRITE, 0x82, data_addr(10, 2, 1), b"\xa5" * 32) == OK  # word bits ignored
    # The private key slot is filled the chip's way: GenKey (or PrivWrite).
    assert len(d.genkey(0)) == 64
    d.lock_data()
    assert d.status(WRITE, 0x82, data_addr(0), b"\xa5" * 32) == EXEC


def test_encrypted_write_to_private_key_slot_refused(configured: ChipDriver) -> None:
    d = configured
    d.write_slot(4, SLOT4_KEY + bytes(4))
    tempkey = random_tempkey(d)
    assert d.status(GENDIG, 0x02, 4) == OK
    tempkey = host.gendig(SLOT4_KEY, 0x02, 4, d.chip.serial_number, tempkey)
    plain = bytes(32)
    mac = host.write_mac(tempkey, 0xC2, data_addr(0), d.chip.serial_number, plain)
    assert d.status(WRITE, 0xC2, data_addr(0), host.xor(plain, tempkey) + mac) == EXEC


# ---- Data addresses past slot 15 -------------------------------------------------------------
@pytest.fixture
def slot0_data(blank: ChipDriver) -> ChipDriver:
    """Slot 0 made a clear data slot, so that a wrap to slot 0 would show."""
    blank.set_slot_config(0, 0x0F0F)
    blank.set_key_config(0, 0x003C)
    blank.lock_config()
    return blank


@pytest.mark.parametrize("address", [0x0080, 0x0088, 0x00F8, 0x0180])
def test_address_past_slot_15_refused_not_wrapped(slot0_data: ChipDriver, address: int) -> None:
    """write_invalid_block: "slot 16" (0x0080) gets 0x03 or 0x0F, never a write to slot 0."""
    d = slot0_data
    d.write_slot(0, b"\x11" * 36)
    assert d.status(WRITE, 0x82, address, b"\x22" * 32) in (PARSE, EXEC)
    assert d.status(WRITE, 0x82, address, b"\x22" * 32) == PARSE  # the emulator's answer
    d.lock_data()
    assert d.status(WRITE, 0x02, address, b"\x22" * 4) == PARSE
    assert d.status(READ, 0x82, address) == PARSE
    assert d.status(READ, 0x02, address) == PARSE
    assert d.ok(READ, 0x82, data_addr(0)) == b"\x11" * 32


def test_other_invalid_blocks(configured: ChipDriver) -> None:
    """The rest of write_invalid_block: 0x03 or 0x0F for each."""
    d = configured
    assert d.status(WRITE, 0x02, data_addr(8, 4, 7), bytes(4)) in (PARSE, EXEC)
    assert d.status(WRITE, 0x02, (4 << 8) | (10 << 3) | 8, bytes(4)) in (PARSE, EXEC)
    assert d.status(WRITE, 0x02, data_addr(10, 2, 2), bytes(4)) in (PARSE, EXEC)


# ---- GenDig + encrypted Write + CheckMac before the data lock ----------------------------------
def encrypted_write(
    d: ChipDriver, slot: int, block: int, plain: bytes, key_slot: int, key: bytes
) -> int:
    """CryptoAuthLib's write_enc: Nonce (random), GenDig(data, key_slot), Write 0xC2 with the
    plaintext XOR TempKey and the write MAC."""
    sn = d.chip.serial_number
    tempkey = random_tempkey(d, bytes(range(20)))
    assert d.status(GENDIG, 0x02, key_slot) == OK
    tempkey = host.gendig(key, 0x02, key_slot, sn, tempkey)
    address = data_addr(slot, block)
    mac = host.write_mac(tempkey, 0xC2, address, sn, plain)
    return d.status(WRITE, 0xC2, address, host.xor(plain, tempkey) + mac)


def test_write_enc_data_unlock(configured: ChipDriver) -> None:
    """Slot 8 (SlotConfig 0x44C4, WriteKey 4) written encrypted with the slot 4 key while the
    data zone is open, then proved by a CheckMac with the written value as the key."""
    d = configured
    d.write_slot(4, SLOT4_KEY + bytes(4))
    secret = bytes(range(0x30, 0x50))
    assert encrypted_write(d, 8, 0, secret, 4, SLOT4_KEY) == OK
    other = bytes(13)
    response = host.checkmac_response(secret, CHALLENGE, other, d.chip.serial_number)
    assert d.status(CHECKMAC, 0x00, 8, CHALLENGE + response + other) == OK
    wrong = host.checkmac_response(SLOT4_KEY, CHALLENGE, other, d.chip.serial_number)
    assert d.status(CHECKMAC, 0x00, 8, CHALLENGE + wrong + other) == MISCOMPARE
    # Still open: the data lock comes after, and the stored value is the plaintext.
    d.lock_data()
    assert d.ok(MAC, 0x00, 8, CHALLENGE) == host.mac(
        secret, CHALLENGE, 0x00, 8, d.chip.serial_number
    )


def test_encrypted_write_before_data_lock_refusals(configured: ChipDriver) -> None:
    d = configured
    d.write_slot(4, SLOT4_KEY + bytes(4))
    d.write_slot(5, bytes(range(32)) + bytes(4))
    # No GenDig: refused.
    assert d.status(WRITE, 0xC2, data_addr(8), bytes(64)) == EXEC
    # GenDig with slot 5, but slot 8's WriteKey is 4: refused (*choice*: as after the lock).
    assert encrypted_write(d, 8, 0, bytes(32), 5, bytes(range(32))) == EXEC
    # Wrong MAC: miscompare, nothing written.
    random_tempkey(d)
    assert d.status(GENDIG, 0x02, 4) == OK
    assert d.status(WRITE, 0xC2, data_addr(8), bytes(64)) == MISCOMPARE
    # Encrypted 4-byte writes do not exist.
    assert d.status(WRITE, 0x42, data_addr(8), bytes(36)) == EXEC


def test_gendig_data_before_data_lock_matches_host(configured: ChipDriver) -> None:
    d = configured
    d.write_slot(4, SLOT4_KEY + bytes(4))
    sn = d.chip.serial_number
    tempkey = random_tempkey(d)
    assert d.status(GENDIG, 0x02, 4) == OK
    tempkey = host.gendig(SLOT4_KEY, 0x02, 4, sn, tempkey)
    assert d.ok(MAC, 0x01, 10) == host.mac(bytes(32), tempkey, 0x01, 10, sn)


def test_raw_packet_for_slot_16_is_answered_0x03(slot0_data: ChipDriver) -> None:
    """The exact bytes a host sends for atcab_write_zone(DATA, slot 16, block 0, 32 bytes)."""
    d = slot0_data
    d.chip.wake()
    packet = build_command(WRITE, 0x82, 0x0080, bytes(32))
    assert packet[3:5] == b"\x80\x00"
    assert d.chip.execute(packet) == bytes.fromhex("04038342")
