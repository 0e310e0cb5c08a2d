"""The ATECC608A/B's SHA command: SHA-256 and HMAC/SHA-256 in a context of its own.

Sources: Microchip's public 608 command descriptions ("SHA Command", "SHA - SHA256 Digest",
"SHA - HMAC Digest" in the TNGTLS/TFLXTLS data sheets on onlinedocs.microchip.com) and
CryptoAuthLib (``SHA_MODE_608_HMAC_END``: the 608 closes an HMAC with mode 0x02, not 0x05).

* The context lives in a buffer of its own, "not read nor written by any other commands": a
  start does not touch TempKey (the 508A keeps its context in TempKey), and any command may run
  between the steps. It is lost at sleep and power loss, like the rest of the volatile state.
* 0x00 start; 0x04 HMAC start with the key of slot param2, or of TempKey when param2 is 0xFFFF;
  0x01 update with 1 to 64 bytes (param2 = their count); 0x02 end with 0 to 64 bytes (param2 =
  their count), which answers the digest or HMAC and also leaves it in TempKey (mode 0x02), in
  the Message Digest Buffer (0x42) or nowhere else (0xC2).
* Not emulated, answered 0x03: 0x03 (public key), 0x06/0x07 (context read/write); 0x05 does not
  exist on a 608.
"""

from __future__ import annotations

import hashlib
import hmac

from ..packet import Command
from .checks import STATUS_OK, expect_data_len, expect_key_id, parse_error, refuse
from .cmd_sha import hmac_key
from .state import ChipState

SHA_START = 0x00
SHA_UPDATE = 0x01
SHA_END = 0x02
SHA_HMAC_START = 0x04
SHA_MODE_MASK = 0x07
SHA_TARGET_MASK = 0xC0
SHA_TARGET_TEMPKEY = 0x00
SHA_TARGET_MSG_DIGEST = 0x40
SHA_TARGET_OUTPUT_ONLY = 0xC0
HMAC_KEY_TEMPKEY = 0xFFFF
BLOCK = 64


def handle_sha(state: ChipState, cmd: Command) -> bytes:
    mode = cmd.param1
    step = mode & SHA_MODE_MASK
    target = mode & SHA_TARGET_MASK
    if mode & 0x38 or (target and step != SHA_END):
        raise parse_error(f"SHA mode 0x{mode:02X}: reserved bits, or a target on a non-end mode")
    vol = state.volatile
    if step == SHA_START:
        expect_data_len(cmd, 0)
        vol.sha = hashlib.sha256()
        return STATUS_OK
    if step == SHA_HMAC_START:
        expect_data_len(cmd, 0)
        vol.sha = hmac.new(_hmac_start_key(state, cmd), digestmod=hashlib.sha256)
        return STATUS_OK
    if step == SHA_UPDATE:
        _expect_counted(cmd, 1, "SHA update")
        if vol.sha is None:
            raise refuse("SHA update: no SHA start")
        vol.sha.update(cmd.data)
        return STATUS_OK
    if step == SHA_END:
        return _end(state, cmd, target)
    raise parse_error(
        f"SHA mode 0x{mode:02X} not emulated on a 608 (0 start, 1 update, 2 end, 4 HMAC start)"
    )


def _expect_counted(cmd: Command, minimum: int, what: str) -> None:
    if not minimum <= len(cmd.data) <= BLOCK or cmd.param2 != len(cmd.data):
        raise parse_error(
            f"{what}: {len(cmd.data)} data bytes with length param {cmd.param2}"
            f" ({minimum}..{BLOCK}, equal expected)"
        )


def _hmac_start_key(state: ChipState, cmd: Command) -> bytes:
    if cmd.param2 == HMAC_KEY_TEMPKEY:
        tk = state.volatile.tempkey
        if not tk.valid:
            raise refuse("SHA HMAC start with the TempKey key: TempKey is not valid")
        return tk.value
    return hmac_key(state, expect_key_id(cmd))


def _end(state: ChipState, cmd: Command, target: int) -> bytes:
    _expect_counted(cmd, 0, "SHA end")
    if target not in (SHA_TARGET_TEMPKEY, SHA_TARGET_MSG_DIGEST, SHA_TARGET_OUTPUT_ONLY):
        raise parse_error(f"SHA end: target 0x{target:02X} does not exist")
    vol = state.volatile
    context = vol.sha
    if context is None:
        raise refuse("SHA end: no SHA start")
    context.update(cmd.data)
    digest = context.digest()
    vol.sha = None
    if target == SHA_TARGET_TEMPKEY:
        vol.tempkey.load(digest, source_flag=1)
    elif target == SHA_TARGET_MSG_DIGEST:
        vol.msg_digest = digest.ljust(64, b"\x00")
    return digest
