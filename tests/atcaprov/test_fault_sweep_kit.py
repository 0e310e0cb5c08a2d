"""The fault sweep through ``kit-cdc`` against the virtual kit board (socket://), with a real
unplug and replug of the board after every first run: every fault kind at every Lock (config,
data, each slot lock) and at the Sign of the validation, with and without slot locks.

The board is :class:`~atcaprov.emulator.kit_board.VirtualKitBoard` (timing model off); an
"unplug" fault unplugs it for real (``power_off=board.unplug``), so the part loses its volatile
state and the kit connection drops, as when an operator pulls the board.
"""

from __future__ import annotations

import contextlib
import socket
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.kit_board import VirtualKitBoard
from atcaprov.hal.faults import FaultHal
from atcaprov.hal.kit_cdc import KitCdcHal
from atcaprov.packet import Opcode
from tests.support.cert_server import InMemoryServer
from tests.support.pki import Pki
from tests.support.sweep import (
    COMMAND_KINDS,
    Bench,
    Case,
    SweepCounts,
    count_commands,
    run_case,
)

pytestmark = pytest.mark.slow

SWEPT_OPCODES = (Opcode.LOCK, Opcode.SIGN)
PARTS = 2 + 8 * len(COMMAND_KINDS)  # clean runs + 8 swept commands (3 + 5) x every kind


def _close_without_wait(port: Any) -> None:
    sock = port._socket
    if sock is not None:
        with contextlib.suppress(OSError):  # the board may have dropped it (unplugged)
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        port._socket = None
    port.is_open = False


def serial_port(url: str, **kwargs: Any) -> Any:
    """pyserial's socket:// port, minus the 0.3 s pyserial sleeps in every close ("give the
    server some time"): the sweep opens and closes two connections per part."""
    port = serial.serial_for_url(url, **kwargs)
    port.close = types.MethodType(_close_without_wait, port)
    return port


class KitBench(Bench):
    """The part on a virtual kit board, reached through kit-cdc over TCP."""

    def __init__(self, board: VirtualKitBoard) -> None:
        self.board = board
        self._hals: list[FaultHal] = []

    def new_part(self) -> None:
        self.close()
        entry = self.board.replug(next_chip=True)
        assert entry is not None, "the board ran out of blank chips"

    def plug(self) -> tuple[FaultHal, Device]:
        if not self.board.plugged:
            self.board.replug()
        kit = KitCdcHal(self.board.url, timeout=2.0, serial_factory=serial_port)
        hal = FaultHal(kit, power_off=self.board.unplug)
        self._hals.append(hal)
        return hal, Device(hal)

    def replug(self) -> None:
        self.board.unplug()  # power lost, connections closed
        self.board.replug()  # the same chip

    @property
    def chip(self) -> Atecc508a:
        entry = self.board.current_entry
        assert entry is not None
        return entry.chip

    def close(self) -> None:
        for hal in self._hals:
            hal.close()
        self._hals.clear()


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualKitBoard]:
    folder: Path = tmp_path_factory.mktemp("kit-sweep")
    with VirtualKitBoard(folder / "chips", chips=PARTS) as b:
        yield b


@pytest.mark.parametrize("lock_slots", [(), (10, 12)], ids=["no-slot-locks", "slot-locks"])
def test_kit_fault_at_every_lock_and_sign(
    pki: Pki, board: VirtualKitBoard, lock_slots: tuple[int, ...]
) -> None:
    bench, server = KitBench(board), InMemoryServer(pki)
    _commands, _wakes, opcodes = count_commands(bench, server, pki.cert_info, lock_slots)
    positions = [i for i, op in enumerate(opcodes) if op in SWEPT_OPCODES]
    assert len(positions) == 3 + len(lock_slots)  # config lock, data lock, slot locks, Sign
    total = SweepCounts()
    for kind in COMMAND_KINDS:
        for index in positions:
            total.add(run_case(bench, server, pki.cert_info, Case(kind, index, lock_slots)))
    bench.close()
    title = f"kit-cdc, lock_slots={list(lock_slots)}: commands {positions}"
    print("\n" + total.summary(title))
    assert total.bad() == dict.fromkeys(total.bad(), 0), total.summary(title)
    assert total.not_fired == 0
