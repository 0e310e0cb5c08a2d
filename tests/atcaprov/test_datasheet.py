"""The datasheet module against the published ATECC508A facts (values written out here, not
taken from the code): config map, sizes, serial number, SlotConfig/KeyConfig bits, lookups."""

from __future__ import annotations

import dataclasses

import pytest

from atcaprov import datasheet as ds
from atcaprov.errors import AtcaprovError, BadParamError

# Config zone of CryptoAuthLib's 2016 test config (facts 3.7), with the head of the real-device
# read `h12015_test_ecc_configdata` (01 23 2F 6C | 00 00 50 00 | D9 2C A5 71 EE | C0 75 00).
TEST_CONFIG = bytes.fromhex(
    "01232F6C00005000D92CA571EEC07500"
    "C000AA008F20C4448720C4448F0F8F8F"
    "9F8F8220C444C4440F0F0F0F0F0F0F0F"
    "0F0F0F0FFFFFFFFF00000000FFFFFFFF"
    "00000000FFFFFFFFFFFFFFFFFFFFFFFF"
    "FFFFFFFF00005555FFFF000000000000"
    "33005C0013005C003C001C001C003300"
    "1C001C003C003C003C003C001C003C00"
)
SLOT_CONFIGS = [0x208F, 0x44C4, 0x2087, 0x44C4, 0x0F8F, 0x8F8F, 0x8F9F, 0x2082, 0x44C4, 0x44C4] + [
    0x0F0F
] * 6
KEY_CONFIGS = [
    0x0033,
    0x005C,
    0x0013,
    0x005C,
    0x003C,
    0x001C,
    0x001C,
    0x0033,
    0x001C,
    0x001C,
    0x003C,
    0x003C,
    0x003C,
    0x003C,
    0x001C,
    0x003C,
]


# ------------------------------------------------------------------ sizes and map
def test_atecc508a_sizes() -> None:
    m = ds.ATECC508A
    assert m.name == "ATECC508A"
    assert m.config_size == 128 and m.otp_size == 64
    assert m.slot_count == 16
    assert [ds.slot_size(n) for n in range(16)] == [36] * 8 + [416] + [72] * 7
    assert sum(m.slot_sizes) == 1208
    assert m.info_revisions == (bytes([0x00, 0x00, 0x50, 0x00]),)
    assert (ds.BLOCK_SIZE, ds.WORD_SIZE, ds.SERIAL_NUMBER_SIZE) == (32, 4, 9)
    assert (ds.LOCKED, ds.UNLOCKED) == (0x00, 0x55)
    assert (ds.SN_PREFIX, ds.SN_LAST) == (b"\x01\x23", 0xEE)


def test_atecc508a_config_map() -> None:
    cmap = ds.ATECC508A_CONFIG_MAP
    assert ds.ATECC508A.config_map is cmap
    assert [(s.offset, s.stop) for s in cmap.serial_number] == [(0, 4), (8, 13)]
    assert (cmap.revision.offset, cmap.revision.stop) == (4, 8)
    assert (cmap.i2c_enable, cmap.i2c_address, cmap.otp_mode, cmap.chip_mode) == (14, 16, 18, 19)
    assert [cmap.slot_config_offset(n) for n in (0, 1, 15)] == [20, 22, 50]
    assert cmap.slot_config.stop == 52
    assert [(s.offset, s.size) for s in cmap.counters] == [(52, 8), (60, 8)]
    assert (cmap.last_key_use.offset, cmap.last_key_use.stop) == (68, 84)
    assert (cmap.user_extra, cmap.selector, cmap.lock_value, cmap.lock_config) == (84, 85, 86, 87)
    assert list(cmap.slot_locked.offsets) == [88, 89]
    assert list(cmap.rfu.offsets) == [90, 91]
    assert list(cmap.x509_format.offsets) == [92, 93, 94, 95]
    assert [cmap.key_config_offset(n) for n in (0, 1, 15)] == [96, 98, 126]
    assert cmap.key_config.stop == 128


def test_config_bytes_writable_by_write() -> None:
    writable = ds.ATECC508A.config_writable
    assert writable == frozenset(range(16, 84)) | frozenset(range(88, 128))
    assert list(ds.ATECC508A_CONFIG_MAP.read_only.offsets) == list(range(16))
    assert list(ds.ATECC508A_CONFIG_MAP.not_by_write.offsets) == [84, 85, 86, 87]


def test_slot_size_refuses_missing_slots() -> None:
    for bad in (-1, 16):
        with pytest.raises(ds.NoSuchSlotError, match=rf"slot {bad} out of range 0\.\.15"):
            ds.slot_size(bad)
    # the host API's BadParamError and config's ValueError both catch it
    with pytest.raises(BadParamError):
        ds.slot_size(16)
    with pytest.raises(ValueError):
        ds.slot_config(TEST_CONFIG, 16)


# ------------------------------------------------------------------ serial number, fields
def test_serial_number() -> None:
    assert ds.serial_number(TEST_CONFIG).hex().upper() == "01232F6CD92CA571EE"
    w25_head = bytes.fromhex("01 23 00 00 00 00 50 00 04 05 06 07 EE 00 01 00")
    assert ds.serial_number(w25_head) == bytes.fromhex("01 23 00 00 04 05 06 07 EE")
    assert ds.serial_number(bytearray(TEST_CONFIG)) == ds.serial_number(TEST_CONFIG)
    assert isinstance(ds.serial_number(bytearray(TEST_CONFIG)), bytes)


def test_slot_and_key_config_words_of_the_test_config() -> None:
    assert [ds.slot_config(TEST_CONFIG, n).raw for n in range(16)] == SLOT_CONFIGS
    assert [ds.key_config(TEST_CONFIG, n).raw for n in range(16)] == KEY_CONFIGS


def test_slot_locked_bits() -> None:
    raw = bytearray(TEST_CONFIG)
    assert not any(ds.slot_locked(raw, n) for n in range(16))  # FF FF: nothing locked
    raw[88] = 0xFF & ~(1 << 3)  # a 0 bit = locked; byte 88 holds slots 0-7
    raw[89] = 0xFF & ~(1 << 4)
    assert [n for n in range(16) if ds.slot_locked(raw, n)] == [3, 12]


# ------------------------------------------------------------------ bitfields
def test_slot_config_private_key_word() -> None:
    sc = ds.SlotConfig(0x2087)  # private key: external + internal Sign, ECDH, GenKey allowed
    assert (sc.external_sign, sc.internal_sign, sc.ecdh, sc.ecdh_to_slot) == (
        True,
        True,
        True,
        False,
    )
    assert sc.is_secret and not sc.encrypt_read
    assert sc.write_config == 0b0010 and sc.genkey_allowed and not sc.privwrite_allowed
    privwrite = ds.SlotConfig(0x6483)  # CryptoAuthLib's w25 config: "privwrite on"
    assert privwrite.privwrite_allowed and privwrite.genkey_allowed
    assert privwrite.write_key == 4
    assert ds.SlotConfig(0x208F).ecdh_to_slot  # low byte 0x8F: bit 3 set
    assert ds.SlotConfig(0x208F).read_key == 0xF


def test_slot_config_data_words() -> None:
    secret = ds.SlotConfig(0x44C4)  # secret, reads encrypted with key 4, writes encrypted
    assert (secret.read_key, secret.write_key, secret.write_config) == (4, 4, 0b0100)
    assert secret.is_secret and secret.encrypt_read
    assert secret.write_encrypted and not secret.write_always
    clear = ds.SlotConfig(0x0F0F)  # clear read and write
    assert not clear.is_secret and not clear.encrypt_read
    assert clear.write_always and not clear.write_encrypted
    never = ds.SlotConfig(0x8F8F)  # WriteConfig 1000: Write never allowed
    assert never.write_config == 0b1000
    assert not never.write_always and not never.write_encrypted
    flags = ds.SlotConfig(0x0070)
    assert (flags.no_mac, flags.limited_use, flags.encrypt_read, flags.is_secret) == (
        True,
        True,
        True,
        False,
    )


@pytest.mark.parametrize(
    ("word", "private", "pub_info", "key_type", "lockable"),
    [
        (0x0033, True, True, 4, True),  # private P-256, PubInfo, lockable
        (0x0013, True, True, 4, False),  # the same, not lockable
        (0x003C, False, False, 7, True),  # data, lockable
        (0x001C, False, False, 7, False),  # data, not lockable
        (0x0010, False, False, 4, False),  # P-256 public key
    ],
)
def test_key_config_words(
    word: int, private: bool, pub_info: bool, key_type: int, lockable: bool
) -> None:
    kc = ds.KeyConfig(word)
    assert (kc.private, kc.pub_info, kc.key_type, kc.lockable) == (
        private,
        pub_info,
        key_type,
        lockable,
    )
    assert kc.is_p256 == (key_type == ds.KEY_TYPE_P256)
    assert kc.is_p256_private == (private and key_type == 4)


def test_key_config_high_bits() -> None:
    assert ds.KeyConfig(0x005C).req_random and not ds.KeyConfig(0x005C).req_auth
    kc = ds.KeyConfig(0x0193)  # ReqAuth with AuthKey = slot 1
    assert kc.req_auth and kc.auth_key == 1
    top = ds.KeyConfig(0xD000)
    assert top.intrusion_disable and top.x509_id == 3
    assert ds.KEY_TYPE_NOT_ECC == 7


# ------------------------------------------------------------------ lookups, more models
def test_model_lookups() -> None:
    assert ds.MODELS == (ds.ATECC508A, ds.ATECC608A, ds.ATECC608B)
    assert ds.model_named("ATECC508A") is ds.ATECC508A
    assert ds.model_named("atecc508a") is ds.ATECC508A
    assert ds.model_named("atecc608a") is ds.ATECC608A
    assert ds.model_named("ATECC608B") is ds.ATECC608B
    assert ds.model_for_revision(TEST_CONFIG[4:8]) is ds.ATECC508A
    with pytest.raises(ds.UnknownChipModelError, match="no chip model named 'ATSHA204A'"):
        ds.model_named("ATSHA204A")
    with pytest.raises(ds.UnknownChipModelError, match="80 00 10 01"):
        ds.model_for_revision(bytes([0x80, 0x00, 0x10, 0x01]))  # an ATECC108A
    assert issubclass(ds.UnknownChipModelError, AtcaprovError)


def test_functions_follow_the_model_given() -> None:
    """Another model (made up here) is read through its own map and sizes."""
    cmap = dataclasses.replace(
        ds.ATECC508A_CONFIG_MAP,
        serial_number=(ds.Span(2, 4), ds.Span(10, 5)),
        slot_config=ds.Span(30, 8),
        key_config=ds.Span(40, 8),
    )
    other = ds.ChipModel(
        name="TEST4",
        info_revisions=(b"\x00\x00\x99\x00",),
        config_size=64,
        otp_size=0,
        slot_sizes=(72,) * 4,
        config_map=cmap,
    )
    config = bytes(range(64))
    assert ds.serial_number(config, other) == bytes([2, 3, 4, 5, 10, 11, 12, 13, 14])
    assert ds.slot_config(config, 3, other).raw == 0x2524
    assert ds.key_config(config, 0, other).raw == 0x2928
    assert ds.slot_size(3, other) == 72
    with pytest.raises(ds.NoSuchSlotError, match=r"out of range 0\.\.3"):
        ds.slot_size(4, other)


# ------------------------------------------------------------------ the ATECC608A / 608B
def test_atecc608_models() -> None:
    for model, revision in ((ds.ATECC608A, "00006002"), (ds.ATECC608B, "00006003")):
        assert model.info_revisions == (bytes.fromhex(revision),)
        assert model.revision == bytes.fromhex(revision)
        assert model.family == ds.FAMILY_ATECC608 == "ATECC608"
        assert (model.config_size, model.otp_size) == (128, 64)
        assert list(model.slot_sizes) == [36] * 8 + [416] + [72] * 7
        assert model.config_map is ds.ATECC608_CONFIG_MAP
    assert ds.ATECC508A.family == ds.FAMILY_ATECC508A == "ATECC508A"


def test_revision_lookups() -> None:
    assert ds.model_for_revision(bytes.fromhex("00006002")) is ds.ATECC608A
    assert ds.model_for_revision(bytes.fromhex("00006003")) is ds.ATECC608B
    # "over time the fourth byte for the ATECC608B could change" (facts 3.10): >= 03
    assert ds.model_for_revision(bytes.fromhex("00006004")) is ds.ATECC608B
    assert ds.model_for_revision(bytes.fromhex("000060FF")) is ds.ATECC608B
    for unknown in ("00006001", "00006000", "00016003", "00005001", "0000600302"):
        with pytest.raises(ds.UnknownChipModelError):
            ds.model_for_revision(bytes.fromhex(unknown))


def test_atecc608_config_map() -> None:
    """``atecc608_config_t`` (CryptoAuthLib calib_device.h) and AN3539 table 3-1."""
    cmap = ds.ATECC608_CONFIG_MAP
    assert [(s.offset, s.stop) for s in cmap.serial_number] == [(0, 4), (8, 13)]
    assert (cmap.revision.offset, cmap.revision.stop) == (4, 8)
    assert (cmap.aes_enable, cmap.i2c_enable, cmap.i2c_address) == (13, 14, 16)
    assert (cmap.count_match, cmap.chip_mode) == (18, 19)
    assert [cmap.slot_config_offset(n) for n in (0, 15)] == [20, 50]
    assert [(s.offset, s.size) for s in cmap.counters] == [(52, 8), (60, 8)]
    assert (cmap.use_lock, cmap.volatile_key_permission) == (68, 69)
    assert list(cmap.secure_boot.offsets) == [70, 71]
    assert cmap.kdf_iv_loc == 72 and list(cmap.kdf_iv_str.offsets) == [73, 74]
    assert list(cmap.reserved.offsets) == list(range(75, 84))
    assert (cmap.user_extra, cmap.user_extra_add, cmap.lock_value, cmap.lock_config) == (
        84,
        85,
        86,
        87,
    )
    assert list(cmap.slot_locked.offsets) == [88, 89]
    assert list(cmap.chip_options.offsets) == [90, 91]
    assert list(cmap.x509_format.offsets) == [92, 93, 94, 95]
    assert [cmap.key_config_offset(n) for n in (0, 15)] == [96, 126]
    assert (
        ds.CHIP_MODE_I2C_ADDRESS_USER_EXTRA_ADD,
        ds.CHIP_MODE_TTL_ENABLE,
        ds.CHIP_MODE_WATCHDOG_LONG,
        ds.CHIP_MODE_CLOCK_DIVIDER_MASK,
    ) == (0x01, 0x02, 0x04, 0xF8)
    assert (ds.CLOCK_DIVIDER_M0, ds.CLOCK_DIVIDER_M1, ds.CLOCK_DIVIDER_M2) == (0x00, 0x28, 0x68)


def test_atecc608_writable_bytes() -> None:
    """Write never touches 0-15 (AES_Enable at 13 included) nor 84-87 (UpdateExtra and Lock
    set them); the rest is writable until the config lock."""
    writable = frozenset(range(16, 84)) | frozenset(range(88, 128))
    assert ds.ATECC608A.config_writable == writable == ds.ATECC608B.config_writable
    assert ds.ATECC608_CONFIG_MAP.aes_enable not in writable


def test_field_names_and_differences() -> None:
    names = ds.config_field_names(ds.ATECC608B)
    assert len(names) == 128
    assert (names[0], names[4], names[13], names[15]) == ("SN", "RevNum", "AES_Enable", "reserved")
    assert (names[18], names[19]) == ("CountMatch", "ChipMode (ATECC608)")
    assert (names[22], names[23], names[52], names[60]) == (
        "SlotConfig[1]",
        "SlotConfig[1]",
        "Counter[0]",
        "Counter[1]",
    )
    assert (names[68], names[85], names[90], names[127]) == (
        "UseLock",
        "UserExtraAdd",
        "ChipOptions",
        "KeyConfig[15]",
    )
    old = ds.config_field_names(ds.ATECC508A)
    assert (old[13], old[18], old[19], old[68], old[85], old[90]) == (
        "reserved",
        "OTPmode",
        "ChipMode",
        "LastKeyUse",
        "Selector",
        "RFU",
    )
    differing = [d.describe() for d in ds.fields_differing(ds.ATECC508A, ds.ATECC608B)]
    assert differing == [
        "byte 13: reserved / AES_Enable",
        "byte 18: OTPmode / CountMatch",
        "byte 19: ChipMode / ChipMode (ATECC608)",
        "byte 68: LastKeyUse / UseLock",
        "byte 69: LastKeyUse / VolatileKeyPermission",
        "bytes 70-71: LastKeyUse / SecureBoot",
        "byte 72: LastKeyUse / KdfIvLoc",
        "bytes 73-74: LastKeyUse / KdfIvStr",
        "bytes 75-83: LastKeyUse / reserved",
        "byte 85: Selector / UserExtraAdd",
        "bytes 90-91: RFU / ChipOptions",
    ]
    assert ds.fields_differing(ds.ATECC608A, ds.ATECC608B) == []
    assert ds.fields_differing(ds.ATECC508A, ds.ATECC508A) == []
