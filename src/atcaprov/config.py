"""The 128-byte config zone: the default, the ``--config`` text file, decoded views, flow checks.

* :data:`DEFAULT_CONFIG` is the app note's "Default ATECC508A Configuration" (section 3.5), the
  config the client writes when no ``--config`` file is given.
* :func:`parse_config_text` / :func:`load_config_file` read the config file format: ASCII hex,
  128 bytes, any whitespace and line breaks. Errors name file, line, column and byte number.
  The first 16 bytes must be present but are ignored (that part of the zone is not writable).
* :class:`ConfigZone` decodes the fields (map in ``docs/config.md``); the offsets, slot sizes
  and the :class:`SlotConfig` / :class:`KeyConfig` bits are the ATECC508A's from
  :mod:`atcaprov.datasheet`, re-exported here under their old names.
* :func:`check_config_for_flow` refuses, before anything is written to a chip, a config with
  which the provisioning flow cannot succeed (device key slot cannot hold a generated P-256
  key, certificate slots too small or private, ...).

Pure functions over bytes and text; only :func:`load_config_file` touches the file system.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .datasheet import ATECC508A, ATECC508A_CONFIG_MAP
from .datasheet import KEY_TYPE_NOT_ECC as KEY_TYPE_NOT_ECC
from .datasheet import KEY_TYPE_P256 as KEY_TYPE_P256
from .datasheet import LOCKED as LOCKED
from .datasheet import UNLOCKED as UNLOCKED
from .datasheet import WRITE_CONFIG_GENKEY as WRITE_CONFIG_GENKEY
from .datasheet import WRITE_CONFIG_PRIVWRITE as WRITE_CONFIG_PRIVWRITE
from .datasheet import KeyConfig as KeyConfig
from .datasheet import SlotConfig as SlotConfig
from .datasheet import key_config as _key_config
from .datasheet import serial_number as _serial_number
from .datasheet import slot_config as _slot_config
from .datasheet import slot_locked as _slot_locked
from .datasheet import slot_size as slot_size
from .errors import AtcaprovError

# The ATECC508A's datasheet facts under the names this module has always exported.
_MAP = ATECC508A_CONFIG_MAP
CONFIG_SIZE = ATECC508A.config_size
NUM_SLOTS = ATECC508A.slot_count
IGNORED_PREFIX = _MAP.read_only.stop
"""Bytes 0-15 (serial number, revision, I2C_Enable...) are read-only; a file's are ignored."""

SLOT_CONFIG_OFFSET = _MAP.slot_config.offset
KEY_CONFIG_OFFSET = _MAP.key_config.offset
USER_EXTRA_OFFSET = _MAP.user_extra
SELECTOR_OFFSET = _MAP.selector
LOCK_VALUE_OFFSET = _MAP.lock_value
LOCK_CONFIG_OFFSET = _MAP.lock_config
SLOT_LOCKED_OFFSET = _MAP.slot_locked.offset

NOT_WRITTEN = frozenset(range(CONFIG_SIZE)) - ATECC508A.config_writable
"""Config offsets the config write never touches (0-15 read-only; 84-87 by UpdateExtra/Lock)."""

DEFAULT_CONFIG_TEXT = """\
00 00 00 00 00 00 00 00  00 00 00 00 00 00 01 00
C0 00 AA 00 8F 20 C4 44  87 20 C4 44 8F 0F 8F 8F
9F 8F 82 20 C4 44 C4 44  0F 0F 0F 0F 0F 0F 0F 0F
0F 0F 0F 0F FF FF FF FF  00 00 00 00 FF FF FF FF
00 00 00 00 FF FF FF FF  FF FF FF FF FF FF FF FF
FF FF FF FF 00 00 55 55  FF FF 00 00 00 00 00 00
33 00 5C 00 13 00 5C 00  3C 00 1C 00 1C 00 33 00
1C 00 1C 00 3C 00 3C 00  3C 00 3C 00 1C 00 3C 00
"""
"""App note 8971A section 3.5, "Example: Default ATECC508A Configuration", in its own layout."""


class ConfigError(AtcaprovError):
    """A config file that does not parse, or a config the provisioning flow cannot use.

    ``offset`` is the config byte concerned (None if the problem is not one byte); for file
    errors ``filename``, ``line`` and ``column`` (1-based) say where.
    """

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        filename: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.offset = offset
        self.filename = filename
        self.line = line
        self.column = column
        super().__init__(message)


# --------------------------------------------------------------------------------------------
# Config file text
# --------------------------------------------------------------------------------------------
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def parse_config_text(text: str, filename: str = "<config>") -> bytes:
    """The 128 bytes of a config file: ASCII hex, bytes separated by any whitespace.

    A byte is two hex digits; digits of several bytes may also run together (``C000AA00``).
    Raises :class:`ConfigError` naming ``filename:line:column`` and the byte number for a
    character that is not a hex digit, a group with an odd number of digits, more than 128
    bytes; and the count found for fewer than 128. Bytes 0-15 must be present; their values are
    kept in the result but never written to a device.
    """
    out = bytearray()
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines()
    for line_no, line in enumerate(lines, start=1):
        col = 0
        while col < len(line):
            if line[col].isspace():
                col += 1
                continue
            start = col
            while col < len(line) and not line[col].isspace():
                char = line[col]
                if char not in _HEX_DIGITS:
                    raise ConfigError(
                        f"{filename}:{line_no}:{col + 1}: {char!r} is not a hex digit"
                        f" (in byte {len(out) + (col - start) // 2}; expected hex digits 0-9,"
                        " A-F separated by whitespace)",
                        offset=len(out) + (col - start) // 2,
                        filename=filename,
                        line=line_no,
                        column=col + 1,
                    )
                col += 1
            group = line[start:col]
            if len(group) % 2:
                byte_no = len(out) + len(group) // 2
                raise ConfigError(
                    f"{filename}:{line_no}:{start + 1}: {group!r} has an odd number of hex"
                    f" digits ({len(group)}): byte {byte_no} has only one digit, expected two",
                    offset=byte_no,
                    filename=filename,
                    line=line_no,
                    column=start + 1,
                )
            for i in range(0, len(group), 2):
                if len(out) == CONFIG_SIZE:
                    raise ConfigError(
                        f"{filename}:{line_no}:{start + i + 1}: byte {CONFIG_SIZE}"
                        f" ({group[i : i + 2]}) is one too many: a config zone is exactly"
                        f" {CONFIG_SIZE} bytes",
                        offset=CONFIG_SIZE,
                        filename=filename,
                        line=line_no,
                        column=start + i + 1,
                    )
                out.append(int(group[i : i + 2], 16))
    if len(out) != CONFIG_SIZE:
        where = f"{filename}:{len(lines)}" if lines else filename
        raise ConfigError(
            f"{where}: file ends after {len(out)} bytes, expected exactly {CONFIG_SIZE}"
            f" (missing bytes {len(out)}..{CONFIG_SIZE - 1})",
            offset=len(out),
            filename=filename,
            line=len(lines) or None,
        )
    return bytes(out)


def load_config_file(path: str | os.PathLike[str]) -> bytes:
    """Read and parse a config file (see :func:`parse_config_text`)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            raw = fh.read(64 * 1024 + 1)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read config file: {exc.strerror or exc}") from exc
    if len(raw) > 64 * 1024:
        raise ConfigError(f"{name}: more than 64 KiB, not a config zone file", filename=name)
    # latin-1 never fails: a non-ASCII byte is then reported as "not a hex digit" with its place
    return parse_config_text(raw.decode("latin-1"), filename=name)


def format_config_text(config: bytes) -> str:
    """The config file text of 128 bytes, in the app note's layout (16 per line)."""
    data = _check_size(config)
    lines = []
    for row in range(0, CONFIG_SIZE, 16):
        left = " ".join(f"{b:02X}" for b in data[row : row + 8])
        right = " ".join(f"{b:02X}" for b in data[row + 8 : row + 16])
        lines.append(f"{left}  {right}\n")
    return "".join(lines)


def _check_size(config: bytes) -> bytes:
    data = bytes(config)
    if len(data) != CONFIG_SIZE:
        raise ConfigError(f"a config zone is {CONFIG_SIZE} bytes, got {len(data)}")
    return data


DEFAULT_CONFIG: bytes = parse_config_text(DEFAULT_CONFIG_TEXT, "<default config>")


# --------------------------------------------------------------------------------------------
# Decoded views
# --------------------------------------------------------------------------------------------
def slot_config_offset(slot: int) -> int:
    return _MAP.slot_config_offset(slot)


def key_config_offset(slot: int) -> int:
    return _MAP.key_config_offset(slot)


class ConfigZone:
    """Read-only field view of 128 config bytes (``raw``)."""

    def __init__(self, config: bytes) -> None:
        self.raw = _check_size(config)

    def slot_config(self, slot: int) -> SlotConfig:
        return _slot_config(self.raw, slot)

    def key_config(self, slot: int) -> KeyConfig:
        return _key_config(self.raw, slot)

    @property
    def serial_number(self) -> bytes:
        """The 9-byte serial number: bytes 0-3 and 8-12."""
        return _serial_number(self.raw)

    @property
    def revision(self) -> bytes:
        return self.raw[_MAP.revision.offset : _MAP.revision.stop]

    @property
    def i2c_enable(self) -> bool:
        return bool(self.raw[_MAP.i2c_enable] & 0x01)

    @property
    def i2c_address(self) -> int:
        return self.raw[_MAP.i2c_address]

    @property
    def otp_mode(self) -> int:
        return self.raw[_MAP.otp_mode]

    @property
    def chip_mode(self) -> int:
        return self.raw[_MAP.chip_mode]

    @property
    def user_extra(self) -> int:
        return self.raw[USER_EXTRA_OFFSET]

    @property
    def selector(self) -> int:
        return self.raw[SELECTOR_OFFSET]

    @property
    def lock_value(self) -> int:
        """Byte 86: 0x55 data/OTP zones unlocked, 0x00 locked."""
        return self.raw[LOCK_VALUE_OFFSET]

    @property
    def lock_config(self) -> int:
        """Byte 87: 0x55 config zone unlocked, 0x00 locked."""
        return self.raw[LOCK_CONFIG_OFFSET]

    @property
    def config_locked(self) -> bool:
        return self.lock_config == LOCKED

    @property
    def data_locked(self) -> bool:
        return self.lock_value == LOCKED

    def slot_locked(self, slot: int) -> bool:
        """Bit ``slot`` of bytes 88-89 is 0 when the slot is locked."""
        return _slot_locked(self.raw, slot)

    @property
    def x509_format(self) -> bytes:
        return self.raw[_MAP.x509_format.offset : _MAP.x509_format.stop]


def config_differences(expected: bytes, actual: bytes) -> list[int]:
    """Offsets of the bytes a config write sets (16-83, 88-127) whose values differ.

    Bytes 0-15 (read-only) and 84-87 (UserExtra, Selector, lock bytes) are not compared.
    """
    a, b = _check_size(expected), _check_size(actual)
    return [i for i in range(CONFIG_SIZE) if i not in NOT_WRITTEN and a[i] != b[i]]


# --------------------------------------------------------------------------------------------
# Flow checks
# --------------------------------------------------------------------------------------------
def _slot_fields(slot: int, zone: ConfigZone) -> str:
    sc, kc = zone.slot_config(slot), zone.key_config(slot)
    return (
        f"SlotConfig[{slot}] (bytes {slot_config_offset(slot)}-{slot_config_offset(slot) + 1})"
        f" = 0x{sc.raw:04X}, KeyConfig[{slot}] (bytes {key_config_offset(slot)}-"
        f"{key_config_offset(slot) + 1}) = 0x{kc.raw:04X}"
    )


def check_config_for_flow(
    config: bytes,
    *,
    device_key_slot: int,
    cert_slots: Mapping[int, int],
    signer_pubkey_slot: int | None,
    validate: bool = True,
) -> None:
    """Raise :class:`ConfigError` if the provisioning flow cannot work with ``config``.

    ``cert_slots`` maps each data slot the certificates use to the bytes needed in it (offset +
    count of what is stored there); ``signer_pubkey_slot`` is the slot of the signer public key
    (72-byte padded form) or None. With ``validate`` (the validation stage runs), the device key
    must allow external Sign without an authorization and certificate slots must be readable
    in the clear after the data zone is locked. The error names the slot, the config bytes and
    their value. Checks stop at the first problem.
    """
    zone = ConfigZone(config)
    if not 0 <= device_key_slot < NUM_SLOTS:
        raise ConfigError(f"device key slot {device_key_slot} is not a slot (0..15)")
    sc = zone.slot_config(device_key_slot)
    kc = zone.key_config(device_key_slot)
    where = _slot_fields(device_key_slot, zone)
    key_offset = key_config_offset(device_key_slot)
    slot_offset = slot_config_offset(device_key_slot)
    if not kc.private:
        raise ConfigError(
            f"device key slot {device_key_slot}: {where}: KeyConfig.Private (bit 0) is 0;"
            " the device key slot must hold an ECC private key (Private=1, KeyType=4 P-256)",
            offset=key_offset,
        )
    if kc.key_type != KEY_TYPE_P256:
        raise ConfigError(
            f"device key slot {device_key_slot}: {where}: KeyConfig.KeyType (bits 2-4) is"
            f" {kc.key_type}, expected {KEY_TYPE_P256} (P-256)",
            offset=key_offset,
        )
    if not sc.genkey_allowed:
        raise ConfigError(
            f"device key slot {device_key_slot}: {where}: SlotConfig.WriteConfig (bits 12-15)"
            f" is 0b{sc.write_config:04b}; GenKey needs bit 13 set to create the device key",
            offset=slot_offset + 1,
        )
    if validate and not sc.external_sign:
        raise ConfigError(
            f"device key slot {device_key_slot}: {where}: SlotConfig bit 0 (external Sign) is 0;"
            " certificate validation signs a challenge with the device key",
            offset=slot_offset,
        )
    if validate and kc.req_auth:
        raise ConfigError(
            f"device key slot {device_key_slot}: {where}: KeyConfig.ReqAuth (bit 7) is 1;"
            " Sign would need an authorization the flow cannot provide",
            offset=key_offset,
        )

    needs: dict[int, tuple[int, str]] = {}
    for slot, count in cert_slots.items():
        needs[slot] = (count, "certificate data")
    if signer_pubkey_slot is not None:
        if signer_pubkey_slot in needs:
            count, _ = needs[signer_pubkey_slot]
            needs[signer_pubkey_slot] = (max(count, 72), "certificate data and signer public key")
        else:
            needs[signer_pubkey_slot] = (72, "signer public key (72-byte padded form)")
    for slot in sorted(needs):
        count, what = needs[slot]
        if not 0 <= slot < NUM_SLOTS:
            raise ConfigError(f"slot {slot} for {what} is not a slot (0..15)")
        if slot == device_key_slot:
            raise ConfigError(
                f"slot {slot} is both the device key slot and used for {what}",
                offset=key_config_offset(slot),
            )
        size = slot_size(slot)
        if count > size:
            raise ConfigError(
                f"slot {slot} is {size} bytes, {what} needs {count}"
                " (slots 0-7 hold 36 bytes, slot 8 416, slots 9-15 72)"
            )
        skc = zone.key_config(slot)
        if skc.private:
            raise ConfigError(
                f"slot {slot} ({what}): {_slot_fields(slot, zone)}: KeyConfig.Private (bit 0)"
                " is 1; a private-key slot cannot be written with Write nor read back",
                offset=key_config_offset(slot),
            )
        ssc = zone.slot_config(slot)
        if validate and (ssc.is_secret or ssc.encrypt_read):
            raise ConfigError(
                f"slot {slot} ({what}): {_slot_fields(slot, zone)}: SlotConfig IsSecret (bit 7)"
                f" = {int(ssc.is_secret)}, EncryptRead (bit 6) = {int(ssc.encrypt_read)};"
                " validation must read this slot in the clear after the data zone lock",
                offset=slot_config_offset(slot),
            )
