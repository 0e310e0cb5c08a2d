"""The emulated ATECC608A and ATECC608B: identity, config zone, locks, OTP, keys, commands not
emulated, save/load and the timing model. Each ``*608`` fixture runs once per 608 model.

Expected values are written out from the public sources (revision bytes, AN3539's config map,
CryptoAuthLib's 608 execution-time tables), not taken from the code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from atcaprov.datasheet import model_for_revision
from atcaprov.emulator import Atecc508a, Atecc608a, Atecc608b, StateFileError
from atcaprov.packet import build_command, crc16_value
from tests.support.chip import SERIAL, ChipDriver
from tests.support.keys import pub as raw_pub
from tests.support.keys import verify_raw

READ, WRITE, LOCK, INFO, RANDOM, NONCE = 0x02, 0x12, 0x17, 0x30, 0x1B, 0x16
GENKEY, SIGN, COUNTER, UPDATE_EXTRA, HMAC, ECDH, GENDIG, SHA = (
    0x40,
    0x41,
    0x24,
    0x20,
    0x11,
    0x43,
    0x15,
    0x47,
)
OK, PARSE, EXEC = 0x00, 0x03, 0x0F
PATTERN = bytes.fromhex("FFFF0000") * 8
# Bytes 16..127 of a blank 508A: the app note's default configuration.
DEFAULT_508A_16_127 = bytes.fromhex(
    "C000AA008F20C4448720C4448F0F8F8F9F8F8220C444C4440F0F0F0F0F0F0F0F"
    "0F0F0F0FFFFFFFFF00000000FFFFFFFF00000000FFFFFFFFFFFFFFFFFFFFFFFF"
    "FFFFFFFF00005555FFFF00000000000033005C0013005C003C001C001C003300"
    "1C001C003C003C003C003C001C003C00"
)


def config_word_address(offset: int) -> int:
    return ((offset // 32) << 3) | ((offset % 32) // 4)


# ---- identity ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("chip_type", "revision"),
    [("ATECC508A", "00005000"), ("ATECC608A", "00006002"), ("ATECC608B", "00006003")],
)
def test_revision_bytes(
    make_chip: Callable[..., ChipDriver], chip_type: str, revision: str
) -> None:
    d = make_chip(chip_type=chip_type)
    assert d.chip.model.name == chip_type
    assert d.ok(INFO, 0x00) == bytes.fromhex(revision)
    assert d.read_config()[4:8] == bytes.fromhex(revision)
    assert model_for_revision(d.ok(INFO, 0x00)) is d.chip.model
    d.chip.wake()
    packet = d.chip.execute(bytes.fromhex("0730000000035D"))  # the facts file's Info packet
    body = bytes((7,)) + bytes.fromhex(revision)
    assert packet == body + crc16_value(body).to_bytes(2, "little")


def test_classes_share_the_508a_api(blank608: ChipDriver) -> None:
    chip = blank608.chip
    assert isinstance(chip, Atecc508a) and isinstance(chip, Atecc608a)
    assert isinstance(chip, Atecc608b) == (chip.model.name == "ATECC608B")
    assert chip.serial_number == SERIAL
    assert repr(chip).startswith(type(chip).__name__ + "(serial=0123a1b2c3d4e5f6ee")


def test_factory_config(blank608: ChipDriver) -> None:
    cfg = blank608.read_config()
    assert cfg[0:4] + cfg[8:13] == SERIAL
    assert (cfg[13], cfg[14], cfg[15]) == (0x00, 0x01, 0x00)  # AES_Enable off, I2C
    assert (cfg[16], cfg[17], cfg[18], cfg[19]) == (0xC0, 0x00, 0x00, 0x00)  # CountMatch 00
    assert cfg[20:52] == DEFAULT_508A_16_127[4:36]  # the 508A default's SlotConfig
    assert cfg[52:68] == bytes.fromhex("FFFFFFFF00000000FFFFFFFF00000000")  # counters at 0
    assert cfg[68:84] == bytes(16)  # UseLock .. reserved: all 00 (AN3539 table 4-1)
    assert cfg[84:92] == bytes.fromhex("00005555FFFF0000")  # UserExtra(Add), locks, ChipOptions
    assert cfg[96:128] == DEFAULT_508A_16_127[80:112]  # the 508A default's KeyConfig


# ---- config zone ---------------------------------------------------------------------------
def test_the_608_bytes_are_writable_before_the_config_lock(blank608: ChipDriver) -> None:
    d = blank608
    # CountMatch, ChipMode; then UseLock..reserved and ChipOptions as in CryptoAuthLib's
    # 608 test config (test_ecc608_configdata).
    d.write_config_bytes(16, bytes.fromhex("C000A100"))
    block2 = bytes.fromhex("FF8403BC096976000000000000000000")
    d.write_config_bytes(68, block2)
    d.write_config_bytes(88, bytes.fromhex("FFFF0E40"))
    d.write_config_bytes(92, bytes.fromhex("01020304"))
    cfg = d.read_config()
    assert cfg[16:20] == bytes.fromhex("C000A100")
    assert cfg[68:84] == block2
    assert cfg[88:96] == bytes.fromhex("FFFF0E4001020304")
    # a 32-byte write of block 1 (SlotConfig 6..15, counters) is accepted too
    block1 = bytes(cfg[32:64])
    assert d.status(WRITE, 0x80, 1 << 3, block1) == OK


@pytest.mark.parametrize("offset", [0, 4, 8, 12, 84])
def test_config_bytes_never_writable(blank608: ChipDriver, offset: int) -> None:
    """Bytes 0-15 (serial number, RevNum, AES_Enable at 13, I2C_Enable) and 84-87 (UserExtra,
    UserExtraAdd, LockValue, LockConfig): never by Write, before the lock either."""
    d = blank608
    before = d.read_config()
    word = before[offset : offset + 4]
    assert d.status(WRITE, 0x00, config_word_address(offset), word) == EXEC
    assert d.read_config() == before


def test_32_byte_writes_of_blocks_with_fixed_bytes_refused(blank608: ChipDriver) -> None:
    d = blank608
    before = d.read_config()
    assert d.status(WRITE, 0x80, 0 << 3, before[0:32]) == EXEC
    assert d.status(WRITE, 0x80, 2 << 3, before[64:96]) == EXEC
    assert d.read_config() == before


@pytest.mark.parametrize("offset", [16, 20, 52, 68, 72, 88, 92, 124])
def test_config_bytes_writable_only_before_the_lock(blank608: ChipDriver, offset: int) -> None:
    d = blank608
    d.lock_config()
    before = d.read_config()
    assert d.status(WRITE, 0x00, config_word_address(offset), bytes(4)) == EXEC
    assert d.read_config() == before


def test_update_extra_sets_user_extra_and_user_extra_add(blank608: ChipDriver) -> None:
    d = blank608
    assert d.status(UPDATE_EXTRA, 0x01, 0x0070) == OK  # UserExtraAdd: another I2C address
    assert d.status(UPDATE_EXTRA, 0x01, 0x0072) == EXEC  # once only
    assert d.status(UPDATE_EXTRA, 0x00, 0x00AB) == OK
    assert d.read_config()[84:86] == bytes.fromhex("AB70")
    assert d.status(UPDATE_EXTRA, 0x02, 0) == PARSE


# ---- locks ---------------------------------------------------------------------------------
def test_config_lock_checks_the_crc_and_happens_once(blank608: ChipDriver) -> None:
    d = blank608
    crc = d.config_crc()
    assert d.status(LOCK, 0x00, crc ^ 1) == EXEC
    assert not d.chip.config_locked
    assert d.status(LOCK, 0x00, crc) == OK
    assert d.chip.config_locked and d.read_config()[87] == 0x00
    assert d.status(LOCK, 0x00, crc) == EXEC


def test_data_lock_and_slot_lock(configured608: ChipDriver) -> None:
    d = configured608
    assert d.status(LOCK, 0x02 | (10 << 2), 0) == EXEC  # slot lock needs the data lock
    d.genkey(0)
    d.write_slot(10, bytes(range(72)))
    d.write_slot(11, bytes(72))
    slots = b"".join(
        bytes(range(72)) if n == 10 else bytes(size)
        for n, size in enumerate([36] * 8 + [416] + [72] * 7)
        if n not in (0, 2, 7)  # private-key slots (KeyConfig 0033/0013/0033)
    )
    data_crc = crc16_value(slots + b"\xff" * 64)
    assert d.status(LOCK, 0x01, data_crc ^ 1) == EXEC
    assert d.status(LOCK, 0x01, data_crc) == OK
    assert d.chip.data_locked and d.read_config()[86] == 0x00
    assert d.status(LOCK, 0x01, data_crc) == EXEC
    assert d.status(WRITE, 0x02, 10 << 3, b"\x01\x02\x03\x04") == OK  # SlotConfig 0F0F
    assert d.status(LOCK, 0x02 | (10 << 2), 0) == OK  # KeyConfig 003C: lockable
    assert d.read_config()[88:90] == bytes.fromhex("FFFB")
    assert d.status(WRITE, 0x02, 10 << 3, bytes(4)) == EXEC
    assert d.ok(READ, 0x02, 10 << 3) == b"\x01\x02\x03\x04"
    assert d.status(LOCK, 0x02 | (10 << 2), 0) == EXEC  # already locked
    assert d.status(LOCK, 0x02 | (9 << 2), 0) == EXEC  # KeyConfig 001C: not lockable


# ---- OTP, data -----------------------------------------------------------------------------
def test_otp_has_no_consumption_mode(blank608: ChipDriver) -> None:
    """Byte 18 is CountMatch on a 608: even 0x55 there gives no OTP consumption mode; the OTP
    zone takes no write after the data lock (CryptoAuthLib's write_otp_zone test, 608 branch)."""
    d = blank608
    d.write_config_bytes(16, bytes.fromhex("C0005500"))
    d.lock_config()
    assert d.status(WRITE, 0x01, 0, bytes(4)) == EXEC  # before the data lock: 32 bytes only
    assert d.status(WRITE, 0x81, 0, bytes(range(32))) == OK
    d.lock_data()
    assert d.ok(READ, 0x81, 0) == bytes(range(32))
    assert d.status(WRITE, 0x01, 1, bytes(4)) == EXEC  # clearing bits: refused as well
    assert d.status(WRITE, 0x81, 1 << 3, bytes(32)) == EXEC
    assert d.ok(READ, 0x81, 1 << 3) == b"\xff" * 32


def test_read_and_write_data_after_the_lock(provisioned608: ChipDriver) -> None:
    d = provisioned608
    assert d.ok(READ, 0x82, 10 << 3) == bytes(range(32))
    assert d.ok(READ, 0x82, (2 << 8) | (10 << 3)) == bytes(range(64, 72)) + bytes(24)
    assert d.status(WRITE, 0x82, (1 << 8) | (10 << 3), bytes(32)) == OK
    assert d.ok(READ, 0x82, (1 << 8) | (10 << 3)) == bytes(32)
    assert d.status(READ, 0x82, 0x80) == PARSE  # "slot 16"


def test_private_keys_never_leave_the_chip(provisioned608: ChipDriver, tmp_path: Path) -> None:
    """No Read answers a private-key slot; GenKey answers the public key only; the key is in
    the saved file (the EEPROM) and nowhere in what the chip sent."""
    d = provisioned608
    sent: list[bytes] = []
    for slot in (0, 2):
        for p1 in (0x02, 0x82):
            for block in range(2):
                rsp = d.raw(READ, p1, (block << 8) | (slot << 3))
                assert len(rsp) == 4 and rsp[1] == EXEC
                sent.append(rsp)
        sent.append(d.ok(GENKEY, 0x00, slot))
    d.chip.save(tmp_path / "part.json")
    slots = json.loads((tmp_path / "part.json").read_text())["slots"]
    for slot in (0, 2):
        scalar = bytes.fromhex(slots[slot])[4:36]
        assert int.from_bytes(scalar, "big") != 0
        assert all(scalar not in answer for answer in sent)
    pub0 = d.ok(GENKEY, 0x00, 0)
    digest = bytes(range(32))
    d.chip.wake()
    d.nonce_load(digest)
    verify_raw(pub0, digest, d.ok(SIGN, 0x80, 0))


# ---- Random, Counter, GenKey ---------------------------------------------------------------
def test_random_and_counter(blank608: ChipDriver) -> None:
    d = blank608
    assert d.ok(RANDOM, 0x00) == PATTERN  # before the config lock (choice, as the 508A)
    assert d.ok(COUNTER, 0x00, 1) == bytes(4)
    assert d.status(COUNTER, 0x01, 1) == EXEC  # increments wait for the config lock
    d.lock_config()
    first, second = d.ok(RANDOM, 0x00), d.ok(RANDOM, 0x01)
    assert first != PATTERN and first != second
    assert d.ok(COUNTER, 0x01, 1) == (1).to_bytes(4, "little")
    assert d.ok(COUNTER, 0x00, 1) == (1).to_bytes(4, "little")
    assert d.ok(COUNTER, 0x00, 0) == bytes(4)
    assert d.status(COUNTER, 0x00, 2) == PARSE


def test_genkey(configured608: ChipDriver) -> None:
    d = configured608
    pub = d.genkey(0)
    assert len(pub) == 64 and d.ok(GENKEY, 0x00, 0) == pub
    assert d.genkey(0) != pub  # GenKey again: a new key, before the data lock
    assert d.status(GENKEY, 0x04, 10) == EXEC  # not a private-key slot
    assert d.status(GENKEY, 0x24, 0) == PARSE  # mode 0x20 (MAC of the public key)
    assert d.status(GENKEY, 0x04, 0xFFFF) == PARSE  # the private key into TempKey


# ---- commands not emulated -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("opcode", "p1", "p2", "data"),
    [
        (HMAC, 0x04, 0, b""),  # the 608 has no HMAC command (AN3539)
        (0x01, 0x00, 0, b""),  # Pause: the 608 has no Selector
        (0x51, 0x00, 0, bytes(16)),  # AES
        (0x56, 0x00, 0, bytes(4)),  # KDF
        (0x80, 0x05, 0, bytes(32)),  # SecureBoot
        (0x77, 0x00, 0, b""),  # SelfTest
        (INFO, 0x03, 0, b""),  # Info GPIO
        (INFO, 0x04, 0, b""),  # Info VolatileKeyPermit (the persistent latch)
        (ECDH, 0x0C, 0, bytes(64)),  # ECDH with the 608's output modes
        (GENDIG, 0x04, 0, b""),  # GenDig of a counter
        (GENDIG, 0x05, 0, b""),  # GenDig of a key config
        (SHA, 0x03, 0, b""),  # SHA public key
        (SHA, 0x06, 0, b""),  # SHA context read
        (SHA, 0x07, 0, bytes(32)),  # SHA context write
        (SHA, 0x05, 0, b""),  # the 508A's HMAC end
    ],
)
def test_commands_not_emulated_answer_a_parse_error(
    provisioned608: ChipDriver, opcode: int, p1: int, p2: int, data: bytes
) -> None:
    assert provisioned608.status(opcode, p1, p2, data) == PARSE
    assert provisioned608.chip.last_error


def test_the_508a_keeps_its_hmac_command(make_chip: Callable[..., ChipDriver]) -> None:
    d = make_chip()
    d.lock_config()
    d.chip.wake()
    d.nonce_load(bytes(32))
    assert len(d.ok(HMAC, 0x04, 9)) == 32


# ---- save / load ---------------------------------------------------------------------------
def test_save_records_the_model_and_load_restores_it(
    provisioned608: ChipDriver, tmp_path: Path
) -> None:
    d = provisioned608
    path = tmp_path / "part.json"
    d.chip.save(path)
    name = d.chip.model.name
    doc = json.loads(path.read_text())
    assert doc["format"] == f"atcaprov-{name.lower()}" and doc["version"] == 1
    for loader in (Atecc508a, Atecc608a, type(d.chip)):
        loaded = loader.load(path)
        assert type(loaded) is type(d.chip) and loaded.model.name == name
        assert loaded.config_zone == d.chip.config_zone and loaded.data_locked
        loaded.wake()
        assert loaded.execute(build_command(INFO, 0, 0))[1:5] == d.chip.model.revision


def test_load_refuses_another_model(make_chip: Callable[..., ChipDriver], tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    make_chip(chip_type="ATECC608A").chip.save(a)
    with pytest.raises(StateFileError, match="holds an ATECC608A, not an ATECC608B"):
        Atecc608b.load(a)
    old = tmp_path / "508.json"
    make_chip().chip.save(old)
    with pytest.raises(StateFileError, match="holds an ATECC508A, not an ATECC608A"):
        Atecc608a.load(old)
    assert type(Atecc508a.load(old)) is Atecc508a


def test_load_checks_the_revision_against_the_model(blank608: ChipDriver, tmp_path: Path) -> None:
    path = tmp_path / "part.json"
    blank608.chip.save(path)
    doc = json.loads(path.read_text())
    config = bytearray.fromhex(doc["config"])
    config[4:8] = bytes.fromhex("00005000")
    doc["config"] = config.hex()
    path.write_text(json.dumps(doc))
    with pytest.raises(StateFileError) as info:
        Atecc508a.load(path)
    assert info.value.field == "config" and "revision 00 00 50 00" in str(info.value)


# ---- timing model, watchdog ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("chip_mode", "sign_ms", "genkey_ms", "verify_ms"),
    [(0x00, 115, 115, 105), (0x28, 220, 215, 295), (0x68, 665, 653, 1085)],
)
def test_execution_times_follow_the_clock_divider(
    make_chip: Callable[..., ChipDriver],
    chip_mode: int,
    sign_ms: float,
    genkey_ms: float,
    verify_ms: float,
) -> None:
    """CryptoAuthLib's 608 tables M0, M1, M2 (ChipMode & 0xF8 = 00, 28, 68)."""
    for chip_type in ("ATECC608A", "ATECC608B"):
        d = make_chip(chip_type=chip_type, timing_scale=1.0)
        d.write_config_bytes(16, bytes((0xC0, 0x00, 0x00, chip_mode)))
        d.lock_config()
        d.genkey(0)
        d.lock_data()
        d.sleeps.clear()
        d.chip.sleep()
        key = ec.generate_private_key(ec.SECP256R1())
        d.chip.wake()
        d.nonce_load(bytes(32))
        d.ok(SIGN, 0x80, 0)
        d.chip.sleep()
        d.ok(GENKEY, 0x00, 0)
        d.chip.sleep()
        d.nonce_load(bytes(32))
        d.status(0x45, 0x02, 0x0004, bytes(64) + raw_pub(key))
        assert d.sleeps == [0.020, sign_ms / 1000, genkey_ms / 1000, 0.020, verify_ms / 1000]


def test_508a_times_are_unchanged(make_chip: Callable[..., ChipDriver]) -> None:
    d = make_chip(timing_scale=1.0)
    d.ok(INFO, 0x00)
    d.ok(NONCE, 0x03, 0, bytes(32))
    assert d.sleeps == [0.002, 0.029]
    e = make_chip(chip_type="ATECC608B", timing_scale=1.0)
    e.ok(INFO, 0x00)
    e.ok(NONCE, 0x03, 0, bytes(32))
    assert e.sleeps == [0.005, 0.020]
    assert e.chip.chip_time_ms == 25


def test_watchdog_follows_chipmode_bit_2(blank608: ChipDriver) -> None:
    d = blank608
    assert d.chip.watchdog_s == 1.3
    d.write_config_bytes(16, bytes.fromhex("C0000004"))
    assert d.chip.watchdog_s == 13.0
    d.chip.wake()
    d.nonce_load(bytes(32))
    d.clock.advance(5.0)
    assert d.ok(INFO, 0x02)[1] & 0x80  # TempKey still valid: the chip stayed awake
