"""Handler of the DeriveKey command (0x1C): a new key for a slot from a key and TempKey.

Rules from Microchip's public DeriveKey command description (the 608 data sheets published on
onlinedocs.microchip.com, same text as the ATSHA204A data sheet) and CryptoAuthLib's
``atcah_derive_key`` / ``atcah_derive_key_mac``:

* SlotConfig[target] bit 13 must be set. Bit 12 clear: Roll, the source key is the target slot
  itself; set: Create, the source key is the parent, SlotConfig[target].WriteKey.
* Bit 15 set: 32 bytes of MAC must come with the command,
  SHA256(parent ‖ 1C ‖ mode ‖ target (LE) ‖ SN8 ‖ SN0 SN1), the parent always being WriteKey.
* Refused: before the config lock, on a private-key slot, on an individually locked slot.
* TempKey must be valid, its SourceFlag must equal mode bit 2, and must be random when the
  source key has ReqRandom. ReqAuth is honoured for the target (Roll) or the parent (Create,
  and whenever a MAC is checked).
* New key = SHA256(source ‖ 1C ‖ mode ‖ target (LE) ‖ SN8 ‖ SN0 SN1 ‖ 25×00 ‖ TempKey), written
  to the first 32 bytes of the target slot; TempKey is invalid afterwards.
"""

from __future__ import annotations

from ..errors import CheckmacVerifyError
from ..packet import Command
from .checks import STATUS_OK, expect_data_len, expect_key_id, parse_error, refuse
from .cmd_keys import require_auth
from .state import ChipState, sha256

DERIVE_KEY_RANDOM_FLAG = 0x04
SLOTCFG_DERIVE_ALLOWED = 0x2000
SLOTCFG_DERIVE_CREATE = 0x1000
SLOTCFG_DERIVE_MAC = 0x8000


def handle_derivekey(state: ChipState, cmd: Command) -> bytes:
    mode = cmd.param1
    if mode & ~DERIVE_KEY_RANDOM_FLAG & 0xFF:
        raise parse_error(f"DeriveKey mode 0x{mode:02X}: only bit 2 (random) may be set")
    target = expect_key_id(cmd)
    expect_data_len(cmd, 0, 32)
    if not state.config_locked:
        raise refuse("DeriveKey: config zone not locked yet")
    if state.key_config(target).private:
        raise refuse(f"DeriveKey: slot {target} holds a private key")
    if state.slot_locked(target):
        raise refuse(f"DeriveKey: slot {target} is locked")
    sc = state.slot_config(target)
    if not sc.raw & SLOTCFG_DERIVE_ALLOWED:
        raise refuse(f"DeriveKey: SlotConfig 0x{sc.raw:04X} of slot {target} lacks bit 13")
    parent = sc.write_key
    source = parent if sc.raw & SLOTCFG_DERIVE_CREATE else target
    needs_mac = bool(sc.raw & SLOTCFG_DERIVE_MAC)
    if needs_mac and len(cmd.data) != 32:
        raise refuse(f"DeriveKey: slot {target} requires an authorizing MAC (SlotConfig bit 15)")
    if state.key_config(source).private or (needs_mac and state.key_config(parent).private):
        raise refuse(f"DeriveKey: the parent slot {parent} holds a private key")
    tk = state.volatile.tempkey
    if not tk.valid:
        raise refuse("DeriveKey: TempKey is not valid (run Nonce first)")
    if tk.no_mac:
        raise refuse("DeriveKey: TempKey was made by a GenDig over a NoMac key")
    if tk.source_flag != (mode >> 2) & 1:
        raise refuse(f"DeriveKey: TempKey.SourceFlag {tk.source_flag} does not match mode bit 2")
    if state.key_config(source).req_random and tk.source_flag != 0:
        raise refuse(f"DeriveKey: source slot {source} has ReqRandom, TempKey is not random")
    require_auth(state, source, "DeriveKey")
    if needs_mac and parent != source:
        require_auth(state, parent, "DeriveKey")
    sn = state.serial
    params = bytes((cmd.opcode, mode)) + target.to_bytes(2, "little") + bytes((sn[8], sn[0], sn[1]))
    if needs_mac:
        parent_key = bytes(state.memory.slots[parent][0:32])
        if sha256(parent_key + params) != cmd.data:
            tk.clear()
            raise CheckmacVerifyError(detail=f"DeriveKey of slot {target}: input MAC mismatch")
    source_key = bytes(state.memory.slots[source][0:32])
    new_key = sha256(source_key + params + bytes(25) + tk.value)
    state.memory.slots[target][0:32] = new_key
    tk.clear()
    return STATUS_OK
