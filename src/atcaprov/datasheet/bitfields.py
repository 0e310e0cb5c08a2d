"""The SlotConfig and KeyConfig words of a slot, decoded bit by bit.

Both are 16-bit little-endian words in the config zone (where: :class:`~.chips.ConfigMap`).
The classes only name bits; what a command does with them belongs to the chip (emulator) or to
the host flow.
"""

from __future__ import annotations

from dataclasses import dataclass

KEY_TYPE_P256 = 4
"""KeyConfig.KeyType of a NIST P-256 key."""
KEY_TYPE_NOT_ECC = 7
"""KeyConfig.KeyType of a slot that holds no ECC key (data, SHA/HMAC secret)."""

WRITE_CONFIG_GENKEY = 0x2
"""Private-key slots: WriteConfig bit 1 (SlotConfig bit 13), GenKey may write a random key."""
WRITE_CONFIG_PRIVWRITE = 0x4
"""Private-key slots: WriteConfig bit 2 (SlotConfig bit 14), encrypted PrivWrite allowed."""
WRITE_CONFIG_ENCRYPTED = 0x4
"""Other slots: WriteConfig ``x1xx``, Write must be encrypted."""
WRITE_CONFIG_ALWAYS = frozenset({0b0000, 0b0001})
"""Other slots: WriteConfig values with which Write in the clear is always allowed
(``0001`` = PubInvalid)."""


@dataclass(frozen=True)
class SlotConfig:
    """A slot's 16-bit SlotConfig (``raw``)."""

    raw: int

    @property
    def read_key(self) -> int:
        """Bits 0-3: key for encrypted reads (general slots); sign/ECDH flags for key slots."""
        return self.raw & 0x0F

    @property
    def external_sign(self) -> bool:
        """Private key slots: bit 0, Sign of an external message allowed."""
        return bool(self.raw & 0x0001)

    @property
    def internal_sign(self) -> bool:
        """Private key slots: bit 1, Sign of an internal message allowed."""
        return bool(self.raw & 0x0002)

    @property
    def ecdh(self) -> bool:
        """Private key slots: bit 2, ECDH allowed."""
        return bool(self.raw & 0x0004)

    @property
    def ecdh_to_slot(self) -> bool:
        """Private key slots: bit 3, ECDH result written to slot n+1."""
        return bool(self.raw & 0x0008)

    @property
    def no_mac(self) -> bool:
        return bool(self.raw & 0x0010)

    @property
    def limited_use(self) -> bool:
        return bool(self.raw & 0x0020)

    @property
    def encrypt_read(self) -> bool:
        return bool(self.raw & 0x0040)

    @property
    def is_secret(self) -> bool:
        return bool(self.raw & 0x0080)

    @property
    def write_key(self) -> int:
        return (self.raw >> 8) & 0x0F

    @property
    def write_config(self) -> int:
        return (self.raw >> 12) & 0x0F

    # WriteConfig as seen by GenKey / PrivWrite on private-key slots.
    @property
    def genkey_allowed(self) -> bool:
        """Private key slots: WriteConfig bit 1 (bit 13), GenKey may create a random key."""
        return bool(self.write_config & WRITE_CONFIG_GENKEY)

    @property
    def privwrite_allowed(self) -> bool:
        """Private key slots: WriteConfig bit 2 (bit 14), encrypted PrivWrite allowed."""
        return bool(self.write_config & WRITE_CONFIG_PRIVWRITE)

    # WriteConfig as seen by the Write command on other slots.
    @property
    def write_always(self) -> bool:
        """WriteConfig 0000 or 0001 (PubInvalid): clear writes allowed."""
        return self.write_config in WRITE_CONFIG_ALWAYS

    @property
    def write_encrypted(self) -> bool:
        """WriteConfig x1xx: writes must be encrypted with WriteKey."""
        return bool(self.write_config & WRITE_CONFIG_ENCRYPTED)


@dataclass(frozen=True)
class KeyConfig:
    """A slot's 16-bit KeyConfig (``raw``)."""

    raw: int

    @property
    def private(self) -> bool:
        """Bit 0: the slot holds an ECC private key (never readable, not writable by Write)."""
        return bool(self.raw & 0x0001)

    @property
    def pub_info(self) -> bool:
        return bool(self.raw & 0x0002)

    @property
    def key_type(self) -> int:
        """Bits 2-4: 4 = P-256, 7 = not an ECC key."""
        return (self.raw >> 2) & 0x07

    @property
    def lockable(self) -> bool:
        """Bit 5: the slot may be locked on its own (Lock slot)."""
        return bool(self.raw & 0x0020)

    @property
    def req_random(self) -> bool:
        return bool(self.raw & 0x0040)

    @property
    def req_auth(self) -> bool:
        return bool(self.raw & 0x0080)

    @property
    def auth_key(self) -> int:
        return (self.raw >> 8) & 0x0F

    @property
    def intrusion_disable(self) -> bool:
        """Bit 12 (ATECC508A: IntrusionDisable)."""
        return bool(self.raw & 0x1000)

    @property
    def x509_id(self) -> int:
        return (self.raw >> 14) & 0x03

    @property
    def is_p256(self) -> bool:
        return self.key_type == KEY_TYPE_P256

    @property
    def is_p256_private(self) -> bool:
        return self.private and self.is_p256
