"""Info, Read, Write, Lock, UpdateExtra, Counter: success paths and every enforcement rule."""

from __future__ import annotations

import hashlib

import pytest

from atcaprov.emulator.cmd_memory import decode_counter, encode_counter
from atcaprov.packet import crc16_value
from tests.support.chip import ChipDriver

READ, WRITE, LOCK, INFO, UPDATE_EXTRA, COUNTER = 0x02, 0x12, 0x17, 0x30, 0x20, 0x24
NONCE, GENDIG = 0x16, 0x15
OK, PARSE, EXEC, MISCOMPARE = 0x00, 0x03, 0x0F, 0x01


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def data_addr(slot: int, block: int = 0, word: int = 0) -> int:
    return (block << 8) | (slot << 3) | word


# ---- blank part --------------------------------------------------------------------------------
def test_blank_config_layout(blank: ChipDriver) -> None:
    cfg = blank.read_config()
    assert len(cfg) == 128
    assert cfg[4:8] == bytes.fromhex("00005000")
    assert cfg[16] == 0xC0  # I2C address
    assert cfg[84:88] == bytes.fromhex("00005555")  # UserExtra, Selector, both locks open
    assert cfg[88:90] == b"\xff\xff"  # no slot locked
    assert cfg[52:60] == encode_counter(0)
    assert not blank.chip.config_locked and not blank.chip.data_locked


def test_info_revision_keyvalid_state(configured: ChipDriver) -> None:
    d = configured
    assert d.ok(INFO, 0) == bytes.fromhex("00005000")
    assert d.ok(INFO, 1, 0) == bytes(4)  # no key in slot 0 yet
    d.genkey(0)
    assert d.ok(INFO, 1, 0) == bytes.fromhex("01000000")
    assert d.ok(INFO, 1, 10) == bytes(4)  # data slot: not an ECC key
    d.nonce_load(bytes(32))
    state = d.ok(INFO, 2)
    assert state[0] == 0x10 and state[1] == 0x80  # SourceFlag input, TempKey valid
    assert d.status(INFO, 3) == PARSE
    assert d.status(INFO, 1, 16) == PARSE
    assert d.status(INFO, 0, 0, b"\x00") == PARSE


# ---- config zone -------------------------------------------------------------------------------
def test_config_write_and_readback(blank: ChipDriver) -> None:
    blank.write_config_bytes(16, bytes.fromhex("B0000000"))
    block1 = bytes(range(32, 64))
    assert blank.status(WRITE, 0x80, 1 << 3, block1) == OK
    cfg = blank.read_config()
    assert cfg[16:20] == bytes.fromhex("B0000000") and cfg[32:64] == block1
    assert blank.ok(READ, 0x00, (1 << 3) | 2) == block1[8:12]  # 4-byte read, block 1 word 2


@pytest.mark.parametrize(
    ("p1", "addr", "size"),
    [
        (0x00, 0, 4),  # bytes 0..3 (SN)
        (0x00, 3, 4),  # bytes 12..15
        (0x00, (2 << 3) | 5, 4),  # bytes 84..87 (UserExtra, Selector, locks)
        (0x80, 0, 32),  # block 0 covers 0..15
        (0x80, 2 << 3, 32),  # block 2 covers 84..87
    ],
)
def test_config_write_to_readonly_bytes_refused(
    blank: ChipDriver, p1: int, addr: int, size: int
) -> None:
    before = blank.read_config()
    assert blank.status(WRITE, p1, addr, bytes(size)) == EXEC
    assert blank.read_config() == before


def test_config_write_after_lock_refused(configured: ChipDriver) -> None:
    assert configured.status(WRITE, 0x00, 4, bytes(4)) == EXEC


@pytest.mark.parametrize(
    ("opcode", "p1", "p2", "data"),
    [
        (READ, 0x03, 0, b""),  # zone 3
        (READ, 0x04, 0, b""),  # reserved bit
        (READ, 0x00, 4 << 3, b""),  # config block 4
        (READ, 0x01, 2 << 3, b""),  # OTP block 2
        (READ, 0x02, 0x1000, b""),  # beyond the data address space
        (READ, 0x82, data_addr(8, 13), b""),  # slot 8 has blocks 0..12
        (READ, 0x02, data_addr(0, 2), b""),  # slot 0 has no block 2
        (READ, 0x02, data_addr(0, 1, 1), b""),  # slot 0 block 1 has one word only
        (READ, 0x00, 0, b"\x00"),  # Read takes no data
        (WRITE, 0x00, 4, bytes(5)),  # 4-byte write with 5 bytes
        (WRITE, 0x80, 1 << 3, bytes(4)),  # 32-byte write with 4 bytes
        (WRITE, 0x20, 4, bytes(4)),  # reserved bit
    ],
)
def test_bad_parameters_give_parse_error(
    blank: ChipDriver, opcode: int, p1: int, p2: int, data: bytes
) -> None:
    assert blank.status(opcode, p1, p2, data) == PARSE


# ---- data / OTP before data lock ---------------------------------------------------------------
def test_data_and_otp_writes_need_config_lock(blank: ChipDriver) -> None:
    assert blank.status(WRITE, 0x82, data_addr(10), bytes(32)) == EXEC
    assert blank.status(WRITE, 0x81, 0, bytes(32)) == EXEC


def test_data_writes_before_data_lock(configured: ChipDriver) -> None:
    d = configured
    assert d.status(WRITE, 0x82, data_addr(10, 1), bytes(range(32))) == OK
    assert d.status(WRITE, 0x02, data_addr(10), bytes(4)) == EXEC  # 4-byte: refused
    assert d.status(WRITE, 0xC2, data_addr(10), bytes(64)) == EXEC  # encrypted: refused
    assert d.status(WRITE, 0x81, 1 << 3, bytes(range(32))) == OK  # OTP block 1
    assert d.status(WRITE, 0x01, 0, bytes(4)) == EXEC  # OTP 4-byte: refused


def test_data_and_otp_reads_refused_before_data_lock(configured: ChipDriver) -> None:
    assert configured.status(READ, 0x82, data_addr(10)) == EXEC
    assert configured.status(READ, 0x81, 0) == EXEC


def test_partial_last_block_keeps_only_existing_bytes(configured: ChipDriver) -> None:
    d = configured
    d.write_slot(10, bytes(range(1, 73)) + bytes(24))  # 72-byte slot, 3 writes
    d.ok(WRITE, 0x82, data_addr(10, 2), bytes([0xAA] * 32))
    d.lock_data()
    assert d.ok(READ, 0x82, data_addr(10, 2)) == bytes([0xAA] * 8) + bytes(24)
    assert d.ok(READ, 0x02, data_addr(10, 2, 1)) == bytes([0xAA] * 4)
    assert d.status(READ, 0x02, data_addr(10, 2, 2)) == PARSE


# ---- locks -----------------------------------------------------------------------------------
def test_lock_config_with_crc(blank: ChipDriver) -> None:
    crc = crc16_value(blank.read_config())
    assert blank.status(LOCK, 0x00, crc ^ 0x0101) == EXEC
    assert not blank.chip.config_locked
    assert blank.status(LOCK, 0x00, crc) == OK
    assert blank.chip.config_locked
    assert blank.read_config()[87] == 0x00
    assert blank.status(LOCK, 0x00, crc) == EXEC  # relock
    assert blank.status(LOCK, 0x80, 0) == EXEC


def test_lock_data_needs_config_lock(blank: ChipDriver) -> None:
    assert blank.status(LOCK, 0x81, 0) == EXEC
    assert not blank.chip.data_locked


def test_lock_data_with_crc_skips_private_slots(configured: ChipDriver) -> None:
    d = configured
    d.genkey(0)
    d.write_slot(10, bytes(range(72)))
    d.ok(WRITE, 0x81, 0, bytes(range(100, 132)))
    private = {0, 2, 7}  # KeyConfig.Private in the default configuration
    content = b"".join(
        (bytes(range(72)) if n == 10 else bytes((36,) * 0) + bytes(size))
        for n, size in enumerate([36] * 8 + [416] + [72] * 7)
        if n not in private
    )
    otp = bytes(range(100, 132)) + b"\xff" * 32
    crc = crc16_value(content + otp)
    assert d.status(LOCK, 0x01, crc ^ 1) == EXEC
    assert not d.chip.data_locked
    assert d.status(LOCK, 0x01, crc) == OK
    assert d.chip.data_locked
    assert d.read_config()[86] == 0x00
    assert d.status(LOCK, 0x81, 0) == EXEC  # relock


def test_lock_bad_modes(blank: ChipDriver) -> None:
    assert blank.status(LOCK, 0x40, 0) == PARSE
    assert blank.status(LOCK, 0x83, 0) == PARSE
    assert blank.status(LOCK, 0x84, 0) == PARSE  # slot bits with the config zone


def test_slot_lock(provisioned: ChipDriver) -> None:
    d = provisioned
    assert d.status(LOCK, (10 << 2) | 2, 0) == OK
    cfg = d.read_config()
    assert int.from_bytes(cfg[88:90], "little") == 0xFFFF & ~(1 << 10)
    assert d.status(LOCK, (10 << 2) | 2, 0) == EXEC  # already locked
    assert d.status(WRITE, 0x82, data_addr(10), bytes(32)) == EXEC
    assert d.ok(READ, 0x82, data_addr(10)) == bytes(range(32))  # still readable
    assert d.status(LOCK, (5 << 2) | 2, 0) == EXEC  # KeyConfig 0x001C: not lockable


def test_slot_lock_needs_data_lock(configured: ChipDriver) -> None:
    assert configured.status(LOCK, (10 << 2) | 2, 0) == EXEC


# ---- data zone after lock: SlotConfig / KeyConfig rules ----------------------------------------
def test_clear_slot_read_write_after_lock(provisioned: ChipDriver) -> None:
    d = provisioned
    assert d.ok(READ, 0x82, data_addr(10, 1)) == bytes(range(32, 64))
    assert d.ok(WRITE, 0x02, data_addr(10, 0, 3), b"WXYZ") == b""
    assert d.ok(READ, 0x02, data_addr(10, 0, 3)) == b"WXYZ"
    assert d.ok(WRITE, 0x82, data_addr(12), bytes([7] * 32)) == b""
    assert d.ok(READ, 0x82, data_addr(12)) == bytes([7] * 32)


def test_private_key_slots_never_readable(provisioned: ChipDriver) -> None:
    d = provisioned
    for slot in (0, 2, 7):
        assert d.status(READ, 0x82, data_addr(slot)) == EXEC
        for block, words in ((0, range(8)), (1, range(1))):
            for word in words:
                assert d.status(READ, 0x02, data_addr(slot, block, word)) == EXEC


def test_secret_slot_not_readable(provisioned: ChipDriver) -> None:
    assert provisioned.status(READ, 0x82, data_addr(4)) == EXEC  # IsSecret, no EncryptRead
    assert provisioned.status(READ, 0x82, data_addr(8)) == EXEC  # EncryptRead, no GenDig


def test_write_config_never_and_private(provisioned: ChipDriver) -> None:
    d = provisioned
    assert d.status(WRITE, 0x82, data_addr(5), bytes(32)) == EXEC  # WriteConfig 8 = never
    assert d.status(WRITE, 0x82, data_addr(0), bytes(32)) == EXEC  # private key slot
    assert d.status(WRITE, 0x82, data_addr(8), bytes(32)) == EXEC  # needs encryption


def test_otp_after_data_lock(configured: ChipDriver) -> None:
    d = configured
    d.ok(WRITE, 0x81, 0, bytes(range(32)))
    d.lock_data()
    assert d.ok(READ, 0x81, 0) == bytes(range(32))
    assert d.ok(READ, 0x01, 1) == bytes(range(4, 8))
    assert d.status(WRITE, 0x81, 0, bytes(32)) == EXEC
    assert d.status(WRITE, 0x01, 0, bytes(4)) == EXEC


def _random_nonce_then_gendig(d: ChipDriver, key_slot: int, key: bytes, num_in: bytes) -> bytes:
    """Run Nonce(random) + GenDig(data, key_slot) on the chip; return the host's TempKey."""
    rand_out = d.ok(NONCE, 0x00, 0, num_in)
    tempkey = sha256(rand_out + num_in + b"\x16\x00\x00")
    sn = d.chip.serial_number
    assert d.ok(GENDIG, 0x02, key_slot) == b""
    return sha256(
        key
        + b"\x15\x02"
        + key_slot.to_bytes(2, "little")
        + bytes((sn[8], sn[0], sn[1]))
        + bytes(25)
        + tempkey
    )


def test_encrypted_write_and_read(configured: ChipDriver) -> None:
    d = configured
    key4 = bytes(range(200, 232))
    d.write_slot(4, key4 + bytes(4))
    d.lock_data()
    d.chip.wake()
    plain = bytes(range(32))
    p1, p2 = 0xC2, data_addr(8)
    sn = d.chip.serial_number
    tk = _random_nonce_then_gendig(d, 4, key4, bytes(range(20)))
    cipher = bytes(a ^ b for a, b in zip(plain, tk, strict=True))
    mac = sha256(
        tk
        + bytes((0x12, p1))
        + p2.to_bytes(2, "little")
        + bytes((sn[8],))
        + sn[0:2]
        + bytes(25)
        + plain
    )
    assert d.status(WRITE, p1, p2, cipher + mac) == OK
    # Encrypted read back (ReadKey of slot 8 is 4).
    tk = _random_nonce_then_gendig(d, 4, key4, bytes(range(1, 21)))
    out = d.ok(READ, 0x82, data_addr(8))
    assert bytes(a ^ b for a, b in zip(out, tk, strict=True)) == plain


def test_encrypted_write_bad_mac_is_miscompare(configured: ChipDriver) -> None:
    d = configured
    key4 = bytes(range(200, 232))
    d.write_slot(4, key4 + bytes(4))
    d.lock_data()
    _random_nonce_then_gendig(d, 4, key4, bytes(20))
    assert d.status(WRITE, 0xC2, data_addr(8), bytes(64)) == MISCOMPARE


def test_encrypted_write_needs_gendig(provisioned: ChipDriver) -> None:
    assert provisioned.status(WRITE, 0xC2, data_addr(8), bytes(64)) == EXEC


# ---- UpdateExtra, Counter ----------------------------------------------------------------
def test_update_extra(blank: ChipDriver) -> None:
    assert blank.status(UPDATE_EXTRA, 0, 0x00) == OK  # writing 0 over 0: allowed, no change
    assert blank.status(UPDATE_EXTRA, 0, 0x42) == OK  # before the config lock too
    blank.lock_config()
    assert blank.status(UPDATE_EXTRA, 1, 0x07) == OK
    assert blank.read_config()[84:86] == b"\x42\x07"
    assert blank.status(UPDATE_EXTRA, 0, 0x43) == EXEC  # already set
    assert blank.status(UPDATE_EXTRA, 2, 0x01) == PARSE


def test_counter(configured: ChipDriver) -> None:
    d = configured
    assert d.ok(COUNTER, 0, 0) == bytes(4)
    assert d.ok(COUNTER, 1, 0) == (1).to_bytes(4, "little")
    assert d.ok(COUNTER, 1, 0) == (2).to_bytes(4, "little")
    assert d.ok(COUNTER, 0, 0) == (2).to_bytes(4, "little")
    assert d.ok(COUNTER, 0, 1) == bytes(4)
    assert d.read_config()[52:60] == encode_counter(2)
    assert d.status(COUNTER, 0, 2) == PARSE
    assert d.status(COUNTER, 2, 0) == PARSE


def test_counter_read_before_config_lock_returns_config_value(blank: ChipDriver) -> None:
    # Microchip's counter_write_test: counter 1 written into the unlocked config zone, then
    # read back with the Counter command before the config lock.
    for value in (0, 2_097_151 // 2, 2_097_151):
        blank.write_config_bytes(60, encode_counter(value))
        assert blank.ok(COUNTER, 0, 1) == value.to_bytes(4, "little")
    assert blank.ok(COUNTER, 0, 0) == bytes(4)


def test_counter_increment_needs_config_lock(blank: ChipDriver) -> None:
    assert blank.status(COUNTER, 1, 1) == EXEC
    assert blank.read_config()[60:68] == encode_counter(0)


@pytest.mark.parametrize("value", [0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 1000, 2_097_151])
def test_counter_encoding_roundtrip(value: int) -> None:
    assert decode_counter(encode_counter(value)) == value


def test_counter_encoding_of_zero() -> None:
    assert encode_counter(0) == bytes.fromhex("FFFFFFFF00000000")
