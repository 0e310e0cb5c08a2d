"""Memory layout of the emulated ATECC508A: zone sizes, config map, address decoding, key bits.

Pure functions and constants over the raw bytes of the three zones (config 128 B, OTP 64 B,
16 data slots). Nothing here has state; :mod:`atcaprov.emulator.state` holds the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ChipParseError

CONFIG_SIZE = 128
OTP_SIZE = 64
SLOT_COUNT = 16
SLOT_SIZES: tuple[int, ...] = (36,) * 8 + (416,) + (72,) * 7

ZONE_CONFIG = 0
ZONE_OTP = 1
ZONE_DATA = 2

REVISION = b"\x00\x00\x50\x00"
SN01 = b"\x01\x23"
SN8 = 0xEE

# Config byte offsets.
CFG_I2C_ENABLE = 14
CFG_I2C_ADDRESS = 16
CFG_OTP_MODE = 18
CFG_CHIP_MODE = 19
CFG_SLOT_CONFIG = 20
CFG_COUNTER0 = 52
CFG_COUNTER1 = 60
CFG_LAST_KEY_USE = 68
CFG_USER_EXTRA = 84
CFG_SELECTOR = 85
CFG_LOCK_VALUE = 86  # data + OTP lock
CFG_LOCK_CONFIG = 87
CFG_SLOT_LOCKED = 88
CFG_KEY_CONFIG = 96

LOCKED = 0x00
UNLOCKED = 0x55

# Config bytes a Write may touch before the config lock (0..15 and 84..87 are never writable).
CONFIG_WRITABLE = frozenset(range(16, 84)) | frozenset(range(88, 128))

KEY_TYPE_P256 = 4
KEY_TYPE_DATA = 7

# Factory defaults for bytes 16..127 of a blank part: the provisioning default of the app note
# (section 3.5) with the part's own I2C address and both locks open.
_DEFAULT_16_127 = bytes.fromhex(
    "C000AA008F20C4448720C4448F0F8F8F"
    "9F8F8220C444C4440F0F0F0F0F0F0F0F"
    "0F0F0F0FFFFFFFFF00000000FFFFFFFF"
    "00000000FFFFFFFFFFFFFFFFFFFFFFFF"
    "FFFFFFFF00005555FFFF000000000000"
    "33005C0013005C003C001C001C003300"
    "1C001C003C003C003C003C001C003C00"
)


def default_config(serial: bytes) -> bytearray:
    """The 128 config bytes of a blank factory part with serial number ``serial`` (9 bytes).

    Bytes 13 and 15 are 0x00 and 0x00, byte 14 (I2C_Enable) is 0x01; the rest as documented in
    docs/emulator.md.
    """
    if len(serial) != 9:
        raise ValueError(f"serial number must be 9 bytes, got {len(serial)}")
    head = serial[0:4] + REVISION + serial[4:9] + b"\x00\x01\x00"
    config = bytearray(head + _DEFAULT_16_127)
    assert len(config) == CONFIG_SIZE
    return config


def serial_of(config: bytes | bytearray) -> bytes:
    """The 9-byte serial number held in config bytes 0..3 and 8..12."""
    return bytes(config[0:4]) + bytes(config[8:13])


def slot_config_word(config: bytes | bytearray, slot: int) -> int:
    return int.from_bytes(
        config[CFG_SLOT_CONFIG + 2 * slot : CFG_SLOT_CONFIG + 2 * slot + 2], "little"
    )


def key_config_word(config: bytes | bytearray, slot: int) -> int:
    return int.from_bytes(
        config[CFG_KEY_CONFIG + 2 * slot : CFG_KEY_CONFIG + 2 * slot + 2], "little"
    )


@dataclass(frozen=True)
class SlotConfig:
    """The SlotConfig word of one slot, decoded."""

    word: int

    @property
    def read_key(self) -> int:
        return self.word & 0x0F

    @property
    def ext_sign(self) -> bool:
        return bool(self.word & 0x0001)

    @property
    def int_sign(self) -> bool:
        return bool(self.word & 0x0002)

    @property
    def ecdh_allowed(self) -> bool:
        return bool(self.word & 0x0004)

    @property
    def ecdh_to_slot(self) -> bool:
        return bool(self.word & 0x0008)

    @property
    def no_mac(self) -> bool:
        return bool(self.word & 0x0010)

    @property
    def limited_use(self) -> bool:
        return bool(self.word & 0x0020)

    @property
    def encrypt_read(self) -> bool:
        return bool(self.word & 0x0040)

    @property
    def is_secret(self) -> bool:
        return bool(self.word & 0x0080)

    @property
    def write_key(self) -> int:
        return (self.word >> 8) & 0x0F

    @property
    def write_config(self) -> int:
        return (self.word >> 12) & 0x0F

    # WriteConfig as seen by the Write command (datasheet table): 0000 always, 0001 PubInvalid,
    # x1xx encrypted, any other value never.
    @property
    def write_always(self) -> bool:
        return self.write_config in (0b0000, 0b0001)

    @property
    def write_encrypted(self) -> bool:
        return bool(self.write_config & 0b0100)

    # WriteConfig as seen by GenKey / PrivWrite on private-key slots.
    @property
    def genkey_allowed(self) -> bool:
        return bool(self.write_config & 0b0010)

    @property
    def privwrite_allowed(self) -> bool:
        return bool(self.write_config & 0b0100)


@dataclass(frozen=True)
class KeyConfig:
    """The KeyConfig word of one slot, decoded."""

    word: int

    @property
    def private(self) -> bool:
        return bool(self.word & 0x0001)

    @property
    def pub_info(self) -> bool:
        return bool(self.word & 0x0002)

    @property
    def key_type(self) -> int:
        return (self.word >> 2) & 0x07

    @property
    def is_p256(self) -> bool:
        return self.key_type == KEY_TYPE_P256

    @property
    def lockable(self) -> bool:
        return bool(self.word & 0x0020)

    @property
    def req_random(self) -> bool:
        return bool(self.word & 0x0040)

    @property
    def req_auth(self) -> bool:
        return bool(self.word & 0x0080)

    @property
    def auth_key(self) -> int:
        return (self.word >> 8) & 0x0F


@dataclass(frozen=True)
class ZoneAddress:
    """A decoded Read/Write address: zone, slot (data zone), byte offset and length."""

    zone: int
    slot: int
    offset: int  # byte offset inside the zone (config/OTP) or the slot (data)
    length: int  # 4 or 32

    def describe(self) -> str:
        where = (
            "config"
            if self.zone == ZONE_CONFIG
            else "OTP"
            if self.zone == ZONE_OTP
            else (f"slot {self.slot}")
        )
        return f"{where} bytes {self.offset}..{self.offset + self.length - 1}"


def decode_address(zone: int, address: int, length: int) -> ZoneAddress:
    """Decode param2 of Read/Write (facts 3.3) and check it fits the zone; 0x03 if not.

    For 32-byte access the word bits are ignored (as for the block-only address of the chip).
    A 32-byte access of the last, partial block of a slot (block 1 of slots 0-7, block 2 of
    slots 9-15) is accepted and covers only the bytes that exist.
    """
    word = address & 0x07
    if length == 32:
        word = 0
    if zone in (ZONE_CONFIG, ZONE_OTP):
        if address >> 5:
            raise ChipParseError(detail=f"address 0x{address:04X} out of range for zone {zone}")
        block = (address >> 3) & 0x03
        size = CONFIG_SIZE if zone == ZONE_CONFIG else OTP_SIZE
        offset = block * 32 + word * 4
        if offset + length > size:
            raise ChipParseError(
                detail=f"address 0x{address:04X} (byte {offset}) beyond the {size}-byte zone"
            )
        return ZoneAddress(zone, 0, offset, length)
    if zone == ZONE_DATA:
        if address >> 12:
            raise ChipParseError(detail=f"data address 0x{address:04X} out of range")
        slot = (address >> 3) & 0x0F
        block = (address >> 8) & 0x0F
        offset = block * 32 + word * 4
        size = SLOT_SIZES[slot]
        if offset >= size or (length == 4 and offset + 4 > size):
            raise ChipParseError(
                detail=f"address 0x{address:04X}: byte {offset} beyond slot {slot} ({size} bytes)"
            )
        return ZoneAddress(zone, slot, offset, min(length, size - offset))
    raise ChipParseError(detail=f"zone {zone} is not 0 (config), 1 (OTP) or 2 (data)")
