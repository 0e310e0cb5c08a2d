"""The ATECC608A/B's versions of Nonce, Sign and Verify: the Message Digest and Alternate Key
Buffers as Nonce targets and as the message source of Sign and Verify.

Sources: Microchip's public 608 command descriptions (the TNGTLS/TFLXTLS data sheets on
onlinedocs.microchip.com: "Nonce - Random", "Nonce - Fixed", "Sign - External Message", "Verify
- External Public Key Mode"), application note AN3539 (the Message Digest Buffer "frees the
TempKey for other operations"), and what CryptoAuthLib sends a 608 (``calib_nonce_load``,
``calib_sign``, ``calib_verify_extern`` and ``calib_verify_stored``: a Nonce with target 0x40
then Sign 0xA0 / Verify 0x22 or 0x20). The signing and verifying themselves are the 508A's
(:mod:`.cmd_keys`); choices are listed in docs/emulator.md.
"""

from __future__ import annotations

from ..packet import Command
from .checks import STATUS_OK, expect_data_len, expect_key_id, expect_param2, parse_error, refuse
from .cmd_keys import (
    VERIFY_EXTERNAL,
    VERIFY_INVALIDATE,
    VERIFY_STORED,
    VERIFY_VALIDATE,
    sign,
    verify,
    verify_validate,
)
from .state import ChipState, sha256

NONCE_RANDOM_MODES = frozenset({0x00, 0x01})
NONCE_PASSTHROUGH = 0x03
NONCE_INPUT_64 = 0x20
NONCE_TARGET_MASK = 0xC0
NONCE_TARGET_TEMPKEY = 0x00
NONCE_TARGET_MSG_DIGEST = 0x40
NONCE_TARGET_ALT_KEY = 0x80
NONCE_CALC_TEMPKEY = 0x8000
"""Random Nonce, param2 bit 15: TempKey takes the place of the random number."""

SIGN_INVALIDATE = 0x01
SIGN_SOURCE_MSG_DIGEST = 0x20
SIGN_EXTERNAL = 0x80
SIGN_MODE_BITS = 0xE1

VERIFY_SOURCE_MSG_DIGEST = 0x20
VERIFY_MAC = 0x80


# --------------------------------------------------------------------------------------------
# Nonce
# --------------------------------------------------------------------------------------------
def handle_nonce(state: ChipState, cmd: Command) -> bytes:
    mode = cmd.param1
    if mode in NONCE_RANDOM_MODES:
        return _random_nonce(state, cmd)
    if mode & 0x03 != NONCE_PASSTHROUGH or mode & 0x1C:
        raise parse_error(
            f"Nonce mode 0x{mode:02X}: not 0x00/0x01 (random) or a pass-through (0x03 with"
            " target bits 6-7 and the 64-byte bit 5)"
        )
    expect_param2(cmd, 0)
    target = mode & NONCE_TARGET_MASK
    long = bool(mode & NONCE_INPUT_64)
    if target not in (NONCE_TARGET_TEMPKEY, NONCE_TARGET_MSG_DIGEST, NONCE_TARGET_ALT_KEY):
        raise parse_error(f"Nonce mode 0x{mode:02X}: target bits 6-7 = 11 do not exist")
    if long and target == NONCE_TARGET_ALT_KEY:
        raise parse_error("Nonce: the Alternate Key Buffer takes 32 bytes, not 64")
    expect_data_len(cmd, 64 if long else 32)
    vol = state.volatile
    if target == NONCE_TARGET_TEMPKEY:
        vol.tempkey.load(cmd.data, source_flag=1)
    elif target == NONCE_TARGET_MSG_DIGEST:
        vol.msg_digest = bytes(cmd.data).ljust(64, b"\x00")
    else:
        vol.alt_key = bytes(cmd.data)
    return STATUS_OK


def _random_nonce(state: ChipState, cmd: Command) -> bytes:
    """TempKey = SHA256(RandOut or TempKey ‖ NumIn ‖ 16 ‖ mode ‖ 00); answers RandOut, or the
    new TempKey when param2 is 0x8000 (no random number is drawn then)."""
    if cmd.param2 not in (0x0000, NONCE_CALC_TEMPKEY):
        raise parse_error(f"Nonce random: param2 0x{cmd.param2:04X}, 0x0000 or 0x8000 expected")
    expect_data_len(cmd, 20)
    tk = state.volatile.tempkey
    if cmd.param2 == NONCE_CALC_TEMPKEY:
        if not tk.valid:
            raise refuse("Nonce random with param2 0x8000: TempKey is not valid")
        first = tk.value
    else:
        first = state.random32()
    value = sha256(first + cmd.data + bytes((cmd.opcode, cmd.param1, 0x00)))
    tk.load(value, source_flag=0)
    return value if cmd.param2 == NONCE_CALC_TEMPKEY else first


# --------------------------------------------------------------------------------------------
# Sign, Verify
# --------------------------------------------------------------------------------------------
def handle_sign(state: ChipState, cmd: Command) -> bytes:
    """Modes: 0x80/0xC0 external from TempKey, 0xA0/0xE0 from the Message Digest Buffer;
    0x00/0x20/0x40/0x60 internal (bit 6 includes the serial number; internal messages are
    always in TempKey, so bit 5 only enters the message as part of the mode byte)."""
    mode = cmd.param1
    if mode & ~SIGN_MODE_BITS & 0xFF:
        raise parse_error(f"Sign mode 0x{mode:02X} has bits outside 0x{SIGN_MODE_BITS:02X}")
    if mode & SIGN_INVALIDATE:
        raise parse_error(f"Sign mode 0x{mode:02X}: bit 0 (for Verify invalidate) not emulated")
    expect_data_len(cmd, 0)
    slot = expect_key_id(cmd)
    return sign(
        state,
        mode,
        slot,
        external=bool(mode & SIGN_EXTERNAL),
        from_msg_digest=bool(mode & SIGN_SOURCE_MSG_DIGEST),
    )


def handle_verify(state: ChipState, cmd: Command) -> bytes:
    """Modes: 0x00/0x20 stored, 0x02/0x22 external (bit 5: the message is in the Message
    Digest Buffer), 0x03 validate, 0x07 invalidate. Bit 7 (MAC output) is not emulated."""
    mode = cmd.param1
    if mode & VERIFY_MAC:
        raise parse_error(f"Verify mode 0x{mode:02X}: the MAC output (bit 7) is not emulated")
    if mode in (VERIFY_VALIDATE, VERIFY_INVALIDATE):
        return verify_validate(state, cmd)
    base = mode & ~VERIFY_SOURCE_MSG_DIGEST & 0xFF
    if base not in (VERIFY_STORED, VERIFY_EXTERNAL):
        raise parse_error(
            f"Verify mode 0x{mode:02X} not emulated (0x00/0x20 stored, 0x02/0x22 external,"
            " 0x03 validate and 0x07 invalidate are)"
        )
    return verify(state, cmd, base, from_msg_digest=bool(mode & VERIFY_SOURCE_MSG_DIGEST))
