"""Handlers of the TempKey and symmetric commands: Nonce, Random, SHA, GenDig, MAC, CheckMac.

TempKey formulas follow the facts file section 3.8. A successful CheckMac records its key slot
as the current authorization (used by keys whose KeyConfig has ReqAuth); see docs/emulator.md.
"""

from __future__ import annotations

import hashlib

from ..errors import CheckmacVerifyError
from ..packet import Command
from .checks import (
    STATUS_OK,
    expect_data_len,
    expect_key_id,
    expect_mode,
    expect_param2,
    parse_error,
    refuse,
)
from .cmd_keys import require_auth
from .state import ChipState, sha256

NONCE_PASSTHROUGH = 0x03

SHA_START = 0x00
SHA_UPDATE = 0x01
SHA_END = 0x02


# --------------------------------------------------------------------------------------------
# Nonce, Random
# --------------------------------------------------------------------------------------------
def handle_nonce(state: ChipState, cmd: Command) -> bytes:
    expect_mode(cmd, {0x00, 0x01, NONCE_PASSTHROUGH})
    expect_param2(cmd, 0)
    tk = state.volatile.tempkey
    if cmd.param1 == NONCE_PASSTHROUGH:
        expect_data_len(cmd, 32)
        tk.load(cmd.data, source_flag=1)
        return STATUS_OK
    expect_data_len(cmd, 20)
    rand_out = state.random32()
    tk.load(sha256(rand_out + cmd.data + bytes((0x16, cmd.param1, 0x00))), source_flag=0)
    return rand_out


def handle_random(state: ChipState, cmd: Command) -> bytes:
    expect_mode(cmd, {0x00, 0x01})
    expect_param2(cmd, 0)
    expect_data_len(cmd, 0)
    return state.random32()


# --------------------------------------------------------------------------------------------
# SHA
# --------------------------------------------------------------------------------------------
def handle_sha(state: ChipState, cmd: Command) -> bytes:
    vol = state.volatile
    if cmd.param1 == SHA_START:
        expect_data_len(cmd, 0)
        vol.tempkey.clear()  # the 508A keeps the SHA context in TempKey
        vol.sha = hashlib.sha256()
        return STATUS_OK
    if cmd.param1 == SHA_UPDATE:
        expect_data_len(cmd, 64)
        if cmd.param2 not in (0, 64):
            raise parse_error(f"SHA update: param2 {cmd.param2}, 64 (or 0) expected")
        if vol.sha is None:
            raise refuse("SHA update: no SHA start")
        vol.sha.update(cmd.data)
        return STATUS_OK
    if cmd.param1 == SHA_END:
        if len(cmd.data) > 63 or cmd.param2 != len(cmd.data):
            raise parse_error(
                f"SHA end: {len(cmd.data)} data bytes with length param {cmd.param2}"
                " (0..63, equal expected)"
            )
        if vol.sha is None:
            raise refuse("SHA end: no SHA start")
        vol.sha.update(cmd.data)
        digest = vol.sha.digest()
        vol.sha = None
        vol.tempkey.load(digest, source_flag=1)
        return digest
    raise parse_error(f"SHA mode 0x{cmd.param1:02X} not emulated (0 start, 1 update, 2 end)")


# --------------------------------------------------------------------------------------------
# GenDig
# --------------------------------------------------------------------------------------------
def handle_gendig(state: ChipState, cmd: Command) -> bytes:
    zone = cmd.param1
    if zone > 2:
        raise parse_error(f"GenDig zone 0x{zone:02X} not emulated (0 config, 1 OTP, 2 data)")
    expect_data_len(cmd, 0, 4, 32)
    key_id = cmd.param2
    if zone == 0 and key_id > 3:
        raise parse_error(f"GenDig config: block {key_id} out of range 0..3")
    if zone == 1 and key_id > 1:
        raise parse_error(f"GenDig OTP: block {key_id} out of range 0..1")
    if zone == 2:
        expect_key_id(cmd)
    tk = state.volatile.tempkey
    if not state.config_locked:
        raise refuse("GenDig: config zone not locked yet")
    if not tk.valid:
        raise refuse("GenDig: TempKey is not valid (run Nonce first)")
    if zone == 2:
        slot = key_id
        if not state.data_locked:
            raise refuse("GenDig data: data zone not locked yet")
        kc = state.key_config(slot)
        if kc.private:
            raise refuse(f"GenDig: slot {slot} holds a private key")
        if kc.req_random and tk.source_flag != 0:
            raise refuse(f"GenDig: slot {slot} has ReqRandom, TempKey is not from a random Nonce")
        require_auth(state, slot, "GenDig")
        key = bytes(state.memory.slots[slot][0:32])
    elif zone == 0:
        key = bytes(state.config[32 * key_id : 32 * key_id + 32])
    else:
        if not state.data_locked:
            raise refuse("GenDig OTP: OTP zone not locked yet")
        key = bytes(state.memory.otp[32 * key_id : 32 * key_id + 32])
    sn = state.serial
    msg = (
        key
        + bytes((0x15, zone))
        + key_id.to_bytes(2, "little")
        + bytes((sn[8], sn[0], sn[1]))
        + bytes(25)
        + tk.value
    )
    tk.value = sha256(msg)
    tk.gen_dig_data = zone == 2
    tk.gen_key_data = False
    tk.key_id = key_id & 0x0F
    tk.no_mac = zone == 2 and state.slot_config(key_id).no_mac
    return STATUS_OK


# --------------------------------------------------------------------------------------------
# MAC, CheckMac
# --------------------------------------------------------------------------------------------
def _tempkey_for(state: ChipState, mode: int, what: str) -> bytes:
    tk = state.volatile.tempkey
    if not tk.valid:
        raise refuse(f"{what}: TempKey is not valid (run Nonce first)")
    if tk.source_flag != (mode >> 2) & 1:
        raise refuse(f"{what}: TempKey.SourceFlag {tk.source_flag} does not match mode bit 2")
    return tk.value


def _symmetric_key(state: ChipState, slot: int, what: str) -> bytes:
    kc = state.key_config(slot)
    if kc.private:
        raise refuse(f"{what}: slot {slot} holds a private key")
    return bytes(state.memory.slots[slot][0:32])


def handle_mac(state: ChipState, cmd: Command) -> bytes:
    mode = cmd.param1
    if mode & ~0x77 & 0xFF:
        raise parse_error(f"MAC mode 0x{mode:02X} has bits outside 0x77")
    slot = expect_key_id(cmd)
    expect_data_len(cmd, 0 if mode & 0x01 else 32)
    if not state.data_locked:
        raise refuse("MAC: data zone not locked yet")
    uses_tempkey = bool(mode & 0x03)
    tk_value = _tempkey_for(state, mode, "MAC") if uses_tempkey else b""
    if mode & 0x02:
        block1 = tk_value
    else:
        if state.slot_config(slot).no_mac:
            raise refuse(f"MAC: slot {slot} has NoMac")
        kc = state.key_config(slot)
        if kc.req_random and not (uses_tempkey and state.volatile.tempkey.source_flag == 0):
            raise refuse(f"MAC: slot {slot} has ReqRandom, a random TempKey is needed")
        require_auth(state, slot, "MAC")
        block1 = _symmetric_key(state, slot, "MAC")
    block2 = tk_value if mode & 0x01 else cmd.data
    sn = state.serial
    otp = state.memory.otp
    if mode & 0x10:
        otp_part = bytes(otp[0:11])
    else:
        otp_part = (bytes(otp[0:8]) if mode & 0x20 else bytes(8)) + bytes(3)
    with_sn = bool(mode & 0x40)
    msg = (
        block1
        + block2
        + bytes((0x08, mode))
        + slot.to_bytes(2, "little")
        + otp_part
        + bytes((sn[8],))
        + (sn[4:8] if with_sn else bytes(4))
        + sn[0:2]
        + (sn[2:4] if with_sn else bytes(2))
    )
    assert len(msg) == 88
    return sha256(msg)


def handle_checkmac(state: ChipState, cmd: Command) -> bytes:
    mode = cmd.param1
    if mode & ~0x27 & 0xFF:
        raise parse_error(f"CheckMac mode 0x{mode:02X} has bits outside 0x27")
    slot = expect_key_id(cmd)
    expect_data_len(cmd, 77)
    if not state.data_locked:
        raise refuse("CheckMac: data zone not locked yet")
    vol = state.volatile
    challenge, response, other = cmd.data[0:32], cmd.data[32:64], cmd.data[64:77]
    uses_tempkey = bool(mode & 0x03)
    tk_value = _tempkey_for(state, mode, "CheckMac") if uses_tempkey else b""
    block1 = tk_value if mode & 0x02 else _symmetric_key(state, slot, "CheckMac")
    block2 = tk_value if mode & 0x01 else challenge
    sn = state.serial
    otp8 = bytes(state.memory.otp[0:8]) if mode & 0x20 else bytes(8)
    msg = (
        block1
        + block2
        + other[0:4]
        + otp8
        + other[4:7]
        + bytes((sn[8],))
        + other[7:11]
        + sn[0:2]
        + other[11:13]
    )
    assert len(msg) == 88
    vol.tempkey.clear()
    if sha256(msg) != response:
        vol.auth_key = None
        raise CheckmacVerifyError(detail=f"CheckMac with slot {slot}: response does not match")
    vol.auth_key = slot
    return STATUS_OK
