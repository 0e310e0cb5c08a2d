"""Datasheet facts of the supported CryptoAuthentication chips, in one place.

Zone sizes, slot sizes, the config-zone map and Info revisions of each model (the types and the
ATECC508A in :mod:`.chips`, the ATECC608A/B in :mod:`.atecc608`, the list and lookups in
:mod:`.models`), the SlotConfig / KeyConfig bits (:mod:`.bitfields`) and reading them, and the
serial number, out of config-zone bytes (:mod:`.config_zone`), and the field name of every
config byte of a model (:mod:`.fields`). Data, not behaviour: host code (``device``,
``config``, the flow, the server) and the emulator both take their facts from here, and this
package imports nothing of either (only :mod:`atcaprov.errors`).
"""

from __future__ import annotations

from .atecc608 import (
    ATECC608_CONFIG_MAP,
    ATECC608A,
    ATECC608B,
    CHIP_MODE_CLOCK_DIVIDER_MASK,
    CHIP_MODE_I2C_ADDRESS_USER_EXTRA_ADD,
    CHIP_MODE_TTL_ENABLE,
    CLOCK_DIVIDER_M0,
    CLOCK_DIVIDER_M1,
    CLOCK_DIVIDER_M2,
    Atecc608ConfigMap,
)
from .bitfields import (
    KEY_TYPE_NOT_ECC,
    KEY_TYPE_P256,
    WRITE_CONFIG_ALWAYS,
    WRITE_CONFIG_ENCRYPTED,
    WRITE_CONFIG_GENKEY,
    WRITE_CONFIG_PRIVWRITE,
    KeyConfig,
    SlotConfig,
)
from .chips import (
    ATECC508A,
    ATECC508A_CONFIG_MAP,
    BLOCK_SIZE,
    CHIP_MODE_WATCHDOG_LONG,
    FAMILY_ATECC508A,
    FAMILY_ATECC608,
    LOCKED,
    SERIAL_NUMBER_SIZE,
    SN_LAST,
    SN_PREFIX,
    UNLOCKED,
    WATCHDOG_LONG_S,
    WATCHDOG_S,
    WORD_SIZE,
    Atecc508aConfigMap,
    ChipModel,
    ConfigMap,
    NoSuchSlotError,
    Span,
    UnknownChipModelError,
    slot_size,
)
from .config_zone import key_config, serial_number, slot_config, slot_locked
from .fields import FieldDifference, config_field_names, fields_differing
from .models import MODELS, model_for_revision, model_named

__all__ = [
    "ATECC508A",
    "ATECC508A_CONFIG_MAP",
    "ATECC608A",
    "ATECC608B",
    "ATECC608_CONFIG_MAP",
    "BLOCK_SIZE",
    "CHIP_MODE_CLOCK_DIVIDER_MASK",
    "CHIP_MODE_I2C_ADDRESS_USER_EXTRA_ADD",
    "CHIP_MODE_TTL_ENABLE",
    "CHIP_MODE_WATCHDOG_LONG",
    "CLOCK_DIVIDER_M0",
    "CLOCK_DIVIDER_M1",
    "CLOCK_DIVIDER_M2",
    "FAMILY_ATECC508A",
    "FAMILY_ATECC608",
    "KEY_TYPE_NOT_ECC",
    "KEY_TYPE_P256",
    "LOCKED",
    "MODELS",
    "SERIAL_NUMBER_SIZE",
    "SN_LAST",
    "SN_PREFIX",
    "UNLOCKED",
    "WATCHDOG_LONG_S",
    "WATCHDOG_S",
    "WORD_SIZE",
    "WRITE_CONFIG_ALWAYS",
    "WRITE_CONFIG_ENCRYPTED",
    "WRITE_CONFIG_GENKEY",
    "WRITE_CONFIG_PRIVWRITE",
    "Atecc508aConfigMap",
    "Atecc608ConfigMap",
    "ChipModel",
    "ConfigMap",
    "FieldDifference",
    "KeyConfig",
    "NoSuchSlotError",
    "SlotConfig",
    "Span",
    "UnknownChipModelError",
    "config_field_names",
    "fields_differing",
    "key_config",
    "model_for_revision",
    "model_named",
    "serial_number",
    "slot_config",
    "slot_locked",
    "slot_size",
]
