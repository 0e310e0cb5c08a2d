"""Chip model types, the facts every ATECC part shares, and the ATECC508A model.

Data only. A :class:`ChipModel` says how big the zones of one part are, where each config-zone
field lies (:class:`ConfigMap`, with a subclass per map for the bytes the models use
differently) and which Info(Revision) answers identify it. The ATECC508A lives here; the
ATECC608A/B in :mod:`.atecc608`; :mod:`.models` lists them all (``MODELS``) and looks them up.

Facts that hold for every ATECC part (serial-number fixed bytes, lock byte values, block and
word sizes of Read/Write, the watchdog bit of ChipMode) are module constants.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

from ..errors import AtcaprovError, BadParamError

SERIAL_NUMBER_SIZE = 9
SN_PREFIX = b"\x01\x23"
"""SN[0:2] of every ATECC part."""
SN_LAST = 0xEE
"""SN[8] of every ATECC part."""

LOCKED = 0x00
"""LockValue / LockConfig byte of a locked zone."""
UNLOCKED = 0x55
"""LockValue / LockConfig byte of an unlocked zone."""

BLOCK_SIZE = 32
"""Bytes of a 32-byte Read/Write (one block of a zone)."""
WORD_SIZE = 4
"""Bytes of a 4-byte Read/Write (one word of a block)."""

CHIP_MODE_WATCHDOG_LONG = 0x04
"""ChipMode bit 2: watchdog of about 13 s instead of 1.3 s (508A and 608)."""
WATCHDOG_S = 1.3
"""tWATCHDOG: an awake chip goes to sleep this long after its wake (ChipMode bit 2 clear)."""
WATCHDOG_LONG_S = 13.0
"""tWATCHDOG with ChipMode bit 2 set."""

FAMILY_ATECC508A = "ATECC508A"
FAMILY_ATECC608 = "ATECC608"
"""Device families as CryptoAuthLib names them (``ATECC608`` covers the 608A and the 608B)."""


class UnknownChipModelError(AtcaprovError):
    """No supported chip model has this name or Info revision."""


class NoSuchSlotError(BadParamError, ValueError):
    """A data slot number the chip model does not have."""


@dataclass(frozen=True)
class Span:
    """``size`` bytes from ``offset`` of a zone."""

    offset: int
    size: int

    @property
    def stop(self) -> int:
        """The offset just past the span."""
        return self.offset + self.size

    @property
    def offsets(self) -> range:
        return range(self.offset, self.stop)


@dataclass(frozen=True)
class ConfigMap:
    """Offsets of the config-zone fields every supported model has at the same place.

    Single bytes are plain offsets; longer fields are :class:`Span`. ``slot_config`` and
    ``key_config`` hold one 16-bit little-endian word per slot.
    """

    serial_number: tuple[Span, ...]
    """Where SN[0..8] lies, in serial-number order."""
    revision: Span
    i2c_enable: int
    i2c_address: int
    chip_mode: int
    slot_config: Span
    counters: tuple[Span, ...]
    user_extra: int
    lock_value: int
    """LockValue: data and OTP zones lock byte."""
    lock_config: int
    """LockConfig: config zone lock byte."""
    slot_locked: Span
    """SlotLocked: bit n is 0 when slot n is locked (low byte = slots 0-7)."""
    x509_format: Span
    key_config: Span
    read_only: Span
    """Bytes no command ever writes (serial number, revision, ...)."""
    not_by_write: Span
    """Bytes Write never touches: set only by UpdateExtra and Lock."""

    def slot_config_offset(self, slot: int) -> int:
        """Offset of slot ``slot``'s SlotConfig word."""
        return self.slot_config.offset + 2 * slot

    def key_config_offset(self, slot: int) -> int:
        """Offset of slot ``slot``'s KeyConfig word."""
        return self.key_config.offset + 2 * slot


@dataclass(frozen=True)
class Atecc508aConfigMap(ConfigMap):
    """The ATECC508A map: the common fields plus the bytes other models use differently."""

    otp_mode: int
    selector: int
    last_key_use: Span
    rfu: Span
    """Reserved, must be 0."""


@dataclass(frozen=True)
class ChipModel:
    """One chip model: zone sizes, config-zone map, Info revisions."""

    name: str
    info_revisions: tuple[bytes, ...]
    """Info(Revision) answers of this model; the first is what an emulated part answers."""
    config_size: int
    otp_size: int
    slot_sizes: tuple[int, ...]
    """Bytes of each data slot, by slot number."""
    config_map: ConfigMap
    family: str = ""
    """CryptoAuthLib's device type for this model (``ATECC608`` for both 608s); the name if
    not given."""
    later_revisions: bool = False
    """Revisions with the first three bytes of ``info_revisions[0]`` and a larger fourth byte
    identify this model too (Microchip: the 608B's fourth byte may grow over time)."""

    def __post_init__(self) -> None:
        if not self.family:
            object.__setattr__(self, "family", self.name)

    @property
    def slot_count(self) -> int:
        return len(self.slot_sizes)

    @property
    def revision(self) -> bytes:
        """What Info(Revision) answers on an emulated part (and its config bytes 4-7)."""
        return self.info_revisions[0]

    def identified_by(self, revision: bytes) -> bool:
        """Whether an Info(Revision) answer of 4 bytes is this model's."""
        revision = bytes(revision)
        if revision in self.info_revisions:
            return True
        first = self.info_revisions[0]
        return (
            self.later_revisions
            and len(revision) == len(first)
            and revision[:-1] == first[:-1]
            and revision[-1] > first[-1]
        )

    @property
    def config_writable(self) -> frozenset[int]:
        """Config offsets Write may set while the config zone is unlocked."""
        cmap = self.config_map
        never = set(cmap.read_only.offsets) | set(cmap.not_by_write.offsets)
        return frozenset(i for i in range(self.config_size) if i not in never)


SHARED_CONFIG_MAP = ConfigMap(
    serial_number=(Span(0, 4), Span(8, 5)),
    revision=Span(4, 4),
    i2c_enable=14,
    i2c_address=16,
    chip_mode=19,
    slot_config=Span(20, 32),
    counters=(Span(52, 8), Span(60, 8)),
    user_extra=84,
    lock_value=86,
    lock_config=87,
    slot_locked=Span(88, 2),
    x509_format=Span(92, 4),
    key_config=Span(96, 32),
    read_only=Span(0, 16),
    not_by_write=Span(84, 4),
)
"""The offsets every supported model has at the same place; each model's map extends it."""

_M = TypeVar("_M", bound=ConfigMap)


def extend_config_map(cls: type[_M], **own: Any) -> _M:
    """A model's config map: :data:`SHARED_CONFIG_MAP` plus the model's own fields ``own``."""
    shared = {f.name: getattr(SHARED_CONFIG_MAP, f.name) for f in fields(ConfigMap)}
    return cls(**shared, **own)


ATECC508A_CONFIG_MAP = extend_config_map(
    Atecc508aConfigMap,
    otp_mode=18,
    selector=85,
    last_key_use=Span(68, 16),
    rfu=Span(90, 2),
)

ATECC508A = ChipModel(
    name="ATECC508A",
    info_revisions=(b"\x00\x00\x50\x00",),
    config_size=128,
    otp_size=64,
    slot_sizes=(36,) * 8 + (416,) + (72,) * 7,
    config_map=ATECC508A_CONFIG_MAP,
    family=FAMILY_ATECC508A,
)


def slot_size(slot: int, model: ChipModel = ATECC508A) -> int:
    """Bytes in data slot ``slot`` of ``model`` (ATECC508A: 36 for 0-7, 416 for 8, 72 for 9-15).

    Raises :class:`NoSuchSlotError` (a ``BadParamError`` and a ``ValueError``) for a slot the
    model does not have.
    """
    if not isinstance(slot, int) or not 0 <= slot < model.slot_count:
        raise NoSuchSlotError(f"slot {slot!r} out of range 0..{model.slot_count - 1}")
    return model.slot_sizes[slot]
