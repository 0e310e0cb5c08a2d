"""GenDig, MAC, CheckMac and key-use authorization (KeyConfig.ReqAuth + AuthKey)."""

from __future__ import annotations

import hashlib

import pytest

from atcaprov.emulator import DeviceAsleepError
from tests.support.chip import ChipDriver
from tests.support.keys import verify_raw

INFO, NONCE, GENDIG, MAC, CHECKMAC, SIGN, GENKEY = 0x30, 0x16, 0x15, 0x08, 0x28, 0x41, 0x40
OK, MISCOMPARE, PARSE, EXEC = 0x00, 0x01, 0x03, 0x0F

PASSWORD = hashlib.sha256(b"signer module password").digest()
OTHER_KEY = bytes(range(64, 96))
CHALLENGE = bytes(range(32))
OTHER_DATA = bytes(range(0xA0, 0xAD))  # 13 bytes


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def host_mac(key: bytes, block2: bytes, mode: int, key_id: int, sn: bytes) -> bytes:
    with_sn = bool(mode & 0x40)
    return sha256(
        key
        + block2
        + bytes((0x08, mode))
        + key_id.to_bytes(2, "little")
        + bytes(11)
        + bytes((sn[8],))
        + (sn[4:8] if with_sn else bytes(4))
        + sn[0:2]
        + (sn[2:4] if with_sn else bytes(2))
    )


def host_checkmac_response(key: bytes, challenge: bytes, other: bytes, sn: bytes) -> bytes:
    return sha256(
        key
        + challenge
        + other[0:4]
        + bytes(8)
        + other[4:7]
        + bytes((sn[8],))
        + other[7:11]
        + sn[0:2]
        + other[11:13]
    )


@pytest.fixture
def guarded(blank: ChipDriver) -> ChipDriver:
    """Slot 3: P-256 signing key with ReqAuth, AuthKey = slot 4 (the password); slot 5: another
    secret. Config and data locked."""
    d = blank
    d.set_key_config(3, 0x0001 | 0x0002 | (4 << 2) | 0x0080 | (4 << 8))
    d.set_slot_config(3, 0x2083)
    d.lock_config()
    d.genkey(3)
    d.write_slot(4, PASSWORD + bytes(4))
    d.write_slot(5, OTHER_KEY + bytes(4))
    d.write_slot(10, bytes(range(100, 172)))
    d.lock_data()
    return d


def checkmac(d: ChipDriver, slot: int, key: bytes, *, good: bool = True) -> int:
    sn = d.chip.serial_number
    response = host_checkmac_response(key, CHALLENGE, OTHER_DATA, sn)
    if not good:
        response = bytes((response[0] ^ 1,)) + response[1:]
    return d.status(CHECKMAC, 0x00, slot, CHALLENGE + response + OTHER_DATA)


def sign_status(d: ChipDriver, slot: int = 3) -> int:
    d.nonce_load(sha256(b"certificate tbs"))
    rsp = d.raw(SIGN, 0x80, slot)
    return rsp[1] if len(rsp) == 4 else OK


# ---- authorization -------------------------------------------------------------------------
def test_sign_refused_without_authorization(guarded: ChipDriver) -> None:
    assert sign_status(guarded) == EXEC
    assert guarded.chip.last_error is not None and "authorization" in guarded.chip.last_error


def test_checkmac_authorizes_sign_until_sleep(guarded: ChipDriver) -> None:
    d = guarded
    pub = d.ok(GENKEY, 0x00, 3)
    assert checkmac(d, 4, PASSWORD) == OK
    state = d.ok(INFO, 2)
    assert state[1] & 0x04 and (state[1] >> 3) & 0x0F == 4  # AuthValid, AuthKey = 4
    digest = sha256(b"device cert")
    d.nonce_load(digest)
    verify_raw(pub, digest, d.ok(SIGN, 0x80, 3))
    assert sign_status(d) == OK  # still authorized for the next command
    d.chip.idle()
    assert sign_status(d) == OK  # idle keeps it
    d.chip.sleep()
    assert sign_status(d) == EXEC  # sleep clears it
    assert d.ok(INFO, 2)[1] & 0x04 == 0


def test_wrong_password_is_miscompare_and_does_not_authorize(guarded: ChipDriver) -> None:
    d = guarded
    assert checkmac(d, 4, OTHER_KEY) == MISCOMPARE
    assert sign_status(d) == EXEC
    assert checkmac(d, 4, PASSWORD, good=False) == MISCOMPARE
    assert sign_status(d) == EXEC


def test_authorization_with_another_key_does_not_count(guarded: ChipDriver) -> None:
    d = guarded
    assert checkmac(d, 5, OTHER_KEY) == OK
    assert sign_status(d) == EXEC


def test_failed_checkmac_clears_authorization(guarded: ChipDriver) -> None:
    d = guarded
    assert checkmac(d, 4, PASSWORD) == OK
    assert checkmac(d, 4, OTHER_KEY) == MISCOMPARE
    assert sign_status(d) == EXEC


def test_new_authorization_replaces_the_old_one(guarded: ChipDriver) -> None:
    d = guarded
    assert checkmac(d, 4, PASSWORD) == OK
    assert checkmac(d, 5, OTHER_KEY) == OK
    assert sign_status(d) == EXEC


def test_watchdog_clears_authorization(guarded: ChipDriver) -> None:
    d = guarded
    assert checkmac(d, 4, PASSWORD) == OK
    d.clock.advance(1.5)
    with pytest.raises(DeviceAsleepError):
        d.chip.execute(b"\x07\x30\x00\x00\x00\x03\x5d")
    assert sign_status(d) == EXEC


def test_checkmac_parameters(guarded: ChipDriver) -> None:
    d = guarded
    assert d.status(CHECKMAC, 0x00, 4, bytes(76)) == PARSE
    assert d.status(CHECKMAC, 0x08, 4, bytes(77)) == PARSE
    assert d.status(CHECKMAC, 0x01, 4, bytes(77)) == EXEC  # TempKey needed
    assert d.status(CHECKMAC, 0x00, 3, bytes(77)) == EXEC  # private-key slot


def test_checkmac_with_tempkey_mode(guarded: ChipDriver) -> None:
    d = guarded
    sn = d.chip.serial_number
    num_in = bytes(range(20))
    rand_out = d.ok(NONCE, 0x00, 0, num_in)
    tempkey = sha256(rand_out + num_in + b"\x16\x00\x00")
    response = host_checkmac_response(PASSWORD, tempkey, OTHER_DATA, sn)
    assert d.status(CHECKMAC, 0x01, 4, bytes(32) + response + OTHER_DATA) == OK
    assert sign_status(d) == OK
    # Mode bit 2 must match TempKey.SourceFlag (random here).
    d.ok(NONCE, 0x00, 0, num_in)
    assert d.status(CHECKMAC, 0x05, 4, bytes(32) + response + OTHER_DATA) == EXEC


def test_checkmac_before_config_lock_refused(blank: ChipDriver) -> None:
    assert blank.status(CHECKMAC, 0x00, 4, bytes(77)) == EXEC


def test_checkmac_and_mac_work_before_data_lock(blank: ChipDriver) -> None:
    d = blank
    d.lock_config()
    d.write_slot(4, PASSWORD + bytes(4))
    assert checkmac(d, 4, PASSWORD) == OK
    assert checkmac(d, 4, PASSWORD, good=False) == MISCOMPARE
    sn = d.chip.serial_number
    assert d.ok(MAC, 0x00, 4, CHALLENGE) == host_mac(PASSWORD, CHALLENGE, 0x00, 4, sn)


# ---- MAC -----------------------------------------------------------------------------------
def test_mac_with_challenge(guarded: ChipDriver) -> None:
    d = guarded
    sn = d.chip.serial_number
    key10 = bytes(range(100, 132))
    assert d.ok(MAC, 0x00, 10, CHALLENGE) == host_mac(key10, CHALLENGE, 0x00, 10, sn)
    assert d.ok(MAC, 0x40, 10, CHALLENGE) == host_mac(key10, CHALLENGE, 0x40, 10, sn)


def test_mac_checked_by_checkmac(guarded: ChipDriver) -> None:
    d = guarded
    mac = d.ok(MAC, 0x00, 4, CHALLENGE)
    other = bytes((0x08, 0x00, 0x04, 0x00)) + bytes(9)
    assert d.status(CHECKMAC, 0x00, 4, CHALLENGE + mac + other) == OK


def test_mac_over_random_nonce(guarded: ChipDriver) -> None:
    d = guarded
    sn = d.chip.serial_number
    num_in = bytes(range(1, 21))
    rand_out = d.ok(NONCE, 0x01, 0, num_in)
    tempkey = sha256(rand_out + num_in + b"\x16\x01\x00")
    assert d.ok(MAC, 0x01, 4) == host_mac(PASSWORD, tempkey, 0x01, 4, sn)
    assert d.status(MAC, 0x05, 4) == EXEC  # SourceFlag mismatch


def test_mac_refusals(guarded: ChipDriver) -> None:
    d = guarded
    assert d.status(MAC, 0x00, 6, CHALLENGE) == EXEC  # slot 6 has NoMac
    assert d.status(MAC, 0x00, 3, CHALLENGE) == EXEC  # private key
    assert d.status(MAC, 0x00, 1, CHALLENGE) == EXEC  # slot 1 has ReqRandom
    assert d.status(MAC, 0x01, 4) == EXEC  # no TempKey
    assert d.status(MAC, 0x00, 4) == PARSE  # challenge missing
    assert d.status(MAC, 0x08, 4, CHALLENGE) == PARSE
    d.ok(NONCE, 0x00, 0, bytes(20))
    assert len(d.ok(MAC, 0x01, 1)) == 32  # ReqRandom satisfied by a random TempKey


# ---- GenDig --------------------------------------------------------------------------------
def test_gendig_then_mac_over_tempkey(guarded: ChipDriver) -> None:
    d = guarded
    sn = d.chip.serial_number
    num_in = bytes(20)
    rand_out = d.ok(NONCE, 0x00, 0, num_in)
    tempkey = sha256(rand_out + num_in + b"\x16\x00\x00")
    assert d.ok(GENDIG, 0x02, 4) == b""
    tempkey = sha256(
        PASSWORD + b"\x15\x02\x04\x00" + bytes((sn[8], sn[0], sn[1])) + bytes(25) + tempkey
    )
    state = d.ok(INFO, 2)
    assert state[0] == 0x24  # keyId 4, GenDigData
    assert d.ok(MAC, 0x01, 10) == host_mac(bytes(range(100, 132)), tempkey, 0x01, 10, sn)


def test_gendig_config_zone(guarded: ChipDriver) -> None:
    d = guarded
    sn = d.chip.serial_number
    cfg = d.read_config()
    d.nonce_load(bytes(32))
    assert d.ok(GENDIG, 0x00, 1) == b""
    tempkey = sha256(
        cfg[32:64] + b"\x15\x00\x01\x00" + bytes((sn[8], sn[0], sn[1])) + bytes(25) + bytes(32)
    )
    assert d.ok(MAC, 0x05, 10) == host_mac(bytes(range(100, 132)), tempkey, 0x05, 10, sn)


def test_gendig_refusals(guarded: ChipDriver) -> None:
    d = guarded
    assert d.status(GENDIG, 0x02, 4) == EXEC  # no TempKey
    d.nonce_load(bytes(32))
    assert d.status(GENDIG, 0x02, 3) == EXEC  # private key
    assert d.status(GENDIG, 0x02, 1) == EXEC  # ReqRandom with a pass-through TempKey
    assert d.status(GENDIG, 0x04, 0) == PARSE
    assert d.status(GENDIG, 0x00, 4) == PARSE  # config block 4
    assert d.status(GENDIG, 0x01, 2) == PARSE  # OTP block 2
    assert d.status(GENDIG, 0x02, 4, bytes(5)) == PARSE
