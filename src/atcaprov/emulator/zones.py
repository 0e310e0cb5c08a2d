"""Memory layout of the emulated parts: the factory config of each model, address decoding.

The datasheet facts (zone and slot sizes, config map, SlotConfig/KeyConfig bits, serial number)
come from :mod:`atcaprov.datasheet`, shared with the host side; this module adds what only the
chip needs. Pure functions and constants, nothing here has state; :mod:`atcaprov.emulator.state`
holds the bytes. Every function takes the :class:`~atcaprov.datasheet.ChipModel` (the ATECC508A
unless told otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..datasheet import (
    ATECC508A,
    ATECC508A_CONFIG_MAP,
    BLOCK_SIZE,
    FAMILY_ATECC608,
    SERIAL_NUMBER_SIZE,
    WORD_SIZE,
    ChipModel,
)
from ..errors import ChipParseError

MODEL = ATECC508A
"""The ATECC508A, the model of the functions' defaults."""
CONFIG_MAP = ATECC508A_CONFIG_MAP
REVISION = MODEL.revision
"""What a 508A's Info(Revision) answers, and config bytes 4-7 of a new 508A."""
CONFIG_WRITABLE = MODEL.config_writable
"""Config bytes a Write may touch before the config lock (0..15 and 84..87 never are)."""

ZONE_CONFIG = 0
ZONE_OTP = 1
ZONE_DATA = 2

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
# The same for a blank ATECC608A/B, with the 608's own bytes at the values AN3539 (table 4-1)
# gives for a 608 that behaves as a 508A: CountMatch (18) 00, ChipMode (19) 00, UseLock,
# VolatileKeyPermission, SecureBoot, KdfIvLoc, KdfIvStr and the reserved bytes (68-83) 00,
# UserExtraAdd (85) 00, ChipOptions (90-91) 00 00.
_DEFAULT_608_16_127 = bytes.fromhex(
    "C00000008F20C4448720C4448F0F8F8F"
    "9F8F8220C444C4440F0F0F0F0F0F0F0F"
    "0F0F0F0FFFFFFFFF00000000FFFFFFFF"
    "00000000000000000000000000000000"
    "0000000000005555FFFF000000000000"
    "33005C0013005C003C001C001C003300"
    "1C001C003C003C003C003C001C003C00"
)


def default_config(serial: bytes, model: ChipModel = MODEL) -> bytearray:
    """The 128 config bytes of a blank factory part of ``model`` with serial number ``serial``.

    Bytes 13 and 15 are 0x00 (on a 608, byte 13 is AES_Enable: AES off), byte 14 (I2C_Enable)
    is 0x01; the rest as documented in docs/emulator.md.
    """
    if len(serial) != SERIAL_NUMBER_SIZE:
        raise ValueError(f"serial number must be 9 bytes, got {len(serial)}")
    cmap = model.config_map
    config = bytearray(model.config_size)
    at = 0
    for span in cmap.serial_number:
        config[span.offset : span.stop] = serial[at : at + span.size]
        at += span.size
    config[cmap.revision.offset : cmap.revision.stop] = model.revision
    config[cmap.i2c_enable] = 0x01
    factory = _DEFAULT_608_16_127 if model.family == FAMILY_ATECC608 else _DEFAULT_16_127
    config[cmap.read_only.stop :] = factory
    return config


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


def decode_address(zone: int, address: int, length: int, model: ChipModel = MODEL) -> ZoneAddress:
    """Decode param2 of Read/Write (facts 3.3) and check it fits the zone; 0x03 if not.

    For 32-byte access the word bits are ignored (as for the block-only address of the chip).
    A data address whose slot bits (3-7) name a slot past 15 is refused, never wrapped.
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
        size = model.config_size if zone == ZONE_CONFIG else model.otp_size
        offset = block * BLOCK_SIZE + word * WORD_SIZE
        if offset + length > size:
            raise ChipParseError(
                detail=f"address 0x{address:04X} (byte {offset}) beyond the {size}-byte zone"
            )
        return ZoneAddress(zone, 0, offset, length)
    if zone == ZONE_DATA:
        if address >> 12:
            raise ChipParseError(detail=f"data address 0x{address:04X} out of range")
        slot = (address >> 3) & 0x1F
        if slot >= model.slot_count:
            # Bit 7 would be slot bit 4: "slot 16" and above do not exist (the chip refuses
            # them; it does not wrap to slot 0).
            raise ChipParseError(detail=f"data address 0x{address:04X}: slot {slot} does not exist")
        block = (address >> 8) & 0x0F
        offset = block * BLOCK_SIZE + word * WORD_SIZE
        size = model.slot_sizes[slot]
        if offset >= size or (length == 4 and offset + 4 > size):
            raise ChipParseError(
                detail=f"address 0x{address:04X}: byte {offset} beyond slot {slot} ({size} bytes)"
            )
        return ZoneAddress(zone, slot, offset, min(length, size - offset))
    raise ChipParseError(detail=f"zone {zone} is not 0 (config), 1 (OTP) or 2 (data)")
