"""Reading datasheet fields out of config-zone bytes: serial number, SlotConfig, KeyConfig.

Plain lookups at the offsets of a :class:`~.chips.ChipModel`'s map (the ATECC508A unless told
otherwise); no checks beyond the slot number.
"""

from __future__ import annotations

from .bitfields import KeyConfig, SlotConfig
from .chips import ATECC508A, ChipModel, slot_size


def serial_number(config_zone: bytes | bytearray, model: ChipModel = ATECC508A) -> bytes:
    """The 9-byte serial number held in a config zone (ATECC508A: bytes 0-3 and 8-12)."""
    return b"".join(
        bytes(config_zone[span.offset : span.stop]) for span in model.config_map.serial_number
    )


def _word(config_zone: bytes | bytearray, offset: int) -> int:
    return int.from_bytes(config_zone[offset : offset + 2], "little")


def slot_config(
    config_zone: bytes | bytearray, slot: int, model: ChipModel = ATECC508A
) -> SlotConfig:
    """Slot ``slot``'s SlotConfig word (raises :class:`~.chips.NoSuchSlotError`)."""
    slot_size(slot, model)
    return SlotConfig(_word(config_zone, model.config_map.slot_config_offset(slot)))


def key_config(
    config_zone: bytes | bytearray, slot: int, model: ChipModel = ATECC508A
) -> KeyConfig:
    """Slot ``slot``'s KeyConfig word (raises :class:`~.chips.NoSuchSlotError`)."""
    slot_size(slot, model)
    return KeyConfig(_word(config_zone, model.config_map.key_config_offset(slot)))


def slot_locked(config_zone: bytes | bytearray, slot: int, model: ChipModel = ATECC508A) -> bool:
    """Whether slot ``slot`` is locked: its SlotLocked bit is 0."""
    slot_size(slot, model)
    span = model.config_map.slot_locked
    return not (int.from_bytes(config_zone[span.offset : span.stop], "little") >> slot) & 1
