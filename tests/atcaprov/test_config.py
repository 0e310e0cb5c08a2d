"""Config zone: default, file parsing errors, decoded fields, flow checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from atcaprov import config as c
from atcaprov.config import (
    DEFAULT_CONFIG,
    ConfigError,
    ConfigZone,
    check_config_for_flow,
    parse_config_text,
)
from atcaprov.errors import AtcaprovError

SEED = Path("/work/shared/seed/production-provisioning-guide-8971A-alt-extraction.txt")

# Decoded values of the Atmel test provisioning config (facts file section 3.7), an independent
# source for the default: the app note default equals it except byte 14 (I2C_Enable = 1).
FACTS_SLOT_CONFIG = [0x208F, 0x44C4, 0x2087, 0x44C4, 0x0F8F, 0x8F8F, 0x8F9F, 0x2082]
FACTS_SLOT_CONFIG += [0x44C4, 0x44C4] + [0x0F0F] * 6
FACTS_KEY_CONFIG = [0x0033, 0x005C, 0x0013, 0x005C, 0x003C, 0x001C, 0x001C, 0x0033]
FACTS_KEY_CONFIG += [0x001C, 0x001C, 0x003C, 0x003C, 0x003C, 0x003C, 0x001C, 0x003C]


# ------------------------------------------------------------------ default
def test_default_config_decodes_as_documented() -> None:
    assert len(DEFAULT_CONFIG) == 128
    assert DEFAULT_CONFIG[:16] == bytes(14) + b"\x01\x00"
    zone = ConfigZone(DEFAULT_CONFIG)
    assert [zone.slot_config(n).raw for n in range(16)] == FACTS_SLOT_CONFIG
    assert [zone.key_config(n).raw for n in range(16)] == FACTS_KEY_CONFIG
    assert zone.i2c_enable and zone.i2c_address == 0xC0 and zone.otp_mode == 0xAA
    assert zone.chip_mode == 0
    assert zone.lock_value == zone.lock_config == 0x55
    assert not zone.config_locked and not zone.data_locked
    assert DEFAULT_CONFIG[52:68] == bytes.fromhex("FFFFFFFF00000000FFFFFFFF00000000")
    assert not any(zone.slot_locked(n) for n in range(16))


@pytest.mark.skipif(not SEED.exists(), reason="app note extraction not available")
def test_default_config_equals_app_note_text() -> None:
    text = SEED.read_text(encoding="utf-8")
    start = text.index("Example: Default ATECC508A Configuration")
    block = text[start:].split("\n", 1)[1]
    rows = re.findall(r"^((?:[0-9A-F]{2} +){7}[0-9A-F]{2} {2}(?:[0-9A-F]{2} ?){8})", block, re.M)
    assert len(rows) >= 8
    assert parse_config_text("\n".join(rows[:8])) == DEFAULT_CONFIG


def test_format_round_trip() -> None:
    text = c.format_config_text(DEFAULT_CONFIG)
    assert text == c.DEFAULT_CONFIG_TEXT
    assert parse_config_text(text) == DEFAULT_CONFIG


# ------------------------------------------------------------------ parsing
def test_any_whitespace_and_grouped_digits() -> None:
    hexes = DEFAULT_CONFIG.hex()
    text = (
        "\ufeff"
        + hexes[:40]
        + "\r\n\t"
        + " ".join(hexes[i : i + 2] for i in range(40, 200, 2))
        + "\n\n   "
        + hexes[200:].lower()
        + "\n"
    )
    assert parse_config_text(text) == DEFAULT_CONFIG


def test_first_16_bytes_required_but_kept_as_given() -> None:
    data = bytes(range(16)) + DEFAULT_CONFIG[16:]
    assert parse_config_text(data.hex(" ")) == data
    assert c.config_differences(DEFAULT_CONFIG, data) == []


def _err(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        parse_config_text(text, "my.cfg")
    return ei.value


def test_non_hex_character() -> None:
    text = c.DEFAULT_CONFIG_TEXT.replace("87 20", "87 2G")
    err = _err(text)
    assert (err.line, err.column, err.offset) == (2, 30, 16 + 9)
    assert "my.cfg:2:30: 'G' is not a hex digit (in byte 25;" in str(err)


def test_comma_is_not_a_separator() -> None:
    err = _err("C0,00 " + "00 " * 126)
    assert (err.line, err.column) == (1, 3) and "',' is not a hex digit" in str(err)


def test_odd_digit() -> None:
    err = _err("00 " * 20 + "ABC " + "00 " * 107)
    assert (err.line, err.column, err.offset) == (1, 61, 21)
    assert "'ABC' has an odd number of hex digits (3): byte 21 has only one digit" in str(err)


def test_too_many_bytes() -> None:
    err = _err(c.DEFAULT_CONFIG_TEXT + "\nFF EE\n")
    assert (err.line, err.column, err.offset) == (10, 1, 128)
    assert "byte 128 (FF) is one too many" in str(err)


def test_too_few_bytes_and_empty() -> None:
    text = "\n".join(c.DEFAULT_CONFIG_TEXT.splitlines()[:7])
    err = _err(text)
    assert "my.cfg:7: file ends after 112 bytes, expected exactly 128 (missing bytes 112..127)" in (
        str(err)
    )
    assert "ends after 0 bytes" in str(_err(""))


def test_load_config_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg.txt"
    path.write_text(c.DEFAULT_CONFIG_TEXT)
    assert c.load_config_file(path) == DEFAULT_CONFIG
    path.write_bytes(c.DEFAULT_CONFIG_TEXT.encode().replace(b"C0", b"\xc3\xa9", 1))
    with pytest.raises(ConfigError) as ei:
        c.load_config_file(path)
    err = ei.value
    assert f"{path}:2:1:" in str(err) and "not a hex digit" in str(err)
    with pytest.raises(ConfigError, match="cannot read config file"):
        c.load_config_file(tmp_path / "missing.txt")
    assert issubclass(ConfigError, AtcaprovError)


# ------------------------------------------------------------------ decoded views
def test_slot_and_key_config_bits() -> None:
    sc = c.SlotConfig(0x208F)
    assert sc.external_sign and sc.internal_sign and sc.ecdh and sc.ecdh_to_slot
    assert sc.is_secret and not sc.encrypt_read and sc.write_config == 2 and sc.genkey_allowed
    assert not sc.privwrite_allowed and c.SlotConfig(0x6483).privwrite_allowed
    assert c.SlotConfig(0x44C4).write_key == 4 and c.SlotConfig(0x44C4).encrypt_read
    kc = c.KeyConfig(0x0033)
    assert kc.private and kc.pub_info and kc.key_type == 4 and kc.lockable and kc.is_p256_private
    assert not kc.req_auth and c.KeyConfig(0x0080).req_auth
    assert c.KeyConfig(0x003C).key_type == 7 and not c.KeyConfig(0x003C).private
    assert c.KeyConfig(0x0013).is_p256_private and not c.KeyConfig(0x0013).lockable
    assert c.KeyConfig(0xC000).x509_id == 3 and c.KeyConfig(0x1000).intrusion_disable


def test_zone_fields_and_locks() -> None:
    raw = bytearray(DEFAULT_CONFIG)
    raw[0:4] = b"\x01\x23\x40\x38"
    raw[8:13] = b"\xd9\x2c\xa5\x71\xee"
    raw[87] = 0x00
    raw[88] = 0xFF & ~(1 << 3)
    raw[89] = 0xFF & ~(1 << 4)
    zone = ConfigZone(bytes(raw))
    assert zone.serial_number.hex().upper() == "01234038D92CA571EE"
    assert zone.config_locked and not zone.data_locked
    assert [n for n in range(16) if zone.slot_locked(n)] == [3, 12]
    assert c.config_differences(DEFAULT_CONFIG, bytes(raw)) == [88, 89]
    with pytest.raises(ConfigError, match="128 bytes, got 5"):
        ConfigZone(b"12345")
    with pytest.raises(ValueError):
        zone.slot_config(16)
    assert [c.slot_size(n) for n in (0, 7, 8, 9, 15)] == [36, 36, 416, 72, 72]


# ------------------------------------------------------------------ flow checks
def _flow(config: bytes, **kwargs: object) -> None:
    args: dict[str, object] = {
        "device_key_slot": 0,
        "cert_slots": {10: 72, 12: 72},
        "signer_pubkey_slot": 11,
    }
    args.update(kwargs)
    check_config_for_flow(config, **args)  # type: ignore[arg-type]


def _with(
    slot_config: dict[int, int] | None = None, key_config: dict[int, int] | None = None
) -> bytes:
    raw = bytearray(DEFAULT_CONFIG)
    for slot, value in (slot_config or {}).items():
        raw[c.slot_config_offset(slot) : c.slot_config_offset(slot) + 2] = value.to_bytes(
            2, "little"
        )
    for slot, value in (key_config or {}).items():
        raw[c.key_config_offset(slot) : c.key_config_offset(slot) + 2] = value.to_bytes(2, "little")
    return bytes(raw)


def _flow_error(config: bytes, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        _flow(config, **kwargs)
    return ei.value


def test_default_config_passes_the_flow() -> None:
    _flow(DEFAULT_CONFIG)
    _flow(DEFAULT_CONFIG, device_key_slot=2, cert_slots={13: 72}, signer_pubkey_slot=None)
    _flow(DEFAULT_CONFIG, cert_slots={8: 416}, signer_pubkey_slot=None, validate=False)
    _flow(
        DEFAULT_CONFIG,
        device_key_slot=7,
        cert_slots={14: 72, 15: 60},
        signer_pubkey_slot=15,
        validate=False,
    )


def test_device_key_slot_not_private() -> None:
    err = _flow_error(DEFAULT_CONFIG, device_key_slot=4)
    assert err.offset == 104
    assert "KeyConfig[4] (bytes 104-105) = 0x003C" in str(err) and "Private (bit 0) is 0" in str(
        err
    )


def test_device_key_slot_not_p256() -> None:
    err = _flow_error(_with(key_config={0: 0x0003}))
    assert err.offset == 96 and "KeyType (bits 2-4) is 0, expected 4" in str(err)


def test_device_key_slot_genkey_not_allowed() -> None:
    err = _flow_error(_with(slot_config={0: 0x008F}))
    assert err.offset == 21
    assert "SlotConfig[0] (bytes 20-21) = 0x008F" in str(err)
    assert "WriteConfig (bits 12-15) is 0b0000; GenKey needs bit 13" in str(err)


def test_device_key_needs_external_sign_only_with_validation() -> None:
    config = _with(slot_config={0: 0x208E})
    err = _flow_error(config)
    assert err.offset == 20 and "external Sign" in str(err)
    _flow(config, validate=False)
    err = _flow_error(_with(key_config={0: 0x00B3}))
    assert "ReqAuth" in str(err)


def test_device_key_slot_out_of_range() -> None:
    assert "device key slot 16 is not a slot" in str(
        _flow_error(DEFAULT_CONFIG, device_key_slot=16)
    )


def test_cert_slot_too_small() -> None:
    err = _flow_error(DEFAULT_CONFIG, cert_slots={3: 72})
    assert "slot 3 is 36 bytes, certificate data needs 72" in str(err)
    err = _flow_error(DEFAULT_CONFIG, cert_slots={9: 73})
    assert "slot 9 is 72 bytes, certificate data needs 73" in str(err)


def test_signer_pubkey_slot_too_small() -> None:
    err = _flow_error(DEFAULT_CONFIG, signer_pubkey_slot=5)
    assert "slot 5 is 36 bytes, signer public key (72-byte padded form) needs 72" in str(err)
    err = _flow_error(DEFAULT_CONFIG, cert_slots={4: 30}, signer_pubkey_slot=4)
    assert "certificate data and signer public key needs 72" in str(err)


def test_cert_slot_private() -> None:
    err = _flow_error(DEFAULT_CONFIG, cert_slots={2: 36}, device_key_slot=0)
    assert err.offset == 100
    assert "slot 2 (certificate data)" in str(err) and "Private (bit 0) is 1" in str(err)
    err = _flow_error(_with(key_config={11: 0x0033}))
    assert err.offset == 118 and "slot 11 (signer public key" in str(err)


def test_cert_slot_secret_only_matters_with_validation() -> None:
    config = _with(slot_config={10: 0x0F8F})
    err = _flow_error(config)
    assert err.offset == 40 and "IsSecret (bit 7) = 1" in str(err)
    _flow(config, validate=False)


def test_slot_conflicts_and_range() -> None:
    assert "both the device key slot" in str(_flow_error(DEFAULT_CONFIG, cert_slots={0: 10}))
    assert "slot 17 for certificate data is not a slot" in str(
        _flow_error(DEFAULT_CONFIG, cert_slots={17: 10})
    )
