"""Random, Nonce, SHA, GenKey, Sign, Verify, ECDH, PrivWrite on the emulated 508A."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.chip import ChipDriver
from tests.support.keys import pub as raw_pub
from tests.support.keys import raw_public_key, sign_digest, verify_raw

READ, WRITE, INFO, NONCE, RANDOM, SHA = 0x02, 0x12, 0x30, 0x16, 0x1B, 0x47
GENKEY, SIGN, VERIFY, ECDH, PRIVWRITE = 0x40, 0x41, 0x45, 0x43, 0x46
OK, MISCOMPARE, PARSE, ECC_FAULT, EXEC = 0x00, 0x01, 0x03, 0x05, 0x0F
PATTERN = bytes.fromhex("FFFF0000") * 8


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# ---- Random, Nonce -------------------------------------------------------------------------
def test_random_pattern_before_config_lock(blank: ChipDriver) -> None:
    assert blank.ok(RANDOM, 0) == PATTERN
    assert blank.ok(RANDOM, 1) == PATTERN


def test_random_after_config_lock(configured: ChipDriver) -> None:
    a, b = configured.ok(RANDOM, 0), configured.ok(RANDOM, 0)
    assert len(a) == 32 and a != PATTERN and a != b
    assert configured.status(RANDOM, 2) == PARSE
    assert configured.status(RANDOM, 0, 1) == PARSE


def test_nonce_random_gives_pattern_before_config_lock(blank: ChipDriver) -> None:
    assert blank.ok(NONCE, 0, 0, bytes(20)) == PATTERN
    assert blank.ok(NONCE, 1, 0, bytes(20)) == PATTERN
    state = blank.ok(INFO, 2)
    assert state[1] & 0x80 and not state[0] & 0x10  # valid, SourceFlag random


@pytest.mark.parametrize(
    ("mode", "p2", "data"),
    [
        (2, 0, bytes(20)),
        (0, 0, bytes(32)),
        (3, 0, bytes(20)),
        (0, 1, bytes(20)),
        (0x80, 0, bytes(20)),
    ],
)
def test_nonce_bad_parameters(blank: ChipDriver, mode: int, p2: int, data: bytes) -> None:
    assert blank.status(NONCE, mode, p2, data) == PARSE


# ---- SHA -----------------------------------------------------------------------------------
def test_sha_start_update_end(blank: ChipDriver) -> None:
    msg = bytes(range(256)) * 2 + b"tail-bytes"
    assert blank.ok(SHA, 0) == b""
    for i in range(0, len(msg) - len(msg) % 64, 64):
        assert blank.ok(SHA, 1, 64, msg[i : i + 64]) == b""
    tail = msg[len(msg) - len(msg) % 64 :]
    assert blank.ok(SHA, 2, len(tail), tail) == sha256(msg)


def test_sha_empty_message(blank: ChipDriver) -> None:
    blank.ok(SHA, 0)
    assert blank.ok(SHA, 2, 0) == sha256(b"")


def test_sha_errors(blank: ChipDriver) -> None:
    assert blank.status(SHA, 2, 0) == EXEC  # end without start
    assert blank.status(SHA, 1, 64, bytes(64)) == EXEC  # update without start
    blank.ok(SHA, 0)
    assert blank.status(SHA, 1, 64, bytes(63)) == PARSE
    assert blank.status(SHA, 2, 5, bytes(4)) == PARSE  # length mismatch
    assert blank.status(SHA, 2, 64, bytes(64)) == PARSE
    assert blank.status(SHA, 3, 8) == PARSE  # public-key mode: not emulated
    blank.chip.sleep()
    assert blank.status(SHA, 2, 0) == EXEC  # context lost in sleep


# ---- GenKey --------------------------------------------------------------------------------
def test_genkey_needs_config_lock(blank: ChipDriver) -> None:
    assert blank.status(GENKEY, 0x04, 0) == EXEC


def test_genkey_create_and_public(configured: ChipDriver) -> None:
    pub = configured.genkey(0)
    assert len(pub) == 64
    raw_public_key(pub)  # a point on P-256
    assert configured.ok(GENKEY, 0x00, 0) == pub
    assert configured.genkey(0) != pub  # a new key each time


def test_genkey_refusals(configured: ChipDriver) -> None:
    d = configured
    assert d.status(GENKEY, 0x04, 4) == EXEC  # not a private-key slot
    assert d.status(GENKEY, 0x00, 10) == EXEC
    assert d.status(GENKEY, 0x00, 0) == ECC_FAULT  # private slot holding no key
    assert d.status(GENKEY, 0x01, 0) == PARSE
    assert d.status(GENKEY, 0x20, 0) == PARSE
    assert d.status(GENKEY, 0x14, 0, bytes(3)) == PARSE
    assert d.status(GENKEY, 0x04, 16) == PARSE
    assert d.status(GENKEY, 0x04, 0, bytes(5)) == PARSE


def test_genkey_after_data_lock_follows_writeconfig(blank: ChipDriver) -> None:
    d = blank
    d.set_slot_config(7, 0x0082)  # slot 7: private, WriteConfig 0 -> GenKey not allowed
    d.lock_config()
    d.genkey(7)
    d.genkey(0)
    d.lock_data()
    assert d.status(GENKEY, 0x04, 7) == EXEC
    assert d.ok(GENKEY, 0x00, 7)  # public key still available
    assert len(d.genkey(0)) == 64  # slot 0 (0x208F) allows GenKey


def test_genkey_on_locked_slot_refused(configured: ChipDriver) -> None:
    d = configured
    d.genkey(0)
    d.lock_data()
    d.ok(0x17, (0 << 2) | 2, 0)  # slot 0 is lockable (KeyConfig 0x0033)
    assert d.status(GENKEY, 0x04, 0) == EXEC


def test_genkey_digest_and_sign_internal(provisioned: ChipDriver) -> None:
    """GenKey(0x08) puts the pubkey digest in TempKey; Sign internal signs the 55-byte message."""
    d = provisioned
    sn = d.chip.serial_number
    cfg = d.read_config()
    nonce = bytes(range(32))
    d.chip.wake()
    d.nonce_load(nonce)
    pub0 = d.ok(GENKEY, 0x08, 0)
    tempkey = sha256(nonce + b"\x40\x08\x00\x00" + bytes((sn[8],)) + sn[0:2] + bytes(25) + pub0)
    sig = d.ok(SIGN, 0x00, 2)
    pub2 = d.ok(GENKEY, 0x00, 2)
    flags = 0x00 | 0x10 | 0x40  # keyId 0, SourceFlag input, GenKeyData
    msg = (
        tempkey
        + b"\x41\x00"
        + b"\x02\x00"
        + cfg[20:22]
        + cfg[96:98]
        + bytes((flags, 0, 0, sn[8]))
        + bytes(4)
        + sn[0:2]
        + bytes(2)
        + b"\x01\x00\x00"
    )
    assert len(msg) == 55
    verify_raw(pub2, sha256(msg), sig)


def test_genkey_digest_without_tempkey_keeps_the_old_key(configured: ChipDriver) -> None:
    d = configured
    pub = d.genkey(0)
    d.chip.sleep()
    assert d.status(GENKEY, 0x0C, 0) == EXEC  # create + digest, but no TempKey
    assert d.ok(GENKEY, 0x00, 0) == pub


def test_genkey_pubkey_digest_mode(blank: ChipDriver) -> None:
    d = blank
    d.set_key_config(9, 0x0010)  # P-256 public key
    d.set_slot_config(9, 0x0000)
    d.lock_config()
    pub = d.genkey(0)
    d.write_slot(9, bytes(4) + pub[:32] + bytes(4) + pub[32:])
    assert d.status(GENKEY, 0x10, 9, bytes(3)) == EXEC  # no TempKey yet
    d.chip.wake()
    d.nonce_load(bytes(32))
    assert d.status(GENKEY, 0x10, 9, b"\x01\x02\x03") == OK
    assert d.ok(INFO, 2)[0] & 0x40  # GenKeyData
    assert d.status(GENKEY, 0x10, 0, bytes(3)) == EXEC  # slot 0 holds a private key
    assert d.status(GENKEY, 0x10, 9) == PARSE  # OtherData missing


# ---- Sign ----------------------------------------------------------------------------------
def test_sign_external_verifies(provisioned: ChipDriver) -> None:
    d = provisioned
    pub = d.ok(GENKEY, 0x00, 0)
    digest = sha256(b"factory line message")
    d.chip.wake()
    d.nonce_load(digest)
    sig = d.ok(SIGN, 0x80, 0)
    verify_raw(pub, digest, sig)
    with pytest.raises(InvalidSignature):
        verify_raw(pub, sha256(b"other"), sig)
    assert d.status(SIGN, 0x80, 0) == EXEC  # TempKey was consumed


def test_sign_refusals(configured: ChipDriver) -> None:
    d = configured
    d.genkey(0)
    d.genkey(7)
    d.chip.wake()
    d.nonce_load(bytes(32))
    assert d.status(SIGN, 0x80, 0) == EXEC  # data zone not locked
    d.lock_data()
    d.chip.sleep()
    assert d.status(SIGN, 0x80, 0) == EXEC  # no TempKey
    d.ok(NONCE, 0x00, 0, bytes(20))
    assert d.status(SIGN, 0x80, 0) == EXEC  # random TempKey is not a message
    d.nonce_load(bytes(32))
    assert d.status(SIGN, 0x80, 7) == EXEC  # slot 7 (0x2082): external sign not allowed
    assert d.status(SIGN, 0x80, 10) == EXEC  # not a private key
    assert d.status(SIGN, 0x80, 2) == ECC_FAULT  # private slot without a key
    assert d.status(SIGN, 0x00, 0) == EXEC  # internal needs GenDig/GenKey TempKey
    assert d.status(SIGN, 0x20, 0) == PARSE
    assert d.status(SIGN, 0xC0, 0) == PARSE
    assert d.status(SIGN, 0x80, 0, bytes(32)) == PARSE
    assert d.status(SIGN, 0x80, 17) == PARSE


# ---- Verify --------------------------------------------------------------------------------
def test_verify_external(blank: ChipDriver) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    digest = sha256(b"hello")
    sig = sign_digest(key, digest)
    pub = raw_pub(key)
    d = blank
    d.chip.wake()
    d.nonce_load(digest)
    assert d.status(VERIFY, 0x02, 0x0004, sig + pub) == OK
    assert d.status(VERIFY, 0x02, 0x0004, sig + pub) == EXEC  # TempKey consumed
    d.nonce_load(sha256(b"other"))
    assert d.status(VERIFY, 0x02, 0x0004, sig + pub) == MISCOMPARE
    d.nonce_load(digest)
    assert d.status(VERIFY, 0x02, 0x0004, sig + bytes(64)) == EXEC  # not a curve point
    assert d.status(VERIFY, 0x02, 0x0005, sig + pub) == PARSE
    assert d.status(VERIFY, 0x02, 0x0004, sig) == PARSE
    assert d.status(VERIFY, 0x01, 0x0004, sig + pub) == PARSE  # validate modes: not emulated


def test_verify_stored_and_validity(blank: ChipDriver) -> None:
    d = blank
    d.set_key_config(9, 0x0012)  # P-256 public key, PubInfo (validated)
    d.set_slot_config(9, 0x0000)
    d.set_key_config(11, 0x0010)  # P-256 public key, no validation
    d.set_slot_config(11, 0x0000)
    d.lock_config()
    pub = d.genkey(0)
    d.write_slot(9, b"\x50" + bytes(3) + pub[:32] + bytes(4) + pub[32:])  # marked valid
    d.write_slot(11, bytes(4) + pub[:32] + bytes(4) + pub[32:])
    d.lock_data()
    digest = sha256(b"stored")
    d.chip.wake()
    d.nonce_load(digest)
    sig = d.ok(SIGN, 0x80, 0)
    for slot in (9, 11):
        d.nonce_load(digest)
        assert d.status(VERIFY, 0x00, slot, sig) == OK
    d.nonce_load(sha256(b"tampered"))
    assert d.status(VERIFY, 0x00, 11, sig) == MISCOMPARE
    assert d.ok(INFO, 1, 9) == b"\x01\x00\x00\x00"
    # Rewriting a validated public key invalidates it (validity bits become 0xA).
    d.ok(WRITE, 0x82, 9 << 3, b"\x50" + bytes(3) + pub[:28])
    assert d.ok(INFO, 1, 9) == bytes(4)
    d.nonce_load(digest)
    assert d.status(VERIFY, 0x00, 9, sig) == EXEC
    d.nonce_load(digest)
    assert d.status(VERIFY, 0x00, 0, sig) == EXEC  # private-key slot


# ---- ECDH ----------------------------------------------------------------------------------
def test_ecdh_returns_shared_secret(provisioned: ChipDriver) -> None:
    d = provisioned
    pub2 = d.ok(GENKEY, 0x00, 2)
    peer = ec.generate_private_key(ec.SECP256R1())
    secret = d.ok(ECDH, 0x00, 2, raw_pub(peer))
    assert secret == peer.exchange(ec.ECDH(), raw_public_key(pub2))


def test_ecdh_to_next_slot_and_refusals(provisioned: ChipDriver) -> None:
    d = provisioned
    peer = raw_pub(ec.generate_private_key(ec.SECP256R1()))
    assert d.status(ECDH, 0x00, 0, peer) == OK  # slot 0 (0x208F): result goes to slot 1
    assert d.status(ECDH, 0x00, 7, peer) == EXEC  # slot 7 (0x2082): ECDH not allowed
    assert d.status(ECDH, 0x00, 10, peer) == EXEC
    assert d.status(ECDH, 0x00, 2, bytes(64)) == EXEC
    assert d.status(ECDH, 0x01, 2, peer) == PARSE


# ---- PrivWrite -----------------------------------------------------------------------------
def test_privwrite_clear_before_data_lock(configured: ChipDriver) -> None:
    d = configured
    key = ec.generate_private_key(ec.SECP256R1())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    assert d.status(PRIVWRITE, 0x00, 7, bytes(4) + scalar + bytes(32)) == OK
    assert d.ok(GENKEY, 0x00, 7) == raw_pub(key)
    assert d.status(PRIVWRITE, 0x00, 10, bytes(4) + scalar + bytes(32)) == EXEC
    assert d.status(PRIVWRITE, 0x00, 7, b"\x01" + bytes(3) + scalar + bytes(32)) == EXEC
    assert d.status(PRIVWRITE, 0x00, 7, bytes(36)) == PARSE
    d.lock_data()
    assert d.status(PRIVWRITE, 0x00, 7, bytes(4) + scalar + bytes(32)) == EXEC


def test_private_keys_never_leave_the_chip(provisioned: ChipDriver) -> None:
    """No Read of any address of a private-key slot returns data, whatever the size."""
    d = provisioned
    for slot in (0, 2, 7):
        for p1 in (0x02, 0x82):
            for addr in range(0, 0x200, 8):
                a = (addr & ~0xF8) | (slot << 3)
                rsp = d.raw(READ, p1, a)
                assert len(rsp) == 4 and rsp[1] in (EXEC, PARSE)


# ---- Verify validate / invalidate -----------------------------------------------------------
def test_verify_validate_and_invalidate(blank: ChipDriver) -> None:
    """CryptoAuthLib's validated-public-key flow: a parent key (ReadKey of the slot) signs the
    internal-sign message over the GenKey(0x10) digest of the new public key."""
    d = blank
    d.set_key_config(9, 0x0012)  # P-256 public key, PubInfo: must be validated
    d.set_slot_config(9, 0x000B)  # ReadKey = 11 (the parent), clear writes
    d.set_key_config(11, 0x0010)
    d.set_slot_config(11, 0x0000)
    d.lock_config()
    parent = ec.generate_private_key(ec.SECP256R1())
    parent_pub = raw_pub(parent)
    d.write_slot(11, bytes(4) + parent_pub[:32] + bytes(4) + parent_pub[32:])
    d.lock_data()
    sn = d.chip.serial_number
    child = raw_pub(ec.generate_private_key(ec.SECP256R1()))
    d.write_slot(9, bytes(4) + child[:32] + bytes(4) + child[32:])
    assert d.ok(INFO, 1, 9) == bytes(4)  # written, hence invalid

    def authority_signature(nonce: bytes, other3: bytes, other19: bytes) -> bytes:
        tempkey = sha256(nonce + b"\x40" + other3 + bytes((sn[8],)) + sn[0:2] + bytes(25) + child)
        msg = tempkey + b"\x41" + other19[0:10] + bytes((sn[8],)) + other19[10:14] + sn[0:2]
        msg += other19[14:19]
        return sign_digest(parent, sha256(msg))

    nonce, other3, other19 = bytes(range(32)), b"\x00\x00\x00", bytes(range(19))
    sig = authority_signature(nonce, other3, other19)
    d.chip.wake()
    assert d.status(VERIFY, 0x03, 9, sig + other19) == EXEC  # no GenKey digest in TempKey
    d.nonce_load(nonce)
    d.ok(GENKEY, 0x10, 9, other3)
    assert d.status(VERIFY, 0x03, 9, sig + bytes(19)) == MISCOMPARE  # OtherData differs
    assert d.ok(INFO, 1, 9) == bytes(4)
    d.nonce_load(nonce)
    d.ok(GENKEY, 0x10, 9, other3)
    assert d.status(VERIFY, 0x03, 9, sig + other19) == OK
    assert d.ok(INFO, 1, 9) == b"\x01\x00\x00\x00"
    d.nonce_load(nonce)
    d.ok(GENKEY, 0x10, 9, other3)
    assert d.status(VERIFY, 0x07, 9, sig + other19) == OK
    assert d.ok(INFO, 1, 9) == bytes(4)
    assert d.status(VERIFY, 0x03, 11, sig + other19) == EXEC  # slot 11 has no PubInfo
    assert d.status(VERIFY, 0x03, 9, sig) == PARSE
