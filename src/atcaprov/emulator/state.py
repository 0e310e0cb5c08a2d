"""State of an emulated part: the persistent zones and the volatile registers.

``Memory`` is what survives power loss (and what :mod:`atcaprov.emulator.persist` saves):
config, OTP and the 16 data slots. ECC private keys live inside their slot as on the chip
(``00 00 00 00 | d (32, big-endian)``); no command ever returns those bytes.
``Volatile`` is lost at sleep or watchdog expiry: TempKey, the authorization, the SHA or
HMAC/SHA context, and on a 608 the Message Digest Buffer and the Alternate Key Buffer.
``ChipState`` bundles both with the chip model, the random source and the helpers the command
handlers share.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec

from ..datasheet import (
    LOCKED,
    ChipModel,
    ConfigMap,
    KeyConfig,
    SlotConfig,
    key_config,
    serial_number,
    slot_config,
    slot_locked,
)
from .zones import MODEL

if TYPE_CHECKING:
    from hashlib import _Hash

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
RANDOM_BEFORE_CONFIG_LOCK = b"\xff\xff\x00\x00" * 8


@dataclass
class TempKey:
    """The TempKey register and its flags."""

    value: bytes = bytes(32)
    upper: bytes = bytes(32)
    """The 608's TempKey is 64 bytes: the upper half, set by a 64-byte Nonce (unused here)."""
    valid: bool = False
    key_id: int = 0
    source_flag: int = 0  # 0 = random (Nonce random mode), 1 = input (pass-through)
    gen_dig_data: bool = False
    gen_key_data: bool = False
    no_mac: bool = False

    def clear(self) -> None:
        self.value = bytes(32)
        self.upper = bytes(32)
        self.valid = False
        self.key_id = 0
        self.source_flag = 0
        self.gen_dig_data = False
        self.gen_key_data = False
        self.no_mac = False

    def load(self, value: bytes, *, source_flag: int) -> None:
        """Replace TempKey (Nonce): flags other than SourceFlag are cleared. A 64-byte value
        (608) fills the upper half too."""
        self.clear()
        self.value = bytes(value[:32])
        if len(value) > 32:
            self.upper = bytes(value[32:64])
        self.source_flag = source_flag
        self.valid = True

    def flags_byte(self) -> int:
        """b0-3 KeyID, b4 SourceFlag, b5 GenDigData, b6 GenKeyData, b7 NoMacFlag."""
        return (
            (self.key_id & 0x0F)
            | (self.source_flag & 1) << 4
            | int(self.gen_dig_data) << 5
            | int(self.gen_key_data) << 6
            | int(self.no_mac) << 7
        )


@dataclass
class Memory:
    """The EEPROM: config (128), OTP (64) and the 16 data slots (36/416/72 bytes)."""

    config: bytearray
    otp: bytearray = field(default_factory=lambda: bytearray(b"\xff" * MODEL.otp_size))
    slots: list[bytearray] = field(
        default_factory=lambda: [bytearray(size) for size in MODEL.slot_sizes]
    )

    @classmethod
    def blank(cls, config: bytearray, model: ChipModel) -> Memory:
        """``config`` with the erased OTP (all FF) and zeroed slots of ``model``."""
        return cls(
            config=config,
            otp=bytearray(b"\xff" * model.otp_size),
            slots=[bytearray(size) for size in model.slot_sizes],
        )


@dataclass
class Volatile:
    """SRAM state, lost at sleep and watchdog expiry (kept in idle)."""

    tempkey: TempKey = field(default_factory=TempKey)
    auth_key: int | None = None  # slot whose CheckMac succeeded (authorization), if any
    sha: _Hash | hmac.HMAC | None = None  # SHA or HMAC/SHA context (SHA command)
    msg_digest: bytes | None = None
    """608: the Message Digest Buffer (64 bytes; the message is the lower 32), None = empty."""
    alt_key: bytes | None = None
    """608: the Alternate Key Buffer (32 bytes), None = empty."""

    def clear(self) -> None:
        self.tempkey.clear()
        self.auth_key = None
        self.sha = None
        self.msg_digest = None
        self.alt_key = None


class ChipState:
    """Memory + volatile state + model + random source, with the queries command handlers
    share."""

    def __init__(
        self, memory: Memory, random_bytes: Callable[[int], bytes], model: ChipModel = MODEL
    ) -> None:
        self.memory = memory
        self.model = model
        self.volatile = Volatile()
        self._random_bytes = random_bytes

    # ---- identity and locks -----------------------------------------------------------------
    @property
    def config(self) -> bytearray:
        return self.memory.config

    @property
    def cmap(self) -> ConfigMap:
        """The config-zone map of the model."""
        return self.model.config_map

    @property
    def serial(self) -> bytes:
        return serial_number(self.memory.config, self.model)

    @property
    def config_locked(self) -> bool:
        return self.memory.config[self.cmap.lock_config] == LOCKED

    @property
    def data_locked(self) -> bool:
        return self.memory.config[self.cmap.lock_value] == LOCKED

    def slot_locked(self, slot: int) -> bool:
        return slot_locked(self.memory.config, slot, self.model)

    def slot_config(self, slot: int) -> SlotConfig:
        return slot_config(self.memory.config, slot, self.model)

    def key_config(self, slot: int) -> KeyConfig:
        return key_config(self.memory.config, slot, self.model)

    # ---- randomness ----------------------------------------------------------------------
    def random32(self) -> bytes:
        """32 random bytes; the fixed FF FF 00 00 pattern while the config zone is unlocked."""
        if not self.config_locked:
            return RANDOM_BEFORE_CONFIG_LOCK
        return self.random_bytes(32)

    def random_bytes(self, n: int) -> bytes:
        out = self._random_bytes(n)
        if len(out) != n:
            raise ValueError(f"random source returned {len(out)} bytes, {n} requested")
        return out

    # ---- ECC private keys (stored in their slot) ------------------------------------------------
    def private_scalar(self, slot: int) -> int | None:
        """The private key scalar held in ``slot``, or None if the bytes are not a valid key."""
        raw = self.memory.slots[slot]
        d = int.from_bytes(raw[4:36], "big")
        if raw[0:4] != b"\x00\x00\x00\x00" or not 0 < d < P256_ORDER:
            return None
        return d

    def private_key(self, slot: int) -> ec.EllipticCurvePrivateKey | None:
        d = self.private_scalar(slot)
        if d is None:
            return None
        return ec.derive_private_key(d, ec.SECP256R1())

    def store_private_key(self, slot: int, d: int) -> None:
        raw = self.memory.slots[slot]
        raw[0:36] = b"\x00\x00\x00\x00" + d.to_bytes(32, "big")

    def new_private_key(self, slot: int) -> ec.EllipticCurvePrivateKey:
        """Generate a fresh P-256 key from the random source and store it in ``slot``."""
        for _ in range(64):  # a 256-bit draw is >= n with probability ~2^-32
            d = int.from_bytes(self.random_bytes(32), "big")
            if 0 < d < P256_ORDER:
                self.store_private_key(slot, d)
                return ec.derive_private_key(d, ec.SECP256R1())
        raise ValueError("random source gave no valid P-256 scalar in 64 draws")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
