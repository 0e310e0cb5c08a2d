"""Host-side digests of the ATECC508A symmetric commands, written from the published formulas.

Independent of the emulator (hashlib/hmac only): the emulator tests compare the chip's answers
with these. Message layouts follow the facts file (section 3.8) and CryptoAuthLib's host
helpers (``atca_host.c``), restated here byte by byte.
"""

from __future__ import annotations

import hashlib
import hmac


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def nonce_random(rand_out: bytes, num_in: bytes, mode: int) -> bytes:
    """TempKey after Nonce mode 0/1: SHA256(RandOut ‖ NumIn(20) ‖ 16 ‖ mode ‖ 00)."""
    return sha256(rand_out + num_in + bytes((0x16, mode, 0x00)))


def sn_tail(sn: bytes, mode: int) -> bytes:
    """The last 20 bytes of the MAC/HMAC message without OTP: 11 zeros, SN8, SN4..7 or
    zeros, SN0..1, SN2..3 or zeros (mode bit 6 = full serial number)."""
    full = bool(mode & 0x40)
    return (
        bytes(11)
        + bytes((sn[8],))
        + (sn[4:8] if full else bytes(4))
        + sn[0:2]
        + (sn[2:4] if full else bytes(2))
    )


def gendig(key: bytes, zone: int, key_id: int, sn: bytes, tempkey: bytes) -> bytes:
    """TempKey after GenDig zone 0/1/2: SHA256(key ‖ 15 ‖ zone ‖ KeyID LE ‖ SN8 SN0 SN1 ‖
    25×00 ‖ TempKey)."""
    head = bytes((0x15, zone)) + key_id.to_bytes(2, "little") + bytes((sn[8], sn[0], sn[1]))
    return sha256(key + head + bytes(25) + tempkey)


def gendig_shared_nonce(other: bytes, key_id: int, sn: bytes, tempkey: bytes) -> bytes:
    """TempKey after GenDig zone 3: input 32 = OtherData, or TempKey when KeyID bit 15 is set;
    then 15 03 KeyID-LSB 00, SN8 SN0 SN1, 25 zeros, and TempKey (or OtherData when bit 15)."""
    first, last = (tempkey, other) if key_id & 0x8000 else (other, tempkey)
    head = bytes((0x15, 0x03, key_id & 0xFF, 0x00, sn[8], sn[0], sn[1]))
    return sha256(first + head + bytes(25) + last)


def mac(block1: bytes, block2: bytes, mode: int, key_id: int, sn: bytes) -> bytes:
    """MAC command response (no OTP bits): SHA256(block1 ‖ block2 ‖ 08 ‖ mode ‖ KeyID LE ‖
    the 20-byte tail)."""
    head = bytes((0x08, mode)) + key_id.to_bytes(2, "little")
    return sha256(block1 + block2 + head + sn_tail(sn, mode))


def checkmac_response(key: bytes, challenge: bytes, other: bytes, sn: bytes) -> bytes:
    """CheckMac mode 0 client response: SHA256(key ‖ challenge ‖ Other[0:4] ‖ 8×00 ‖
    Other[4:7] ‖ SN8 ‖ Other[7:11] ‖ SN0 SN1 ‖ Other[11:13])."""
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


def hmac_command(key: bytes, tempkey: bytes, mode: int, key_id: int, sn: bytes) -> bytes:
    """HMAC command response: HMAC-SHA256(key, 32×00 ‖ TempKey ‖ 11 ‖ mode ‖ KeyID LE ‖
    the 20-byte tail)."""
    msg = bytes(32) + tempkey + bytes((0x11, mode)) + key_id.to_bytes(2, "little")
    return hmac.new(key, msg + sn_tail(sn, mode), hashlib.sha256).digest()


def derivekey_params(mode: int, target: int, sn: bytes) -> bytes:
    return bytes((0x1C, mode)) + target.to_bytes(2, "little") + bytes((sn[8], sn[0], sn[1]))


def derivekey_mac(parent: bytes, mode: int, target: int, sn: bytes) -> bytes:
    """DeriveKey input MAC: SHA256(parent ‖ 1C ‖ mode ‖ target LE ‖ SN8 ‖ SN0 SN1)."""
    return sha256(parent + derivekey_params(mode, target, sn))


def derived_key(source: bytes, mode: int, target: int, sn: bytes, tempkey: bytes) -> bytes:
    """DeriveKey result: SHA256(source ‖ 1C ‖ mode ‖ target LE ‖ SN8 SN0 SN1 ‖ 25×00 ‖
    TempKey)."""
    return sha256(source + derivekey_params(mode, target, sn) + bytes(25) + tempkey)


def write_mac(tempkey: bytes, p1: int, address: int, sn: bytes, plain: bytes) -> bytes:
    """Encrypted Write MAC: SHA256(TempKey ‖ 12 ‖ p1 ‖ address LE ‖ SN8 ‖ SN0 SN1 ‖ 25×00 ‖
    plaintext)."""
    head = bytes((0x12, p1)) + address.to_bytes(2, "little") + bytes((sn[8], sn[0], sn[1]))
    return sha256(tempkey + head + bytes(25) + plain)
