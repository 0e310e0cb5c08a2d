"""Command and response packets of the CryptoAuth chips: CRC-16, framing, status mapping.

Sans-IO: everything here takes and returns bytes. Shared by the host side (``device``, HAL
drivers) and by the emulator, which is the only thing the two sides have in common.

Command packet (after the I2C word address): ``count | opcode | param1 | param2 (LE) | data |
crc (LE)``; response: ``count | data | crc``. The CRC is CRC-16 with polynomial 0x8005, init 0,
each byte fed LSB first, stored low byte first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .datasheet import (
    ATECC508A,
    ATECC608A,
    ATECC608B,
    CHIP_MODE_CLOCK_DIVIDER_MASK,
    CLOCK_DIVIDER_M1,
    CLOCK_DIVIDER_M2,
)
from .errors import (
    MalformedPacketError,
    ResponseCrcError,
    chip_status_error,
)

CMD_SIZE_MIN = 7
CMD_SIZE_MAX = 7 + 128 + 8  # largest command (Verify external) is 135; leave a small margin
RSP_SIZE_MIN = 4
RSP_SIZE_MAX = 3 + 64  # 64 data bytes is the longest response of the 508A
WAKE_RESPONSE = b"\x04\x11\x33\x43"
SUCCESS_RESPONSE = b"\x04\x00\x03\x40"


def _reflect16(value: int) -> int:
    out = 0
    for i in range(16):
        if value & (1 << i):
            out |= 1 << (15 - i)
    return out


def _make_table() -> list[int]:
    # CRC-16/ARC (reflected poly 0xA001) processes bits LSB first exactly as the chip does; the
    # chip's register is the bit-reverse of the ARC register (checked against the facts vectors).
    table = []
    for byte in range(256):
        reg = byte
        for _ in range(8):
            reg = (reg >> 1) ^ 0xA001 if reg & 1 else reg >> 1
        table.append(reg)
    return table


_ARC_TABLE = _make_table()
_REVERSED_BYTE = [_reflect16(b) >> 8 for b in range(256)]


def crc16_value(data: bytes) -> int:
    """The chip's CRC-16 of ``data`` as an integer (register value, not byte order)."""
    reg = 0
    for b in data:
        reg = (reg >> 8) ^ _ARC_TABLE[(reg ^ b) & 0xFF]
    return (_REVERSED_BYTE[reg & 0xFF] << 8) | _REVERSED_BYTE[reg >> 8]


def crc16(data: bytes) -> bytes:
    """The chip's CRC-16 of ``data`` as the two bytes sent on the wire (low byte first)."""
    value = crc16_value(data)
    return bytes((value & 0xFF, value >> 8))


class Opcode(IntEnum):
    """Command opcodes of the ATECC508A (all but the last four) and the ATECC608A/B (all but
    HMAC and Pause)."""

    PAUSE = 0x01
    READ = 0x02
    MAC = 0x08
    HMAC = 0x11
    WRITE = 0x12
    GENDIG = 0x15
    NONCE = 0x16
    LOCK = 0x17
    RANDOM = 0x1B
    DERIVE_KEY = 0x1C
    UPDATE_EXTRA = 0x20
    COUNTER = 0x24
    CHECKMAC = 0x28
    INFO = 0x30
    GENKEY = 0x40
    SIGN = 0x41
    ECDH = 0x43
    VERIFY = 0x45
    PRIVWRITE = 0x46
    SHA = 0x47
    AES = 0x51
    KDF = 0x56
    SELF_TEST = 0x77
    SECURE_BOOT = 0x80


# Maximum execution times (ms) of the ATECC508A, CryptoAuthLib's x08a table (Read = 5 as @2017+).
EXEC_TIME_MS: dict[int, float] = {
    Opcode.CHECKMAC: 13,
    Opcode.COUNTER: 20,
    Opcode.DERIVE_KEY: 50,
    Opcode.ECDH: 58,
    Opcode.GENDIG: 11,
    Opcode.GENKEY: 115,
    Opcode.HMAC: 23,
    Opcode.INFO: 2,
    Opcode.LOCK: 32,
    Opcode.MAC: 14,
    Opcode.NONCE: 29,
    Opcode.PAUSE: 3,
    Opcode.PRIVWRITE: 48,
    Opcode.RANDOM: 23,
    Opcode.READ: 5,
    Opcode.SHA: 9,
    Opcode.SIGN: 60,
    Opcode.UPDATE_EXTRA: 10,
    Opcode.VERIFY: 72,
    Opcode.WRITE: 26,
}
# Maximum execution times (ms) of the ATECC608A for the three ChipMode clock dividers M0, M1,
# M2: CryptoAuthLib's device_execution_time_608_m0/m1/m2 (calib_execution.c). The ATECC608B is
# given the same tables (CryptoAuthLib uses polling for it and publishes no table of its own).
EXEC_TIME_MS_608_M0: dict[int, float] = {
    Opcode.AES: 27,
    Opcode.CHECKMAC: 40,
    Opcode.COUNTER: 25,
    Opcode.DERIVE_KEY: 50,
    Opcode.ECDH: 75,
    Opcode.GENDIG: 25,
    Opcode.GENKEY: 115,
    Opcode.INFO: 5,
    Opcode.KDF: 165,
    Opcode.LOCK: 35,
    Opcode.MAC: 55,
    Opcode.NONCE: 20,
    Opcode.PRIVWRITE: 50,
    Opcode.RANDOM: 23,
    Opcode.READ: 5,
    Opcode.SECURE_BOOT: 80,
    Opcode.SELF_TEST: 250,
    Opcode.SHA: 36,
    Opcode.SIGN: 115,
    Opcode.UPDATE_EXTRA: 10,
    Opcode.VERIFY: 105,
    Opcode.WRITE: 45,
}
EXEC_TIME_MS_608_M1: dict[int, float] = {
    **EXEC_TIME_MS_608_M0,
    Opcode.ECDH: 172,
    Opcode.GENDIG: 35,
    Opcode.GENKEY: 215,
    Opcode.SECURE_BOOT: 160,
    Opcode.SELF_TEST: 625,
    Opcode.SHA: 42,
    Opcode.SIGN: 220,
    Opcode.VERIFY: 295,
}
EXEC_TIME_MS_608_M2: dict[int, float] = {
    **EXEC_TIME_MS_608_M1,
    Opcode.ECDH: 531,
    Opcode.GENKEY: 653,
    Opcode.SECURE_BOOT: 480,
    Opcode.SELF_TEST: 2324,
    Opcode.SHA: 75,
    Opcode.SIGN: 665,
    Opcode.VERIFY: 1085,
}
WAKE_TIME_MS = 1.0  # tWHI: wake to first command


def exec_time_table(model: str = ATECC508A.name, chip_mode: int = 0) -> dict[int, float]:
    """The max execution times (ms by opcode) of chip model ``model`` (a name such as
    ``"ATECC608B"``, any case). On a 608, ``chip_mode`` (config byte 19) picks the table of its
    clock divider: M1 (``0x28``) and M2 (``0x68``), anything else M0, as CryptoAuthLib does."""
    name = model.upper()
    if name == ATECC508A.name:
        return EXEC_TIME_MS
    if name in (ATECC608A.name, ATECC608B.name):
        divider = chip_mode & CHIP_MODE_CLOCK_DIVIDER_MASK
        if divider == CLOCK_DIVIDER_M1:
            return EXEC_TIME_MS_608_M1
        if divider == CLOCK_DIVIDER_M2:
            return EXEC_TIME_MS_608_M2
        return EXEC_TIME_MS_608_M0
    raise ValueError(f"no execution times for chip model {model!r}")


def exec_time_ms(opcode: int, model: str = ATECC508A.name, chip_mode: int = 0) -> float:
    """Max execution time of ``opcode`` in ms on ``model`` (unknown opcodes: the longest one)."""
    table = exec_time_table(model, chip_mode)
    return table.get(opcode, max(table.values()))


@dataclass(frozen=True)
class Command:
    """A decoded command packet."""

    opcode: int
    param1: int
    param2: int
    data: bytes = b""

    def encode(self) -> bytes:
        return build_command(self.opcode, self.param1, self.param2, self.data)


def build_command(opcode: int, param1: int, param2: int, data: bytes = b"") -> bytes:
    """Encode a command packet: count | opcode | p1 | p2 (LE) | data | crc."""
    if not 0 <= opcode <= 0xFF or not 0 <= param1 <= 0xFF or not 0 <= param2 <= 0xFFFF:
        raise ValueError(f"opcode/param out of range: {opcode:#x} {param1:#x} {param2:#x}")
    count = CMD_SIZE_MIN + len(data)
    if count > CMD_SIZE_MAX:
        raise ValueError(f"command data too long: {len(data)} bytes")
    body = bytes((count, opcode, param1, param2 & 0xFF, param2 >> 8)) + bytes(data)
    return body + crc16(body)


def check_frame(packet: bytes, *, minimum: int, maximum: int, what: str) -> None:
    """Check count byte, length and CRC of a command or response frame."""
    if len(packet) < minimum:
        raise MalformedPacketError(
            f"{what} too short: {len(packet)} bytes received, at least {minimum} expected"
            f" ({packet.hex(' ')})"
        )
    count = packet[0]
    if count < minimum or count > maximum:
        raise MalformedPacketError(
            f"{what} count byte {count} out of range {minimum}..{maximum} ({packet.hex(' ')})"
        )
    if len(packet) != count:
        raise MalformedPacketError(
            f"{what} length {len(packet)} does not match its count byte {count} ({packet.hex(' ')})"
        )
    want = crc16(packet[:-2])
    if packet[-2:] != want:
        raise ResponseCrcError(
            f"{what} CRC {packet[-2:].hex(' ')} does not match the computed {want.hex(' ')}"
            f" ({packet.hex(' ')})"
        )


def parse_command(packet: bytes) -> Command:
    """Decode a command packet, checking count and CRC (raises MalformedPacket/ResponseCrc)."""
    check_frame(packet, minimum=CMD_SIZE_MIN, maximum=0xFF, what="command packet")
    return Command(
        opcode=packet[1],
        param1=packet[2],
        param2=packet[3] | (packet[4] << 8),
        data=bytes(packet[5:-2]),
    )


def build_response(data: bytes) -> bytes:
    """Encode a response packet: count | data | crc."""
    count = 3 + len(data)
    if count > 0xFF:
        raise ValueError(f"response data too long: {len(data)} bytes")
    body = bytes((count,)) + bytes(data)
    return body + crc16(body)


def build_status(status: int) -> bytes:
    """A 4-byte status packet, e.g. ``build_status(0x0F) == 04 0F 23 42``."""
    return build_response(bytes((status,)))


def parse_response(raw: bytes, *, expect_wake: bool = False) -> bytes:
    """Decode a response packet and return its data bytes.

    A 4-byte packet carries a status: 0x00 returns ``b"\\x00"``; 0x11 returns it when
    ``expect_wake`` (the answer to a wake), and any other non-zero status raises the typed
    :class:`~atcaprov.errors.ChipStatusError` for that byte.
    """
    check_frame(raw, minimum=RSP_SIZE_MIN, maximum=0xFF, what="response packet")
    data = bytes(raw[1:-2])
    if len(data) == 1:
        status = data[0]
        if status == 0x00 or (expect_wake and status == 0x11):
            return data
        raise chip_status_error(status)
    return data
