"""Handlers of the zone commands: Info, Read, Write, Lock, UpdateExtra, Counter.

Each handler takes the chip state and the decoded command and returns the response data
(``b"\\x00"`` for a bare success), or raises the :class:`~atcaprov.errors.ChipStatusError` the
chip answers with. Shared by every model; what differs (the revision, the 608's OTP zone without
consumption mode) follows ``state.model``.
"""

from __future__ import annotations

from ..datasheet import LOCKED, Atecc508aConfigMap
from ..errors import CheckmacVerifyError
from ..packet import Command, crc16_value
from .checks import (
    STATUS_OK,
    expect_data_len,
    expect_key_id,
    expect_mode,
    parse_error,
    refuse,
)
from .state import ChipState, sha256
from .zones import (
    ZONE_CONFIG,
    ZONE_OTP,
    ZoneAddress,
    decode_address,
)

INFO_REVISION = 0
INFO_KEY_VALID = 1
INFO_STATE = 2

COUNTER_MAX = 2_097_151
OTP_MODE_CONSUMPTION = 0x55
VALIDITY_VALID = 0x5
VALIDITY_INVALID = 0xA


# --------------------------------------------------------------------------------------------
# Info
# --------------------------------------------------------------------------------------------
def handle_info(state: ChipState, cmd: Command) -> bytes:
    expect_data_len(cmd, 0)
    if cmd.param1 == INFO_REVISION:
        return state.model.revision
    if cmd.param1 == INFO_KEY_VALID:
        slot = expect_key_id(cmd)
        return bytes((int(key_valid(state, slot)), 0, 0, 0))
    if cmd.param1 == INFO_STATE:
        tk = state.volatile.tempkey
        auth = state.volatile.auth_key
        byte1 = (int(auth is not None) << 2) | ((auth or 0) & 0x0F) << 3 | int(tk.valid) << 7
        return bytes((tk.flags_byte(), byte1, 0, 0))
    raise parse_error(
        f"Info mode 0x{cmd.param1:02X} not supported (0 revision, 1 KeyValid, 2 State)"
    )


def key_valid(state: ChipState, slot: int) -> bool:
    """KeyValid of Info mode 1: P-256 private keys that are valid scalars; P-256 public keys
    whose validity nibble (high 4 bits of byte 0) is 0x5 when PubInfo requires validation
    (0xA = invalidated), otherwise always."""
    kc = state.key_config(slot)
    if not kc.is_p256:
        return False
    if kc.private:
        return state.private_scalar(slot) is not None
    if kc.pub_info:
        return state.memory.slots[slot][0] >> 4 == VALIDITY_VALID
    return True


# --------------------------------------------------------------------------------------------
# Read
# --------------------------------------------------------------------------------------------
def _zone_and_length(cmd: Command, mask: int) -> tuple[int, int]:
    if cmd.param1 & ~mask & 0xFF:
        raise parse_error(f"opcode 0x{cmd.opcode:02X}: param1 0x{cmd.param1:02X} has reserved bits")
    zone = cmd.param1 & 0x03
    if zone == 3:
        raise parse_error(f"opcode 0x{cmd.opcode:02X}: zone 3 does not exist")
    return zone, 32 if cmd.param1 & 0x80 else 4


def handle_read(state: ChipState, cmd: Command) -> bytes:
    zone, length = _zone_and_length(cmd, 0x83)
    expect_data_len(cmd, 0)
    addr = decode_address(zone, cmd.param2, length, state.model)
    if zone == ZONE_CONFIG:
        return bytes(state.config[addr.offset : addr.offset + addr.length])
    if not state.data_locked:
        raise refuse(f"read of {addr.describe()}: data zone not locked")
    if zone == ZONE_OTP:
        return bytes(state.memory.otp[addr.offset : addr.offset + addr.length])
    return _read_slot(state, addr, length)


def _read_slot(state: ChipState, addr: ZoneAddress, length: int) -> bytes:
    slot = addr.slot
    kc = state.key_config(slot)
    sc = state.slot_config(slot)
    if kc.private:
        raise refuse(f"read of {addr.describe()}: slot holds a private key")
    raw = bytes(state.memory.slots[slot][addr.offset : addr.offset + addr.length])
    raw = raw.ljust(length, b"\x00")  # partial last block: zero-filled
    if sc.encrypt_read:
        return _encrypted_read(state, addr, sc.read_key, raw)
    if sc.is_secret:
        raise refuse(f"read of {addr.describe()}: IsSecret slot without EncryptRead")
    return raw


def _encrypted_read(state: ChipState, addr: ZoneAddress, read_key: int, raw: bytes) -> bytes:
    if len(raw) != 32:
        raise refuse(f"read of {addr.describe()}: encrypted reads are 32 bytes only")
    tk = state.volatile.tempkey
    if not (tk.valid and tk.gen_dig_data and tk.key_id == read_key):
        raise refuse(
            f"encrypted read of {addr.describe()}: needs a prior GenDig with ReadKey slot"
            f" {read_key}"
        )
    out = bytes(a ^ b for a, b in zip(raw, tk.value, strict=True))
    tk.clear()
    return out


# --------------------------------------------------------------------------------------------
# Write
# --------------------------------------------------------------------------------------------
def handle_write(state: ChipState, cmd: Command) -> bytes:
    zone, length = _zone_and_length(cmd, 0xC3)
    encrypted = bool(cmd.param1 & 0x40)
    expect_data_len(cmd, length + (32 if encrypted else 0))
    addr = decode_address(zone, cmd.param2, length, state.model)
    value = cmd.data[:length]
    if zone == ZONE_CONFIG:
        _write_config(state, addr, value, encrypted)
    elif zone == ZONE_OTP:
        _write_otp(state, addr, value, encrypted)
    else:
        _write_slot(state, cmd, addr, value, encrypted)
    return STATUS_OK


def _write_config(state: ChipState, addr: ZoneAddress, value: bytes, encrypted: bool) -> None:
    if state.config_locked:
        raise refuse(f"write of {addr.describe()}: config zone is locked")
    if encrypted:
        raise refuse(f"write of {addr.describe()}: config writes cannot be encrypted")
    touched = range(addr.offset, addr.offset + addr.length)
    writable = state.model.config_writable
    bad = [i for i in touched if i not in writable]
    if bad:
        raise refuse(
            f"write of {addr.describe()}: bytes {bad[0]}..{bad[-1]} are not writable"
            " (0..15 and 84..87 never are)"
        )
    state.config[addr.offset : addr.offset + addr.length] = value


def _write_otp(state: ChipState, addr: ZoneAddress, value: bytes, encrypted: bool) -> None:
    if not state.config_locked:
        raise refuse(f"write of {addr.describe()}: config zone not locked yet")
    if encrypted:
        raise refuse(f"write of {addr.describe()}: OTP writes cannot be encrypted")
    otp = state.memory.otp
    if not state.data_locked:
        if addr.length != 32:
            raise refuse(f"write of {addr.describe()}: before the data lock only 32-byte writes")
        otp[addr.offset : addr.offset + 32] = value
        return
    cmap = state.cmap
    if not isinstance(cmap, Atecc508aConfigMap):
        # The 608 has no OTPmode byte (18 is CountMatch): "the 608 eliminated consumption
        # mode" (CryptoAuthLib's write_otp_zone test, which expects 0x0F here).
        raise refuse(
            f"write of {addr.describe()}: the OTP zone of an {state.model.name} is read-only"
            " after the data lock"
        )
    mode = state.config[cmap.otp_mode]
    if mode != OTP_MODE_CONSUMPTION:
        raise refuse(
            f"write of {addr.describe()}: OTP zone is locked and OTPmode is 0x{mode:02X}"
            f" (only consumption mode 0x{OTP_MODE_CONSUMPTION:02X} allows writes)"
        )
    old = otp[addr.offset : addr.offset + addr.length]
    raised = [addr.offset + i for i, (o, n) in enumerate(zip(old, value, strict=True)) if n & ~o]
    if raised:
        raise refuse(
            f"write of {addr.describe()}: consumption mode only clears bits; byte {raised[0]}"
            f" would turn a 0 bit back to 1"
        )
    otp[addr.offset : addr.offset + addr.length] = value


def _write_slot(
    state: ChipState, cmd: Command, addr: ZoneAddress, value: bytes, encrypted: bool
) -> None:
    slot = addr.slot
    if not state.config_locked:
        raise refuse(f"write of {addr.describe()}: config zone not locked yet")
    kc = state.key_config(slot)
    if kc.private:
        raise refuse(
            f"write of {addr.describe()}: slot {slot} holds a private key (KeyConfig.Private);"
            " it takes GenKey or PrivWrite, never Write"
        )
    if encrypted and len(value) != 32:
        raise refuse(f"write of {addr.describe()}: encrypted writes are 32 bytes only")
    stored = state.memory.slots[slot]
    sc = state.slot_config(slot)
    if not state.data_locked:
        if len(value) != 32:
            raise refuse(f"write of {addr.describe()}: before the data lock only 32-byte writes")
        if encrypted:
            value = _decrypt_write(state, cmd, addr, value, sc.write_key)
        stored[addr.offset : addr.offset + addr.length] = value[: addr.length]
        return
    if state.slot_locked(slot):
        raise refuse(f"write of {addr.describe()}: slot {slot} is locked")
    if sc.write_encrypted:
        if not encrypted:
            raise refuse(
                f"write of {addr.describe()}: WriteConfig needs an encrypted 32-byte write"
            )
        value = _decrypt_write(state, cmd, addr, value, sc.write_key)
    elif sc.write_always:
        if encrypted:
            raise refuse(f"write of {addr.describe()}: slot takes clear writes only")
    else:
        raise refuse(f"write of {addr.describe()}: WriteConfig 0x{sc.write_config:X} = never")
    stored[addr.offset : addr.offset + addr.length] = value[: addr.length]
    if kc.is_p256 and kc.pub_info and addr.offset == 0:
        # A validated public key that is rewritten becomes invalid until Verify(Validate).
        stored[0] = (VALIDITY_INVALID << 4) | (stored[0] & 0x0F)


def _decrypt_write(
    state: ChipState, cmd: Command, addr: ZoneAddress, cipher: bytes, write_key: int
) -> bytes:
    tk = state.volatile.tempkey
    if not (tk.valid and tk.gen_dig_data and tk.key_id == write_key):
        raise refuse(
            f"encrypted write of {addr.describe()}: needs a prior GenDig with WriteKey slot"
            f" {write_key}"
        )
    plain = bytes(a ^ b for a, b in zip(cipher, tk.value, strict=True))
    sn = state.serial
    msg = (
        tk.value
        + bytes((cmd.opcode, cmd.param1))
        + cmd.param2.to_bytes(2, "little")
        + bytes((sn[8],))
        + sn[0:2]
        + bytes(25)
        + plain
    )
    mac = cmd.data[32:64]
    tk.clear()
    if sha256(msg) != mac:
        raise CheckmacVerifyError(detail=f"encrypted write of {addr.describe()}: MAC mismatch")
    return plain


# --------------------------------------------------------------------------------------------
# Lock
# --------------------------------------------------------------------------------------------
def data_zone_digest_input(state: ChipState) -> bytes:
    """What the data-lock summary CRC covers: non-private slots in order, then the OTP."""
    parts = [
        bytes(state.memory.slots[n])
        for n in range(state.model.slot_count)
        if not state.key_config(n).private
    ]
    return b"".join(parts) + bytes(state.memory.otp)


def handle_lock(state: ChipState, cmd: Command) -> bytes:
    if cmd.param1 & 0x40:
        raise parse_error(f"Lock mode 0x{cmd.param1:02X}: bit 6 must be 0")
    expect_data_len(cmd, 0)
    zone = cmd.param1 & 0x03
    check_crc = not cmd.param1 & 0x80
    if zone == 0:
        if cmd.param1 & 0x3C:
            raise parse_error(f"Lock mode 0x{cmd.param1:02X}: slot bits set for the config zone")
        if state.config_locked:
            raise refuse("Lock config: config zone already locked")
        _check_summary(check_crc, bytes(state.config), cmd.param2, "config")
        state.config[state.cmap.lock_config] = LOCKED
        return STATUS_OK
    if zone == 1:
        if cmd.param1 & 0x3C:
            raise parse_error(f"Lock mode 0x{cmd.param1:02X}: slot bits set for the data zone")
        if not state.config_locked:
            raise refuse("Lock data: config zone not locked yet")
        if state.data_locked:
            raise refuse("Lock data: data and OTP zones already locked")
        _check_summary(check_crc, data_zone_digest_input(state), cmd.param2, "data+OTP")
        state.config[state.cmap.lock_value] = LOCKED
        return STATUS_OK
    if zone == 2:
        slot = (cmd.param1 >> 2) & 0x0F
        if not state.data_locked:
            raise refuse(f"Lock slot {slot}: data zone not locked yet")
        if not state.key_config(slot).lockable:
            raise refuse(f"Lock slot {slot}: KeyConfig.Lockable is 0")
        if state.slot_locked(slot):
            raise refuse(f"Lock slot {slot}: already locked")
        at = state.cmap.slot_locked
        bits = int.from_bytes(state.config[at.offset : at.stop], "little")
        bits &= ~(1 << slot)
        state.config[at.offset : at.stop] = bits.to_bytes(at.size, "little")
        return STATUS_OK
    raise parse_error(f"Lock mode 0x{cmd.param1:02X}: zone 3 does not exist")


def _check_summary(check: bool, content: bytes, expected: int, what: str) -> None:
    if not check:
        return
    actual = crc16_value(content)
    if actual != expected:
        raise refuse(
            f"Lock {what}: summary CRC 0x{expected:04X} sent, the zone's CRC is 0x{actual:04X}"
        )


# --------------------------------------------------------------------------------------------
# UpdateExtra, Counter
# --------------------------------------------------------------------------------------------
def handle_update_extra(state: ChipState, cmd: Command) -> bytes:
    expect_mode(cmd, {0, 1})
    expect_data_len(cmd, 0)
    # Allowed before and after the config lock: CryptoAuthLib's own config writer calls
    # UpdateExtra on unlocked parts.
    # Mode 1 sets byte 85: the 508A's Selector, the 608's UserExtraAdd.
    index = state.cmap.user_extra + cmd.param1
    if state.config[index] != 0:
        raise refuse(f"UpdateExtra: config byte {index} is already 0x{state.config[index]:02X}")
    state.config[index] = cmd.param2 & 0xFF
    return STATUS_OK


def encode_counter(value: int) -> bytes:
    """The 8 config bytes of a monotonic counter holding ``value`` (facts 3.9)."""
    b01 = 0xFFFF >> (value % 32)
    b23 = 0xFFFF if value < 16 else 0xFFFF >> ((value - 16) % 32)
    b45 = value // 32
    b67 = 0 if value < 16 else (value - 16) // 32
    return b"".join(x.to_bytes(2, "big") for x in (b01, b23, b45, b67))


def decode_counter(raw: bytes) -> int | None:
    """The value of 8 counter bytes, or None if they are not a valid encoding."""
    base = int.from_bytes(raw[4:6], "big") * 32
    for value in range(base, base + 32):
        if encode_counter(value) == bytes(raw):
            return value
    return None


def handle_counter(state: ChipState, cmd: Command) -> bytes:
    expect_mode(cmd, {0, 1})
    expect_data_len(cmd, 0)
    counters = state.cmap.counters
    if cmd.param2 >= len(counters):
        raise parse_error(f"Counter: counter {cmd.param2} does not exist (0 or 1)")
    if cmd.param1 == 1 and not state.config_locked:
        # Reads work before the config lock (Microchip's counter_write_test reads the value
        # it has just written into the unlocked config zone); increments wait for the lock.
        raise refuse("Counter increment: config zone not locked yet")
    span = counters[cmd.param2]
    value = decode_counter(bytes(state.config[span.offset : span.stop]))
    if value is None:
        raise refuse(
            f"Counter {cmd.param2}: config bytes {span.offset}..{span.stop - 1} are not a valid"
            " count"
        )
    if cmd.param1 == 1:
        if value >= COUNTER_MAX:
            raise refuse(f"Counter {cmd.param2}: at its maximum {COUNTER_MAX}")
        value += 1
        state.config[span.offset : span.stop] = encode_counter(value)
    return value.to_bytes(4, "little")
