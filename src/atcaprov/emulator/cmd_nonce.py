"""Handlers of the TempKey and symmetric commands: Nonce, Random, GenDig, MAC, CheckMac.

TempKey formulas follow the facts file section 3.8 and CryptoAuthLib's host helpers
(``atca_host.c``). A successful CheckMac records its key slot as the current authorization (used
by keys whose KeyConfig has ReqAuth); see docs/emulator.md. Keys in data slots may be used by
these commands once the config zone is locked, before the data lock too (Microchip's
``write_enc_data_unlock`` test runs GenDig and CheckMac on an unlocked data zone).
"""

from __future__ import annotations

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

GENDIG_ZONE_SHARED_NONCE = 0x03
GENDIG_SHARED_NONCE_TEMPKEY_FIRST = 0x8000
"""GenDig zone 3, param2 bit 15: TempKey is hashed first and the 32 bytes of data last."""


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
# GenDig
# --------------------------------------------------------------------------------------------
def handle_gendig(state: ChipState, cmd: Command) -> bytes:
    zone = cmd.param1
    if zone == GENDIG_ZONE_SHARED_NONCE:
        return _gendig_shared_nonce(state, cmd)
    if zone > GENDIG_ZONE_SHARED_NONCE:
        raise parse_error(
            f"GenDig zone 0x{zone:02X} not emulated (0 config, 1 OTP, 2 data, 3 shared nonce)"
        )
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


def _gendig_shared_nonce(state: ChipState, cmd: Command) -> bytes:
    """GenDig zone 3: TempKey = SHA256(first ‖ 15 03 p2[0] 00 ‖ SN8 SN0 SN1 ‖ 25×00 ‖ last),
    where (first, last) = (data, TempKey), or (TempKey, data) when param2 bit 15 is set
    (CryptoAuthLib's ``atcah_gen_dig``). No key slot is used."""
    expect_data_len(cmd, 32)
    if cmd.param2 & 0x7F00:
        raise parse_error(
            f"GenDig shared nonce: param2 0x{cmd.param2:04X}, only bit 15 and the low byte count"
        )
    if not state.config_locked:
        raise refuse("GenDig: config zone not locked yet")
    tk = state.volatile.tempkey
    if not tk.valid:
        raise refuse("GenDig: TempKey is not valid (run Nonce first)")
    if cmd.param2 & GENDIG_SHARED_NONCE_TEMPKEY_FIRST:
        first, last = tk.value, cmd.data
    else:
        first, last = cmd.data, tk.value
    sn = state.serial
    msg = (
        first
        + bytes((0x15, GENDIG_ZONE_SHARED_NONCE, cmd.param2 & 0xFF, 0x00))
        + bytes((sn[8], sn[0], sn[1]))
        + bytes(25)
        + last
    )
    tk.value = sha256(msg)
    tk.gen_dig_data = False
    tk.gen_key_data = False
    tk.key_id = 0
    tk.no_mac = False
    return STATUS_OK


# --------------------------------------------------------------------------------------------
# MAC, CheckMac
# --------------------------------------------------------------------------------------------
def tempkey_for(state: ChipState, mode: int, what: str) -> bytes:
    """The valid TempKey whose SourceFlag equals ``mode`` bit 2 (MAC, CheckMac, HMAC)."""
    tk = state.volatile.tempkey
    if not tk.valid:
        raise refuse(f"{what}: TempKey is not valid (run Nonce first)")
    if tk.source_flag != (mode >> 2) & 1:
        raise refuse(f"{what}: TempKey.SourceFlag {tk.source_flag} does not match mode bit 2")
    return tk.value


def symmetric_key(state: ChipState, slot: int, what: str) -> bytes:
    """The first 32 bytes of ``slot``, refused (0x0F) if it holds a private key."""
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
    if not state.config_locked:
        raise refuse("MAC: config zone not locked yet")
    uses_tempkey = bool(mode & 0x03)
    tk_value = tempkey_for(state, mode, "MAC") if uses_tempkey else b""
    if mode & 0x02:
        block1 = tk_value
    else:
        if state.slot_config(slot).no_mac:
            raise refuse(f"MAC: slot {slot} has NoMac")
        kc = state.key_config(slot)
        if kc.req_random and not (uses_tempkey and state.volatile.tempkey.source_flag == 0):
            raise refuse(f"MAC: slot {slot} has ReqRandom, a random TempKey is needed")
        require_auth(state, slot, "MAC")
        block1 = symmetric_key(state, slot, "MAC")
    block2 = tk_value if mode & 0x01 else cmd.data
    msg = block1 + block2 + bytes((0x08, mode)) + slot.to_bytes(2, "little")
    msg += include_data(state, mode)
    assert len(msg) == 88
    return sha256(msg)


def include_data(state: ChipState, mode: int) -> bytes:
    """The last 20 bytes of the MAC and HMAC messages: OTP[0:11] (mode bit 4), or OTP[0:8]
    (bit 5) or zeros, then 3 zeros; SN8; SN[4:8] (bit 6) or zeros; SN[0:2]; SN[2:4] (bit 6) or
    zeros (CryptoAuthLib's ``atcah_include_data``)."""
    sn = state.serial
    otp = state.memory.otp
    if mode & 0x10:
        otp_part = bytes(otp[0:11])
    else:
        otp_part = (bytes(otp[0:8]) if mode & 0x20 else bytes(8)) + bytes(3)
    with_sn = bool(mode & 0x40)
    return (
        otp_part
        + bytes((sn[8],))
        + (sn[4:8] if with_sn else bytes(4))
        + sn[0:2]
        + (sn[2:4] if with_sn else bytes(2))
    )


def handle_checkmac(state: ChipState, cmd: Command) -> bytes:
    mode = cmd.param1
    if mode & ~0x27 & 0xFF:
        raise parse_error(f"CheckMac mode 0x{mode:02X} has bits outside 0x27")
    slot = expect_key_id(cmd)
    expect_data_len(cmd, 77)
    if not state.config_locked:
        raise refuse("CheckMac: config zone not locked yet")
    vol = state.volatile
    challenge, response, other = cmd.data[0:32], cmd.data[32:64], cmd.data[64:77]
    uses_tempkey = bool(mode & 0x03)
    tk_value = tempkey_for(state, mode, "CheckMac") if uses_tempkey else b""
    block1 = tk_value if mode & 0x02 else symmetric_key(state, slot, "CheckMac")
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
