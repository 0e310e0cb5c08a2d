"""Handlers of the ECC commands: GenKey, Sign, Verify, ECDH, PrivWrite.

Private keys are created inside the emulator (from its random source) and stay in their slot;
these handlers return public keys, signatures and shared secrets, never a private key.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from ..crypto import (
    CryptoFormatError,
    public_key_from_xy,
    public_key_xy,
    sign_digest,
    verify_digest,
)
from ..errors import CheckmacVerifyError, EccFaultError
from ..packet import Command
from .checks import STATUS_OK, expect_data_len, expect_key_id, parse_error, refuse
from .cmd_memory import VALIDITY_INVALID, VALIDITY_VALID, key_valid
from .state import ChipState, sha256

GENKEY_PRIVATE = 0x04
GENKEY_DIGEST = 0x08
GENKEY_PUBKEY_DIGEST = 0x10

SIGN_EXTERNAL = 0x80
SIGN_INCLUDE_SN = 0x40

VERIFY_STORED = 0x00
VERIFY_EXTERNAL = 0x02
VERIFY_VALIDATE = 0x03
VERIFY_INVALIDATE = 0x07
KEY_TYPE_P256_PARAM = 0x0004


def require_auth(state: ChipState, slot: int, what: str) -> None:
    """Refuse (0x0F) use of a ReqAuth key unless its AuthKey slot has been authorized."""
    kc = state.key_config(slot)
    if kc.req_auth and state.volatile.auth_key != kc.auth_key:
        raise refuse(
            f"{what}: slot {slot} requires authorization by a CheckMac with slot {kc.auth_key}"
        )


def _private_p256_slot(state: ChipState, slot: int, what: str) -> None:
    kc = state.key_config(slot)
    if not (kc.private and kc.is_p256):
        raise refuse(
            f"{what}: slot {slot} is not a P-256 private-key slot (KeyConfig 0x{kc.raw:04X})"
        )


def stored_public_key(state: ChipState, slot: int, what: str) -> bytes:
    """X || Y of the public key held in ``slot``: computed for a private key, read from the
    72-byte padded form (``00000000 X 00000000 Y``) otherwise."""
    kc = state.key_config(slot)
    if not kc.is_p256:
        raise refuse(f"{what}: slot {slot} does not hold a P-256 key (KeyConfig 0x{kc.raw:04X})")
    if kc.private:
        key = state.private_key(slot)
        if key is None:
            raise EccFaultError(detail=f"{what}: slot {slot} holds no valid private key")
        return public_key_xy(key)
    raw = state.memory.slots[slot]
    if len(raw) < 72:
        raise refuse(f"{what}: slot {slot} is too small for a public key")
    return bytes(raw[4:36]) + bytes(raw[40:72])


def _digest_into_tempkey(state: ChipState, middle3: bytes, pubkey: bytes, slot: int) -> None:
    tk = state.volatile.tempkey
    if not tk.valid:
        raise refuse("GenKey digest: TempKey is not valid (run Nonce first)")
    sn = state.serial
    msg = tk.value + b"\x40" + middle3 + bytes((sn[8],)) + sn[0:2] + bytes(25) + pubkey
    assert len(msg) == 128
    source = tk.source_flag
    tk.clear()
    tk.value = sha256(msg)
    tk.valid = True
    tk.source_flag = source
    tk.gen_key_data = True
    tk.key_id = slot


def handle_genkey(state: ChipState, cmd: Command) -> bytes:
    mode = cmd.param1
    if mode & ~0x1C & 0xFF or (mode & GENKEY_PUBKEY_DIGEST and mode & ~GENKEY_PUBKEY_DIGEST):
        raise parse_error(f"GenKey mode 0x{mode:02X} not 0x00/0x04 (+0x08) or 0x10")
    slot = expect_key_id(cmd)
    if mode & GENKEY_PUBKEY_DIGEST:
        expect_data_len(cmd, 3)
    else:
        expect_data_len(cmd, 0, 3)
    if not state.config_locked:
        raise refuse("GenKey: config zone not locked yet")
    if mode & GENKEY_PUBKEY_DIGEST:
        if slot < 8 or state.key_config(slot).private:
            raise refuse(f"GenKey pubkey digest: slot {slot} is not a public-key slot (8..15)")
        pub = stored_public_key(state, slot, "GenKey pubkey digest")
        _digest_into_tempkey(state, cmd.data, pub, slot)
        return STATUS_OK
    _private_p256_slot(state, slot, "GenKey")
    if mode & GENKEY_DIGEST and not state.volatile.tempkey.valid:
        raise refuse("GenKey digest: TempKey is not valid (run Nonce first)")
    if mode & GENKEY_PRIVATE:
        if state.data_locked:
            if state.slot_locked(slot):
                raise refuse(f"GenKey: slot {slot} is locked")
            if not state.slot_config(slot).genkey_allowed:
                raise refuse(f"GenKey: slot {slot} WriteConfig does not allow GenKey")
        key = state.new_private_key(slot)
    else:
        found = state.private_key(slot)
        if found is None:
            raise EccFaultError(detail=f"GenKey: slot {slot} holds no valid private key")
        key = found
    pub = public_key_xy(key)
    if mode & GENKEY_DIGEST:
        _digest_into_tempkey(state, bytes((mode,)) + slot.to_bytes(2, "little"), pub, slot)
    return pub


# --------------------------------------------------------------------------------------------
# Sign
# --------------------------------------------------------------------------------------------
def _pubkey_valid_byte(state: ChipState, slot: int) -> int:
    """Byte 53 of the internal-sign message: 1 only for a P-256 public key whose PubInfo asks
    for validation and whose validity bits are 0x5, i.e. valid (CryptoAuthLib's host rule)."""
    kc = state.key_config(slot)
    valid = state.memory.slots[slot][0] >> 4 == VALIDITY_VALID
    return int(kc.is_p256 and not kc.private and kc.pub_info and valid)


def sign_internal_message(state: ChipState, mode: int, slot: int) -> bytes:
    """The 55-byte message an internal Sign hashes (facts 3.8)."""
    tk = state.volatile.tempkey
    sn = state.serial
    with_sn = bool(mode & SIGN_INCLUDE_SN)
    src = tk.key_id
    msg = (
        tk.value
        + bytes((0x41, mode))
        + slot.to_bytes(2, "little")
        + state.slot_config(src).raw.to_bytes(2, "little")
        + state.key_config(src).raw.to_bytes(2, "little")
        + bytes((tk.flags_byte(), 0, 0, sn[8]))
        + (sn[4:8] if with_sn else bytes(4))
        + sn[0:2]
        + (sn[2:4] if with_sn else bytes(2))
        + bytes((0x00 if state.slot_locked(src) else 0x01, _pubkey_valid_byte(state, src), 0))
    )
    assert len(msg) == 55
    return msg


def handle_sign(state: ChipState, cmd: Command) -> bytes:
    mode = cmd.param1
    if mode not in (SIGN_EXTERNAL, 0x00, SIGN_INCLUDE_SN):
        raise parse_error(f"Sign mode 0x{mode:02X} not 0x80 (external), 0x00 or 0x40 (internal)")
    expect_data_len(cmd, 0)
    slot = expect_key_id(cmd)
    return sign(state, mode, slot, external=mode == SIGN_EXTERNAL)


def external_message(state: ChipState, from_msg_digest: bool, what: str) -> bytes:
    """The 32-byte message an external Sign signs: TempKey loaded by a Nonce pass-through (or
    a SHA end), or on a 608 the lower 32 bytes of the Message Digest Buffer."""
    if from_msg_digest:
        buffer = state.volatile.msg_digest
        if buffer is None:
            raise refuse(f"{what}: the Message Digest Buffer is empty (Nonce with target 0x40)")
        return buffer[:32]
    tk = state.volatile.tempkey
    if not tk.valid or tk.source_flag != 1:
        raise refuse(f"{what}: TempKey does not hold a message (Nonce pass-through)")
    return tk.value


def consume_message(state: ChipState, from_msg_digest: bool) -> None:
    """Empty the buffer a signature or a verification used (TempKey or the 608's Message
    Digest Buffer)."""
    if from_msg_digest:
        state.volatile.msg_digest = None
    else:
        state.volatile.tempkey.clear()


def sign(
    state: ChipState, mode: int, slot: int, *, external: bool, from_msg_digest: bool = False
) -> bytes:
    """Sign once the mode is parsed: the external message (TempKey or, ``from_msg_digest``,
    the Message Digest Buffer) or the internal message built from TempKey."""
    if not state.data_locked:
        raise refuse("Sign: data zone not locked yet")
    _private_p256_slot(state, slot, "Sign")
    sc = state.slot_config(slot)
    kc = state.key_config(slot)
    tk = state.volatile.tempkey
    if external:
        if not sc.external_sign:
            raise refuse(f"Sign external: SlotConfig of slot {slot} does not allow it")
        digest = external_message(state, from_msg_digest, "Sign external")
        if kc.req_random:
            raise refuse(f"Sign external: slot {slot} has ReqRandom, external messages refused")
    else:
        if not sc.internal_sign:
            raise refuse(f"Sign internal: SlotConfig of slot {slot} does not allow it")
        if not tk.valid or not (tk.gen_dig_data or tk.gen_key_data):
            raise refuse("Sign internal: TempKey not produced by GenDig or GenKey")
        digest = sha256(sign_internal_message(state, mode, slot))
    require_auth(state, slot, "Sign")
    key = state.private_key(slot)
    if key is None:
        raise EccFaultError(detail=f"Sign: slot {slot} holds no valid private key")
    signature = sign_digest(key, digest)
    consume_message(state, from_msg_digest and external)
    return signature


# --------------------------------------------------------------------------------------------
# Verify
# --------------------------------------------------------------------------------------------
def _public_key_from(xy: bytes, what: str) -> ec.EllipticCurvePublicKey:
    try:
        return public_key_from_xy(xy)
    except CryptoFormatError as exc:
        raise refuse(f"{what}: public key is not a point on P-256 ({exc})") from exc


def _check_signature(
    pub: ec.EllipticCurvePublicKey, digest: bytes, sig64: bytes, what: str
) -> None:
    if not verify_digest(pub, digest, sig64):
        raise CheckmacVerifyError(detail=f"{what}: signature does not match")


def verify_validate(state: ChipState, cmd: Command) -> bytes:
    """Verify(Validate / Invalidate): the key's parent (SlotConfig.ReadKey) signed the
    internal-sign message built from TempKey (a GenKey 0x10 digest of the key) and OtherData."""
    what = "Verify validate" if cmd.param1 == VERIFY_VALIDATE else "Verify invalidate"
    slot = expect_key_id(cmd)
    expect_data_len(cmd, 64 + 19)
    if not state.data_locked:
        raise refuse(f"{what}: data zone not locked yet")
    kc = state.key_config(slot)
    if not (kc.is_p256 and kc.pub_info and not kc.private):
        raise refuse(f"{what}: slot {slot} is not a P-256 public key with PubInfo")
    tk = state.volatile.tempkey
    if not (tk.valid and tk.gen_key_data and tk.key_id == slot):
        raise refuse(f"{what}: TempKey must hold the GenKey(0x10) digest of slot {slot}")
    parent = state.slot_config(slot).read_key
    parent_pub = _public_key_from(stored_public_key(state, parent, what), what)
    other = cmd.data[64:83]
    sn = state.serial
    msg = tk.value + b"\x41" + other[0:10] + bytes((sn[8],)) + other[10:14] + sn[0:2] + other[14:19]
    tk.clear()
    _check_signature(parent_pub, sha256(msg), cmd.data[0:64], what)
    nibble = VALIDITY_VALID if cmd.param1 == VERIFY_VALIDATE else VALIDITY_INVALID
    raw = state.memory.slots[slot]
    raw[0] = (nibble << 4) | (raw[0] & 0x0F)
    return STATUS_OK


def handle_verify(state: ChipState, cmd: Command) -> bytes:
    mode = cmd.param1
    if mode in (VERIFY_VALIDATE, VERIFY_INVALIDATE):
        return verify_validate(state, cmd)
    if mode not in (VERIFY_EXTERNAL, VERIFY_STORED):
        raise parse_error(
            f"Verify mode 0x{mode:02X} not emulated (0x00 stored, 0x02 external, 0x03 validate"
            " and 0x07 invalidate are)"
        )
    return verify(state, cmd, mode)


def verify(state: ChipState, cmd: Command, mode: int, *, from_msg_digest: bool = False) -> bytes:
    """Verify external (``mode`` 0x02) or stored (0x00) once the mode is parsed, over TempKey
    or, ``from_msg_digest``, the 608's Message Digest Buffer."""
    if mode == VERIFY_EXTERNAL:
        if cmd.param2 != KEY_TYPE_P256_PARAM:
            raise parse_error(f"Verify external: key type 0x{cmd.param2:04X}, 0x0004 expected")
        expect_data_len(cmd, 128)
        pub = _public_key_from(cmd.data[64:128], "Verify external")
    else:
        slot = expect_key_id(cmd)
        expect_data_len(cmd, 64)
        kc = state.key_config(slot)
        if kc.private:
            raise refuse(f"Verify stored: slot {slot} holds a private key")
        if not state.data_locked:
            raise refuse("Verify stored: data zone not locked yet")
        if kc.pub_info and not key_valid(state, slot):
            raise refuse(f"Verify stored: public key in slot {slot} is not validated")
        require_auth(state, slot, "Verify stored")
        pub = _public_key_from(stored_public_key(state, slot, "Verify stored"), "Verify stored")
    if from_msg_digest:
        digest = external_message(state, True, "Verify")
    else:
        tk = state.volatile.tempkey
        if not tk.valid:
            raise refuse("Verify: TempKey does not hold the message digest (run Nonce first)")
        digest = tk.value
    consume_message(state, from_msg_digest)
    _check_signature(pub, digest, cmd.data[0:64], "Verify")
    return STATUS_OK


# --------------------------------------------------------------------------------------------
# ECDH
# --------------------------------------------------------------------------------------------
def handle_ecdh(state: ChipState, cmd: Command) -> bytes:
    if cmd.param1 != 0x00:
        raise parse_error(f"ECDH mode 0x{cmd.param1:02X}, 0x00 expected")
    slot = expect_key_id(cmd)
    expect_data_len(cmd, 64)
    if not state.data_locked:
        raise refuse("ECDH: data zone not locked yet")
    _private_p256_slot(state, slot, "ECDH")
    sc = state.slot_config(slot)
    if not sc.ecdh:
        raise refuse(f"ECDH: SlotConfig of slot {slot} does not allow it")
    require_auth(state, slot, "ECDH")
    key = state.private_key(slot)
    if key is None:
        raise EccFaultError(detail=f"ECDH: slot {slot} holds no valid private key")
    peer = _public_key_from(cmd.data, "ECDH")
    secret = key.exchange(ec.ECDH(), peer)
    if sc.ecdh_to_slot:
        if slot == 15:
            raise refuse("ECDH: slot 15 has no slot N+1 for the result")
        state.memory.slots[slot + 1][0:32] = secret
        return STATUS_OK
    return secret


# --------------------------------------------------------------------------------------------
# PrivWrite
# --------------------------------------------------------------------------------------------
def handle_privwrite(state: ChipState, cmd: Command) -> bytes:
    if cmd.param1 not in (0x00, 0x40):
        raise parse_error(f"PrivWrite mode 0x{cmd.param1:02X}, 0x00 or 0x40 expected")
    slot = expect_key_id(cmd)
    expect_data_len(cmd, 68)
    if not state.config_locked:
        raise refuse("PrivWrite: config zone not locked yet")
    _private_p256_slot(state, slot, "PrivWrite")
    tk = state.volatile.tempkey
    if cmd.param1 == 0x00:
        if state.data_locked:
            raise refuse("PrivWrite: clear writes only before the data lock")
        plain = cmd.data[0:36]
    else:
        if state.data_locked:
            sc = state.slot_config(slot)
            if state.slot_locked(slot):
                raise refuse(f"PrivWrite: slot {slot} is locked")
            if not sc.privwrite_allowed:
                raise refuse(f"PrivWrite: slot {slot} WriteConfig does not allow PrivWrite")
            write_key = sc.write_key
        else:
            write_key = tk.key_id
        if not (tk.valid and tk.gen_dig_data and tk.key_id == write_key):
            raise refuse(f"PrivWrite: needs a prior GenDig with WriteKey slot {write_key}")
        pad = sha256(tk.value)[0:4]
        plain = bytes(a ^ b for a, b in zip(cmd.data[0:32], tk.value, strict=True)) + bytes(
            a ^ b for a, b in zip(cmd.data[32:36], pad, strict=True)
        )
        sn = state.serial
        msg = (
            tk.value
            + bytes((cmd.opcode, cmd.param1))
            + slot.to_bytes(2, "little")
            + bytes((sn[8],))
            + sn[0:2]
            + bytes(21)
            + plain
        )
        tk.clear()
        if sha256(msg) != cmd.data[36:68]:
            raise CheckmacVerifyError(detail="PrivWrite: MAC mismatch")
    if plain[0:4] != b"\x00\x00\x00\x00":
        raise refuse("PrivWrite: the 4 bytes before the key must be zero")
    state.memory.slots[slot][0:36] = plain
    return STATUS_OK
