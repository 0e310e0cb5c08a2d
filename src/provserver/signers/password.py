"""The password scheme of chip signer modules: key derivation and on-chip authorization.

A protected module's signer key has KeyConfig.ReqAuth=1 with AuthKey = the password-key slot,
which holds ``PBKDF2-HMAC-SHA256(password, salt, iterations, 32)`` (salt and iterations are
stored readable on the module). To authorize the key the host proves it knows that slot's value
to the chip itself, never sending it:

1. ``Nonce`` in random mode with a fresh 20-byte NumIn: the chip returns RandOut and sets
   TempKey = SHA-256(RandOut ‖ NumIn ‖ 0x16 ‖ 0x00 ‖ 0x00) (source flag "random");
2. ``CheckMac`` mode 0x01 (second 32-byte block = TempKey, source flag random) on the password
   slot, with the response SHA-256 over the 88-byte CheckMac message computed here. A match
   authorizes the ReqAuth key until the chip sleeps; a miscompare means a wrong password.

Pure computations (bytes in, bytes out) except :func:`authorize`, which drives a Device.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from typing import Protocol

from atcaprov.errors import CheckmacVerifyError

KDF_PBKDF2_SHA256 = 1
DEFAULT_ITERATIONS = 200_000
SALT_SIZE = 32
KEY_SIZE = 32
NONCE_NUMIN_SIZE = 20
NONCE_OPCODE = 0x16
NONCE_MODE_RANDOM_SEED_UPDATE = 0x00
CHECKMAC_MODE_BLOCK2_TEMPKEY = 0x01
# OtherData of our CheckMac: the opcode/mode/key-id header a MAC command would have (0x08, mode
# 0x01), then zeros. Any fixed 13 bytes work as long as host and chip use the same ones.
CHECKMAC_OTHER_DATA = bytes((0x08, CHECKMAC_MODE_BLOCK2_TEMPKEY, 0x00, 0x00)) + bytes(9)


class AuthorizationDevice(Protocol):
    """The part of :class:`atcaprov.device.Device` the authorization needs."""

    def nonce(self, num_in: bytes) -> bytes: ...

    def checkmac(
        self, mode: int, key_id: int, challenge32: bytes, response32: bytes, other13: bytes
    ) -> bool: ...


def derive_password_key(password: str, salt: bytes, iterations: int) -> bytes:
    """The 32-byte password key: PBKDF2-HMAC-SHA256 over the NFC-normalised UTF-8 password."""
    if len(salt) != SALT_SIZE:
        raise ValueError(f"salt must be {SALT_SIZE} bytes, got {len(salt)}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    data = unicodedata.normalize("NFC", password).encode("utf-8")
    return hashlib.pbkdf2_hmac("sha256", data, salt, iterations, KEY_SIZE)


def nonce_random_tempkey(rand_out: bytes, num_in: bytes, mode: int = 0) -> bytes:
    """TempKey after a random-mode Nonce: SHA-256(RandOut ‖ NumIn ‖ 0x16 ‖ mode ‖ 0x00)."""
    if len(rand_out) != 32 or len(num_in) != NONCE_NUMIN_SIZE:
        raise ValueError(
            f"nonce: RandOut must be 32 and NumIn 20 bytes, got {len(rand_out)}/{len(num_in)}"
        )
    return hashlib.sha256(rand_out + num_in + bytes((NONCE_OPCODE, mode, 0x00))).digest()


def checkmac_response(
    key: bytes, challenge: bytes, other_data: bytes, serial: bytes, otp8: bytes | None = None
) -> bytes:
    """SHA-256 of the 88-byte CheckMac message.

    Layout: key(32) ‖ challenge(32) ‖ Other[0:4] ‖ OTP[0:8] or 8 zeros ‖ Other[4:7] ‖ SN[8] ‖
    Other[7:11] ‖ SN[0:2] ‖ Other[11:13].
    """
    if len(key) != 32 or len(challenge) != 32 or len(other_data) != 13 or len(serial) != 9:
        raise ValueError(
            "checkmac: key/challenge must be 32, other data 13 and serial 9 bytes, got "
            f"{len(key)}/{len(challenge)}/{len(other_data)}/{len(serial)}"
        )
    otp = otp8 if otp8 is not None else bytes(8)
    msg = (
        key
        + challenge
        + other_data[0:4]
        + otp
        + other_data[4:7]
        + serial[8:9]
        + other_data[7:11]
        + serial[0:2]
        + other_data[11:13]
    )
    assert len(msg) == 88
    return hashlib.sha256(msg).digest()


def authorize(device: AuthorizationDevice, *, auth_slot: int, key: bytes, serial: bytes) -> bool:
    """Nonce + CheckMac: authorize the ReqAuth key whose AuthKey is ``auth_slot``.

    Must run inside one ``device.session()`` together with the operation it authorizes (a sleep
    drops the authorization). Returns False if the chip miscompares (wrong key); transport and
    other chip errors propagate.
    """
    num_in = os.urandom(NONCE_NUMIN_SIZE)
    rand_out = device.nonce(num_in)
    tempkey = nonce_random_tempkey(bytes(rand_out), num_in)
    response = checkmac_response(key, tempkey, CHECKMAC_OTHER_DATA, serial)
    try:
        return bool(
            device.checkmac(
                CHECKMAC_MODE_BLOCK2_TEMPKEY, auth_slot, bytes(32), response, CHECKMAC_OTHER_DATA
            )
        )
    except CheckmacVerifyError:
        return False
