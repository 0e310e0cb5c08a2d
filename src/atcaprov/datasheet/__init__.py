"""Datasheet facts of the supported CryptoAuthentication chips, in one place.

Zone sizes, slot sizes, the config-zone map, Info revisions (:mod:`.chips`), the SlotConfig /
KeyConfig bits (:mod:`.bitfields`) and reading them, and the serial number, out of config-zone
bytes (:mod:`.config_zone`). Data, not behaviour: host code (``device``, ``config``, the flow,
the server) and the emulator both take their facts from here, and this package imports nothing
of either (only :mod:`atcaprov.errors`).
"""

from __future__ import annotations

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
    LOCKED,
    MODELS,
    SERIAL_NUMBER_SIZE,
    SN_LAST,
    SN_PREFIX,
    UNLOCKED,
    WORD_SIZE,
    Atecc508aConfigMap,
    ChipModel,
    ConfigMap,
    NoSuchSlotError,
    Span,
    UnknownChipModelError,
    model_for_revision,
    model_named,
    slot_size,
)
from .config_zone import key_config, serial_number, slot_config, slot_locked

__all__ = [
    "ATECC508A",
    "ATECC508A_CONFIG_MAP",
    "BLOCK_SIZE",
    "KEY_TYPE_NOT_ECC",
    "KEY_TYPE_P256",
    "LOCKED",
    "MODELS",
    "SERIAL_NUMBER_SIZE",
    "SN_LAST",
    "SN_PREFIX",
    "UNLOCKED",
    "WORD_SIZE",
    "WRITE_CONFIG_ALWAYS",
    "WRITE_CONFIG_ENCRYPTED",
    "WRITE_CONFIG_GENKEY",
    "WRITE_CONFIG_PRIVWRITE",
    "Atecc508aConfigMap",
    "ChipModel",
    "ConfigMap",
    "KeyConfig",
    "NoSuchSlotError",
    "SlotConfig",
    "Span",
    "UnknownChipModelError",
    "key_config",
    "model_for_revision",
    "model_named",
    "serial_number",
    "slot_config",
    "slot_locked",
    "slot_size",
]
