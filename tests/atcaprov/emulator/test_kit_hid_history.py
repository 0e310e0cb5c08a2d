"""The emulated HID kit keeps a bounded history of the lines it was sent (memory stays flat)."""

from __future__ import annotations

from atcaprov.emulator import Atecc508a
from atcaprov.emulator.kit_hid_device import LINES_KEPT, EmulatedKitHidDevice


def test_lines_seen_is_bounded_and_keeps_the_first_and_the_latest() -> None:
    kit = EmulatedKitHidDevice(lambda path: Atecc508a())
    kit.open_path(b"sim")
    for n in range(10 * LINES_KEPT):
        line = f"board:version({n:04X})\n".encode()
        kit.write(b"\x00" + line.ljust(64, b"\x00"))
        kit.read(64)
    assert len(kit.lines_seen) <= 2 * LINES_KEPT
    assert kit.lines_seen[0] == b"board:version(0000)"
    assert kit.lines_seen[-1] == f"board:version({10 * LINES_KEPT - 1:04X})".encode()
