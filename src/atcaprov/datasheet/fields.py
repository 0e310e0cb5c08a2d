"""Names of the config-zone bytes of each model, and where two models' maps differ in meaning.

:func:`config_field_names` labels every config byte of a model with the datasheet name of its
field (``SlotConfig[3]``, ``CountMatch``, ``reserved``...); :func:`fields_differing` lists the
byte ranges whose meaning differs between two models, e.g. a 508A's OTPmode at byte 18 that is
CountMatch on a 608. A field the 608 redefined under the same name (ChipMode, AN3539 table 3-1)
is labelled with the family, so it counts as different.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .atecc608 import Atecc608ConfigMap
from .chips import ChipModel, ConfigMap, Span

_NAMES = {
    "serial_number": "SN",
    "revision": "RevNum",
    "i2c_enable": "I2C_Enable",
    "i2c_address": "I2C_Address",
    "chip_mode": "ChipMode",
    "slot_config": "SlotConfig",
    "counters": "Counter",
    "user_extra": "UserExtra",
    "lock_value": "LockValue",
    "lock_config": "LockConfig",
    "slot_locked": "SlotLocked",
    "x509_format": "X509format",
    "key_config": "KeyConfig",
    "otp_mode": "OTPmode",
    "selector": "Selector",
    "last_key_use": "LastKeyUse",
    "rfu": "RFU",
    "aes_enable": "AES_Enable",
    "count_match": "CountMatch",
    "use_lock": "UseLock",
    "volatile_key_permission": "VolatileKeyPermission",
    "secure_boot": "SecureBoot",
    "kdf_iv_loc": "KdfIvLoc",
    "kdf_iv_str": "KdfIvStr",
    "reserved": "reserved",
    "user_extra_add": "UserExtraAdd",
    "chip_options": "ChipOptions",
}
_META = frozenset({"read_only", "not_by_write"})
_REDEFINED: dict[type[ConfigMap], frozenset[str]] = {
    Atecc608ConfigMap: frozenset({"chip_mode"}),  # clock divider, UserExtraAdd address bit
}
_WORD_FIELDS = frozenset({"slot_config", "key_config"})


def _spans(value: object) -> list[Span]:
    if isinstance(value, int):
        return [Span(value, 1)]
    if isinstance(value, Span):
        return [value]
    if isinstance(value, tuple):
        return [span for span in value if isinstance(span, Span)]
    return []


def config_field_names(model: ChipModel) -> tuple[str, ...]:
    """The name of the field each config byte of ``model`` belongs to, by offset."""
    cmap = model.config_map
    names = ["reserved"] * model.config_size
    redefined = _REDEFINED.get(type(cmap), frozenset())
    for field in dataclasses.fields(cmap):
        if field.name in _META:
            continue
        label = _NAMES.get(field.name, field.name)
        if field.name in redefined:
            label = f"{label} ({model.family})"
        spans = _spans(getattr(cmap, field.name))
        for index, span in enumerate(spans):
            for offset in span.offsets:
                if field.name in _WORD_FIELDS:
                    names[offset] = f"{label}[{(offset - span.offset) // 2}]"
                elif field.name == "counters":
                    names[offset] = f"{label}[{index}]"
                else:
                    names[offset] = label
    return tuple(names)


@dataclass(frozen=True)
class FieldDifference:
    """Bytes ``span`` of the config zone: ``first`` in one model, ``second`` in the other."""

    span: Span
    first: str
    second: str

    def describe(self) -> str:
        where = (
            f"byte {self.span.offset}"
            if self.span.size == 1
            else f"bytes {self.span.offset}-{self.span.stop - 1}"
        )
        return f"{where}: {self.first} / {self.second}"


def fields_differing(first: ChipModel, second: ChipModel) -> list[FieldDifference]:
    """Byte ranges whose field differs between ``first`` and ``second`` (adjacent bytes with
    the same pair of names merged), in offset order; empty for two models with one map."""
    a, b = config_field_names(first), config_field_names(second)
    out: list[FieldDifference] = []
    for offset in range(min(len(a), len(b))):
        if a[offset] == b[offset]:
            continue
        names = (a[offset], b[offset])
        last = out[-1] if out else None
        if last and last.span.stop == offset and (last.first, last.second) == names:
            out[-1] = FieldDifference(Span(last.span.offset, last.span.size + 1), *names)
        else:
            out.append(FieldDifference(Span(offset, 1), *names))
    return out
