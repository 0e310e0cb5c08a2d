"""The gadget-side transports of the HIL harness (docs/hil.md), on this host without USB.

* The virtual board serving an existing tty (``tty=``, in the guest the CDC gadget's
  ``/dev/ttyGS0``): here the slave side of a pty, the test talking on the master side as the
  USB host would on ``/dev/ttyACM0``; unplug closes it, replug opens it again.
* :class:`KitHidGadget` moving 64-byte reports between a gadget file (here a
  ``SOCK_SEQPACKET`` socket, which keeps report boundaries like ``/dev/hidg0``) and the
  emulated HID kit: the kit-hid driver's own report cutting, the replies zero padded.
"""

from __future__ import annotations

import os
import select
import socket
import time
import tty
from pathlib import Path

import pytest

from atcaprov import kit_protocol as kp
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.kit_board import KitBoardError, VirtualKitBoard
from atcaprov.emulator.kit_hid_device import EmulatedKitHidDevice
from atcaprov.emulator.kit_hid_gadget import KitHidGadget, KitHidGadgetError
from atcaprov.hal.kit_hid import split_reports


def _line(fd: int, request: bytes, timeout: float = 5.0) -> bytes:
    os.write(fd, request)
    got = b""
    deadline = time.monotonic() + timeout
    while not got.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, f"no full reply to {request!r}: {got!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            got += os.read(fd, 4096)
    return got


def test_board_serves_an_existing_tty(tmp_path: Path) -> None:
    host, device = os.openpty()
    tty.setraw(host)
    path = os.ttyname(device)
    try:
        with VirtualKitBoard(tmp_path, chips=2, tty=path) as board:
            assert board.url == path
            reply = _line(host, kp.format_discover(0))
            assert kp.parse_device_reply(reply.rstrip(b"\n")) is not None
            first = board.current_chip
            assert first is not None
            board.replug(next_chip=True)  # closes and opens the tty again, next chip
            assert board.current_chip is not None and board.current_chip is not first
            reply = _line(host, b"s:physical:select(C0)\n")
            assert reply == kp.format_kit_reply(kp.KitStatus.SUCCESS)
    finally:
        os.close(host)
        os.close(device)


def test_board_tty_errors(tmp_path: Path) -> None:
    with pytest.raises(KitBoardError, match="one only"):
        VirtualKitBoard(tmp_path, tty="/dev/null", pty=True)
    with pytest.raises(KitBoardError, match="not to tty="):
        VirtualKitBoard(tmp_path, tty="/dev/null", link=tmp_path / "kit")
    board = VirtualKitBoard(tmp_path, chips=1, tty=tmp_path / "no-such-tty")
    with pytest.raises(KitBoardError, match="cannot open"):
        board.start()


def test_hid_gadget_moves_reports() -> None:
    chip = Atecc508a()
    kit = EmulatedKitHidDevice(lambda _p: chip, pad_reports=True)
    kit.open_path(b"hidg0")
    host, gadget_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    events: list[str] = []
    server = KitHidGadget(
        "/dev/hidg0", kit, fd=os.dup(gadget_side.fileno()), on_event=events.append
    )
    gadget_side.close()
    host.settimeout(5.0)
    with host, server:
        for report in split_reports(kp.format_discover(0)):
            host.send(report[1:])  # the gadget file gets the report without its ID
        reply = host.recv(256)
        assert len(reply) == 64
        assert kp.parse_device_reply(reply.rstrip(b"\x00").rstrip(b"\n")) is not None
        # a 135-byte line (a talk with a long packet) spans three output reports
        long_line = kp.format_talk(bytes(64), kp.KitDialect.LEGACY)
        assert len(long_line) > 128
        for report in split_reports(long_line):
            host.send(report[1:])
        reply = host.recv(256)
        assert len(reply) == 64 and reply.rstrip(b"\x00").endswith(b"\n")
    assert server.reports_in >= 4 and server.reports_out == 2
    assert events[0] == "serving /dev/hidg0" and events[-1].startswith("stopped")


def test_hid_gadget_missing_file(tmp_path: Path) -> None:
    kit = EmulatedKitHidDevice(lambda _p: Atecc508a())
    with pytest.raises(KitHidGadgetError, match="cannot open"):
        KitHidGadget(tmp_path / "hidg9", kit).start()
