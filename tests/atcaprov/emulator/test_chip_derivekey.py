"""DeriveKey (opcode 0x1C): Roll and Create, with and without the authorizing MAC.

The slot set-up mirrors Microchip's ``derivekey`` and ``derivekey_mac`` device tests: slot 9
(SlotConfig 0x64C4: DeriveKey allowed, Roll, no MAC) and slot 3 (SlotConfig 0xF4C4: Create from
the parent slot 4, MAC required). Derived keys are computed here with hashlib from the published
formula and checked through the chip's MAC command, which uses the slot's new key.
"""

from __future__ import annotations

import pytest

from tests.support import host_digests as host
from tests.support.chip import ChipDriver

NONCE, DERIVE, MAC, LOCK = 0x16, 0x1C, 0x08, 0x17
OK, MISCOMPARE, PARSE, EXEC = 0x00, 0x01, 0x03, 0x0F

SLOT4_KEY = bytes.fromhex("3780e63d4968ade5d822c013fcc323845d1b569fe705b60006feec145a0db1e3")
ROLL_START = bytes(range(0x55, 0x75))  # slot 9 before the first Roll
OLD3 = bytes(range(0xA0, 0xC0))
NUM_IN = bytes(range(0xE0, 0xF4))
CHALLENGE = bytes(range(32))


def set_up(d: ChipDriver, *, key_config_9: int = 0x001C, lock_data: bool = True) -> ChipDriver:
    d.set_slot_config(3, 0xF4C4)  # Create (bit 12) from WriteKey 4, MAC required (bit 15)
    d.set_key_config(3, 0x001C)
    d.set_slot_config(9, 0x64C4)  # Roll (bit 12 clear), no MAC, WriteKey 4
    d.set_key_config(9, key_config_9)
    d.lock_config()
    d.write_slot(3, OLD3 + bytes(4))
    d.write_slot(4, SLOT4_KEY + bytes(4))
    d.write_slot(9, ROLL_START + bytes(40))
    if lock_data:
        d.lock_data()
    return d


@pytest.fixture
def chip(blank: ChipDriver) -> ChipDriver:
    return set_up(blank)


def random_tempkey(d: ChipDriver, mode: int = 0x00) -> bytes:
    rand_out = d.ok(NONCE, mode, 0, NUM_IN)
    return host.nonce_random(rand_out, NUM_IN, mode)


def key_in_slot(d: ChipDriver, slot: int) -> bytes:
    """Find out which key the chip now holds in ``slot`` by its MAC over a challenge."""
    return d.ok(MAC, 0x00, slot, CHALLENGE)


def mac_with(d: ChipDriver, key: bytes, slot: int) -> bytes:
    return host.mac(key, CHALLENGE, 0x00, slot, d.chip.serial_number)


def test_roll_without_mac(chip: ChipDriver) -> None:
    d = chip
    sn = d.chip.serial_number
    tempkey = random_tempkey(d)
    assert d.status(DERIVE, 0x00, 9) == OK
    expected = host.derived_key(ROLL_START, 0x00, 9, sn, tempkey)
    assert key_in_slot(d, 9) == mac_with(d, expected, 9)
    # A second Roll starts from the key the first one made.
    tempkey = random_tempkey(d)
    assert d.status(DERIVE, 0x00, 9) == OK
    assert key_in_slot(d, 9) == mac_with(d, host.derived_key(expected, 0x00, 9, sn, tempkey), 9)


def test_roll_over_passthrough_tempkey(chip: ChipDriver) -> None:
    d = chip
    tempkey = bytes(range(0x10, 0x30))
    d.nonce_load(tempkey)
    assert d.status(DERIVE, 0x04, 9) == OK  # mode bit 2 = SourceFlag input
    expected = host.derived_key(ROLL_START, 0x04, 9, d.chip.serial_number, tempkey)
    assert key_in_slot(d, 9) == mac_with(d, expected, 9)


def test_create_with_mac(chip: ChipDriver) -> None:
    d = chip
    sn = d.chip.serial_number
    tempkey = random_tempkey(d)
    mac = host.derivekey_mac(SLOT4_KEY, 0x00, 3, sn)
    assert d.status(DERIVE, 0x00, 3, mac) == OK
    expected = host.derived_key(SLOT4_KEY, 0x00, 3, sn, tempkey)  # from the parent, slot 4
    assert key_in_slot(d, 3) == mac_with(d, expected, 3)


def test_create_known_answer_spelled_out(chip: ChipDriver) -> None:
    d = chip
    sn = d.chip.serial_number
    tempkey = bytes(32)
    d.nonce_load(tempkey)
    params = b"\x1c\x04\x03\x00" + bytes((sn[8], sn[0], sn[1]))
    mac = host.sha256(SLOT4_KEY + params)
    assert d.status(DERIVE, 0x04, 3, mac) == OK
    new_key = host.sha256(SLOT4_KEY + params + bytes(25) + tempkey)
    assert key_in_slot(d, 3) == mac_with(d, new_key, 3)


def test_wrong_mac_is_miscompare_and_keeps_the_key(chip: ChipDriver) -> None:
    d = chip
    random_tempkey(d)
    bad = host.derivekey_mac(OLD3, 0x00, 3, d.chip.serial_number)  # the target, not the parent
    assert d.status(DERIVE, 0x00, 3, bad) == MISCOMPARE
    assert key_in_slot(d, 3) == mac_with(d, OLD3, 3)


def test_missing_mac_refused(chip: ChipDriver) -> None:
    random_tempkey(chip)
    assert chip.status(DERIVE, 0x00, 3) == EXEC
    assert key_in_slot(chip, 3) == mac_with(chip, OLD3, 3)


def test_tempkey_rules(chip: ChipDriver) -> None:
    d = chip
    assert d.status(DERIVE, 0x00, 9) == EXEC  # no TempKey
    random_tempkey(d)
    assert d.status(DERIVE, 0x04, 9) == EXEC  # random TempKey, mode says input
    d.nonce_load(bytes(32))
    assert d.status(DERIVE, 0x00, 9) == EXEC  # input TempKey, mode says random
    assert d.status(DERIVE, 0x04, 9) == OK
    assert d.status(DERIVE, 0x04, 9) == EXEC  # TempKey used up


def test_slot_config_rules(chip: ChipDriver) -> None:
    d = chip
    d.nonce_load(bytes(32))
    assert d.status(DERIVE, 0x04, 10) == EXEC  # SlotConfig 0x0F0F: bit 13 clear
    assert d.status(DERIVE, 0x04, 0) == EXEC  # private key
    assert d.status(DERIVE, 0x04, 9) == OK


def test_parameters(chip: ChipDriver) -> None:
    d = chip
    d.nonce_load(bytes(32))
    assert d.status(DERIVE, 0x01, 9) == PARSE
    assert d.status(DERIVE, 0x84, 9) == PARSE
    assert d.status(DERIVE, 0x04, 16) == PARSE
    assert d.status(DERIVE, 0x04, 9, bytes(4)) == PARSE


def test_req_random_on_the_source_key(blank: ChipDriver) -> None:
    d = set_up(blank, key_config_9=0x005C)  # ReqRandom
    d.nonce_load(bytes(32))
    assert d.status(DERIVE, 0x04, 9) == EXEC
    tempkey = random_tempkey(d)
    assert d.status(DERIVE, 0x00, 9) == OK
    sn = d.chip.serial_number
    expected = host.derived_key(ROLL_START, 0x00, 9, sn, tempkey)
    # A ReqRandom key MACs only over a random TempKey (MAC mode 0x01: block 2 = TempKey).
    tempkey = random_tempkey(d)
    assert d.ok(MAC, 0x01, 9) == host.mac(expected, tempkey, 0x01, 9, sn)


def test_locked_slot_refused(blank: ChipDriver) -> None:
    d = set_up(blank, key_config_9=0x003C)  # Lockable
    assert d.status(LOCK, (9 << 2) | 0x02, 0) == OK
    d.nonce_load(bytes(32))
    assert d.status(DERIVE, 0x04, 9) == EXEC


def test_needs_config_lock_only(blank: ChipDriver) -> None:
    d = blank
    d.nonce_load(bytes(32))
    assert d.status(DERIVE, 0x04, 9) == EXEC  # config zone unlocked
    d = set_up(d, lock_data=False)
    tempkey = random_tempkey(d)
    assert d.status(DERIVE, 0x00, 9) == OK  # the data zone may still be open
    d.lock_data()
    expected = host.derived_key(ROLL_START, 0x00, 9, d.chip.serial_number, tempkey)
    assert key_in_slot(d, 9) == mac_with(d, expected, 9)
