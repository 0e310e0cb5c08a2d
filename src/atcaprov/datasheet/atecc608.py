"""The ATECC608A and ATECC608B: their config-zone map, ChipMode bits and Info revisions.

Data only. Sources: CryptoAuthLib's ``atecc608_config_t`` (``lib/calib/calib_device.h``) for
the map, Microchip's application note AN3539 "Migrating from the ATECC508A to the ATECC608B"
(tables 3-1 and 4-1) for what each 608 byte means and the values that make a 608 behave like
a 508A, ``calib_command.h`` for the ChipMode bits, and the facts file (section 3.10) for the
revisions. Zone and slot sizes are the 508A's (``calib_get_zone_size`` treats both alike).

Where the 608 map differs from the 508A's: byte 13 AES_Enable (reserved on the 508A), 18
CountMatch (OTPmode), 68-83 UseLock, VolatileKeyPermission, SecureBoot, KdfIvLoc, KdfIvStr and
9 reserved bytes (LastKeyUse), 85 UserExtraAdd (Selector), 90-91 ChipOptions (RFU), and
ChipMode bits 0 and 3-7. The 608 has no OTPmode byte: its OTP zone has no consumption mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from .chips import FAMILY_ATECC608, ChipModel, ConfigMap, Span, extend_config_map

CHIP_MODE_I2C_ADDRESS_USER_EXTRA_ADD = 0x01
"""ChipMode bit 0 (608): the I2C address is UserExtraAdd (byte 85), not I2C_Address."""
CHIP_MODE_TTL_ENABLE = 0x02
"""ChipMode bit 1: input levels follow VCC (TTL) instead of a fixed reference."""
CHIP_MODE_CLOCK_DIVIDER_MASK = 0xF8
"""ChipMode bits 3-7 (608): the clock divider; longer execution times, lower power."""
CLOCK_DIVIDER_M0 = 0x00
CLOCK_DIVIDER_M1 = 0x28
CLOCK_DIVIDER_M2 = 0x68
"""ChipMode & 0xF8 for the three clock dividers CryptoAuthLib knows (``ATCA_CHIPMODE_*``)."""


@dataclass(frozen=True)
class Atecc608ConfigMap(ConfigMap):
    """The ATECC608A/B map: the common fields plus the bytes only the 608 has."""

    aes_enable: int
    """Byte 13: bit 0 enables the AES command and KDF's AES mode (factory-set: in 0-15)."""
    count_match: int
    """Byte 18: CountMatch enable and the slot of the counter-match key."""
    use_lock: int
    """Byte 68: transport lock (enable and transport key slot)."""
    volatile_key_permission: int
    """Byte 69: volatile key permission (enable and slot)."""
    secure_boot: Span
    """Bytes 70-71: secure boot mode, persistent latch, digest and public key slots."""
    kdf_iv_loc: int
    """Byte 72: where KDF's HKDF inserts the IV string."""
    kdf_iv_str: Span
    """Bytes 73-74: the KDF IV string."""
    reserved: Span
    """Bytes 75-83: reserved."""
    user_extra_add: int
    """Byte 85: alternative I2C address (ChipMode bit 0), set by UpdateExtra mode 1."""
    chip_options: Span
    """Bytes 90-91: power-on self test, IO protection key, KDF AES, ECDH/KDF output rules."""


ATECC608_CONFIG_MAP = extend_config_map(
    Atecc608ConfigMap,
    aes_enable=13,
    count_match=18,
    use_lock=68,
    volatile_key_permission=69,
    secure_boot=Span(70, 2),
    kdf_iv_loc=72,
    kdf_iv_str=Span(73, 2),
    reserved=Span(75, 9),
    user_extra_add=85,
    chip_options=Span(90, 2),
)

_SLOT_SIZES = (36,) * 8 + (416,) + (72,) * 7

ATECC608A = ChipModel(
    name="ATECC608A",
    info_revisions=(b"\x00\x00\x60\x02",),
    config_size=128,
    otp_size=64,
    slot_sizes=_SLOT_SIZES,
    config_map=ATECC608_CONFIG_MAP,
    family=FAMILY_ATECC608,
)

ATECC608B = ChipModel(
    name="ATECC608B",
    info_revisions=(b"\x00\x00\x60\x03",),
    config_size=128,
    otp_size=64,
    slot_sizes=_SLOT_SIZES,
    config_map=ATECC608_CONFIG_MAP,
    family=FAMILY_ATECC608,
    later_revisions=True,
)
