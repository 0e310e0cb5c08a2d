"""Handler of the HMAC command (0x11): an HMAC-SHA256 over TempKey with a slot key.

The answer is HMAC-SHA256(key = slot[0:32], message of 88 bytes): 32 zero bytes ‖ TempKey ‖
11 ‖ mode ‖ KeyID (LE) ‖ the OTP/SN bytes the MAC command uses (CryptoAuthLib's ``atcah_hmac``
and ``atcah_include_data``). Mode bit 2 must equal TempKey.SourceFlag, bit 6 includes the full
serial number. The OTP bits 4 and 5 are "not applicable for ATECC508A" in CryptoAuthLib's
command header, and its ``hmac`` device test skips them on a 508A: the emulator refuses them.
"""

from __future__ import annotations

import hashlib
import hmac

from ..packet import Command
from .checks import expect_data_len, expect_key_id, parse_error, refuse
from .cmd_keys import require_auth
from .cmd_nonce import include_data, symmetric_key, tempkey_for
from .state import ChipState

HMAC_MODE_MASK = 0x74
HMAC_MODE_OTP = 0x30
HMAC_MODE_SOURCE_FLAG = 0x04
HMAC_MODE_FULL_SN = 0x40


def handle_hmac(state: ChipState, cmd: Command) -> bytes:
    mode = cmd.param1
    if mode & ~HMAC_MODE_MASK & 0xFF:
        raise parse_error(f"HMAC mode 0x{mode:02X} has bits outside 0x{HMAC_MODE_MASK:02X}")
    if mode & HMAC_MODE_OTP:
        raise parse_error(f"HMAC mode 0x{mode:02X}: the OTP bits 4 and 5 do not exist on a 508A")
    slot = expect_key_id(cmd)
    expect_data_len(cmd, 0)
    if not state.config_locked:
        raise refuse("HMAC: config zone not locked yet")
    tk = state.volatile.tempkey
    tk_value = tempkey_for(state, mode, "HMAC")
    if tk.no_mac:
        raise refuse("HMAC: TempKey was made by a GenDig over a NoMac key")
    if state.slot_config(slot).no_mac:
        raise refuse(f"HMAC: slot {slot} has NoMac")
    key = symmetric_key(state, slot, "HMAC")
    if state.key_config(slot).req_random and tk.source_flag != 0:
        raise refuse(f"HMAC: slot {slot} has ReqRandom, a random TempKey is needed")
    require_auth(state, slot, "HMAC")
    msg = bytes(32) + tk_value + bytes((cmd.opcode, mode)) + slot.to_bytes(2, "little")
    msg += include_data(state, mode)
    assert len(msg) == 88
    tk.clear()
    return hmac.new(key, msg, hashlib.sha256).digest()
