"""Handler of the SHA command: SHA-256 and HMAC/SHA-256 with a slot key, over several packets.

Modes (CryptoAuthLib's ``calib_sha_base`` and ``calib_sha_hmac_*``): 0x00 start, 0x01 update
(exactly 64 bytes), 0x02 end (0..63 bytes, param2 = their count, answers the digest); 0x04 HMAC
start (param2 = key slot, no data), then the same updates, and 0x05 HMAC end (0..63 bytes,
param2 = their count, answers the HMAC). The HMAC is the standard HMAC-SHA256 keyed with the
first 32 bytes of the slot (Microchip's ``sha_hmac`` test vector is a plain RFC 2104 HMAC).
The 508A keeps the context in TempKey: a start clears TempKey, an end leaves the result in it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from ..packet import Command
from .checks import STATUS_OK, expect_data_len, expect_key_id, parse_error, refuse
from .cmd_keys import require_auth
from .cmd_nonce import symmetric_key
from .state import ChipState

if TYPE_CHECKING:
    from hashlib import _Hash

SHA_START = 0x00
SHA_UPDATE = 0x01
SHA_END = 0x02
SHA_HMAC_START = 0x04
SHA_HMAC_END = 0x05
BLOCK = 64


def handle_sha(state: ChipState, cmd: Command) -> bytes:
    mode = cmd.param1
    if mode == SHA_START:
        expect_data_len(cmd, 0)
        _start(state, hashlib.sha256())
        return STATUS_OK
    if mode == SHA_HMAC_START:
        expect_data_len(cmd, 0)
        slot = expect_key_id(cmd)
        _start(state, hmac.new(hmac_key(state, slot), digestmod=hashlib.sha256))
        return STATUS_OK
    if mode == SHA_UPDATE:
        expect_data_len(cmd, BLOCK)
        if cmd.param2 not in (0, BLOCK):
            raise parse_error(f"SHA update: param2 {cmd.param2}, 64 (or 0) expected")
        context = state.volatile.sha
        if context is None:
            raise refuse("SHA update: no SHA start")
        context.update(cmd.data)
        return STATUS_OK
    if mode in (SHA_END, SHA_HMAC_END):
        return _end(state, cmd)
    raise parse_error(
        f"SHA mode 0x{mode:02X} not emulated (0 start, 1 update, 2 end, 4 HMAC start, 5 HMAC end)"
    )


def _start(state: ChipState, context: _Hash | hmac.HMAC) -> None:
    vol = state.volatile
    vol.tempkey.clear()  # the 508A keeps the SHA context in TempKey
    vol.sha = context


def hmac_key(state: ChipState, slot: int) -> bytes:
    """The key of a SHA HMAC start: the first 32 bytes of ``slot`` (config lock needed; NoMac,
    private-key slots refused; ReqAuth honoured)."""
    what = "SHA HMAC start"
    if not state.config_locked:
        raise refuse(f"{what}: config zone not locked yet")
    if state.slot_config(slot).no_mac:
        raise refuse(f"{what}: slot {slot} has NoMac")
    key = symmetric_key(state, slot, what)
    require_auth(state, slot, what)
    return key


def _end(state: ChipState, cmd: Command) -> bytes:
    hmac_end = cmd.param1 == SHA_HMAC_END
    what = "SHA HMAC end" if hmac_end else "SHA end"
    if len(cmd.data) >= BLOCK or cmd.param2 != len(cmd.data):
        raise parse_error(
            f"{what}: {len(cmd.data)} data bytes with length param {cmd.param2}"
            " (0..63, equal expected)"
        )
    vol = state.volatile
    context = vol.sha
    if context is None:
        raise refuse(f"{what}: no SHA start")
    if isinstance(context, hmac.HMAC) != hmac_end:
        started = "an HMAC start (0x04)" if hmac_end else "a SHA start (0x00)"
        raise refuse(f"{what}: the context was not opened by {started}")
    context.update(cmd.data)
    digest = context.digest()
    vol.sha = None
    vol.tempkey.load(digest, source_flag=1)
    return digest
