"""Drive one emulated ATECC508A by raw packets: a hand-moved clock and a packet driver.

The emulator tests' fixtures (``tests/atcaprov/emulator/conftest.py``) build chips with these.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from atcaprov.emulator import Atecc508a
from atcaprov.packet import build_command, crc16_value

SERIAL = bytes.fromhex("0123A1B2C3D4E5F6EE")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ChipDriver:
    """Sends packets to one emulated chip (wakes it first) and splits the answers."""

    chip: Atecc508a
    clock: FakeClock
    sleeps: list[float] = field(default_factory=list)

    def raw(self, opcode: int, p1: int = 0, p2: int = 0, data: bytes = b"") -> bytes:
        self.chip.wake()
        return self.chip.execute(build_command(opcode, p1, p2, data))

    def status(self, opcode: int, p1: int = 0, p2: int = 0, data: bytes = b"") -> int:
        """The status byte of a 4-byte answer (fails the test on a data answer)."""
        rsp = self.raw(opcode, p1, p2, data)
        assert len(rsp) == 4, f"expected a status packet, got {rsp.hex(' ')}"
        return rsp[1]

    def ok(self, opcode: int, p1: int = 0, p2: int = 0, data: bytes = b"") -> bytes:
        """The data of a successful answer (status 0x00 answers give b"")."""
        rsp = self.raw(opcode, p1, p2, data)
        if len(rsp) == 4:
            assert rsp[1] == 0x00, (
                f"status 0x{rsp[1]:02X} for opcode 0x{opcode:02X}: {self.chip.last_error}"
            )
            return b""
        return rsp[1:-2]

    # Convenience wrappers over the raw commands -------------------------------------------
    def read_config(self) -> bytes:
        return b"".join(self.ok(0x02, 0x80, block << 3) for block in range(4))

    def write_config_bytes(self, offset: int, data: bytes) -> None:
        """4-byte writes covering config[offset:offset+len] (offset, len multiples of 4)."""
        for i in range(0, len(data), 4):
            at = offset + i
            self.ok(0x12, 0x00, ((at // 32) << 3) | ((at % 32) // 4), data[i : i + 4])

    def set_config_word(self, at: int, word: int) -> None:
        """Write the little-endian 16-bit config word at byte ``at`` (read-modify-write)."""
        base = at - at % 4
        cfg = bytearray(self.read_config()[base : base + 4])
        cfg[at - base : at - base + 2] = word.to_bytes(2, "little")
        self.write_config_bytes(base, bytes(cfg))

    def set_slot_config(self, slot: int, word: int) -> None:
        self.set_config_word(20 + 2 * slot, word)

    def set_key_config(self, slot: int, word: int) -> None:
        self.set_config_word(96 + 2 * slot, word)

    def lock_config(self) -> None:
        self.ok(0x17, 0x80, 0)

    def lock_data(self) -> None:
        self.ok(0x17, 0x81, 0)

    def write_slot(self, slot: int, data: bytes) -> None:
        """Clear 32-byte writes of ``data`` (padded to 32-byte blocks) from block 0."""
        padded = data + bytes(-len(data) % 32)
        for block in range(len(padded) // 32):
            self.ok(0x12, 0x82, (block << 8) | (slot << 3), padded[32 * block : 32 * block + 32])

    def genkey(self, slot: int) -> bytes:
        return self.ok(0x40, 0x04, slot)

    def nonce_load(self, value: bytes) -> None:
        self.ok(0x16, 0x03, 0, value)

    def config_crc(self) -> int:
        return crc16_value(self.read_config())


def seeded_source(seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    return rng.randbytes
