"""Finding kit boards, opening one over the kit protocol, noticing its removal."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from atcaprov.emulator.kit_board import VirtualKitBoard
from provclient_cdc.boards import (
    BoardError,
    BoardFinder,
    BoardInUseError,
    find_kit_ports,
    is_kit_port,
)


def port(
    device: str, description: str = "", vid: int | None = None, product: str | None = None
) -> SimpleNamespace:
    return SimpleNamespace(
        device=device,
        description=description,
        vid=vid,
        product=product,
        manufacturer=None,
        interface=None,
    )


@pytest.mark.parametrize(
    ("entry", "kit"),
    [
        (port("COM5", "Communication Device Class ASF Example (COM5)"), True),
        (port("/dev/ttyACM0", "SAMD21 XPLAINED PRO", vid=0x1234), True),
        (port("/dev/ttyACM1", "AT90USB1287 CDC", vid=None), True),
        (port("/dev/ttyACM2", "n/a", vid=0x03EB), True),
        (port("/dev/ttyUSB0", "FT232R USB UART", vid=0x0403), False),
        (port("/dev/ttyS0", "ttyS0"), False),
        (port("/dev/ttyACM3", "n/a", product="ATSAMD21 Xplained Pro"), True),
    ],
)
def test_is_kit_port(entry: SimpleNamespace, kit: bool) -> None:
    assert is_kit_port(entry) is kit


def test_find_kit_ports_keeps_order() -> None:
    entries = [port("/dev/ttyS0", "ttyS0"), port("COM7", "XPLAINED"), port("COM3", "", 0x03EB)]
    assert [p.url for p in find_kit_ports(lambda: entries)] == ["COM7", "COM3"]


def test_open_read_sn_and_notice_removal(tmp_path: Path) -> None:
    with VirtualKitBoard(tmp_path, chips=2) as vboard:
        finder = BoardFinder(vboard.url, kit_timeout=2.0)
        board = finder.try_open()
        assert board is not None
        try:
            assert board.serial_number == vboard.chips[0].chip.serial_number
            assert len(board.serial_hex) == 18
            assert not board.gone(0.05)
            vboard.unplug()
            deadline = time.monotonic() + 5
            while not board.gone(0.05):
                assert time.monotonic() < deadline, "removal not noticed"
            assert board.gone(0.0)  # sticky
            assert finder.try_open() is None  # unplugged: refused, no board
            vboard.replug(next_chip=True)
            second = finder.try_open()
            assert second is not None
            assert second.serial_number == vboard.chips[1].chip.serial_number
            second.close()
        finally:
            board.close()


@pytest.mark.parametrize("use_pty", [False, True], ids=["socket", "pty"])
def test_second_client_on_one_board_is_told_in_use(tmp_path: Path, use_pty: bool) -> None:
    with VirtualKitBoard(tmp_path, chips=1, pty=use_pty) as vboard:
        first = BoardFinder(vboard.url, kit_timeout=2.0).try_open()
        assert first is not None
        try:
            second = BoardFinder(vboard.url, kit_timeout=2.0)
            with pytest.raises(BoardInUseError) as info:
                second.try_open()
            assert str(info.value) == f"board at {vboard.url}: board in use by another program"
            assert not first.gone(0.05)
            assert first.device.read_serial_number() == first.serial_number
        finally:
            first.close()
        board = second.try_open()  # the first program let go: the board is free
        assert board is not None
        board.close()


def test_scanned_port_in_use_is_retried_when_free(tmp_path: Path) -> None:
    with VirtualKitBoard(tmp_path, chips=1, pty=True) as vboard:
        entries = [port(vboard.url, "XPLAINED")]
        first = BoardFinder(vboard.url, kit_timeout=2.0).try_open()
        assert first is not None
        finder = BoardFinder(None, kit_timeout=2.0, lister=lambda: entries)
        try:
            for _ in range(2):  # said on every attempt, never written off as unusable
                with pytest.raises(BoardInUseError):
                    finder.try_open()
        finally:
            first.close()
        board = finder.try_open()
        assert board is not None
        board.close()


def test_nothing_listening_is_no_board(tmp_path: Path) -> None:
    with VirtualKitBoard(tmp_path, chips=1) as vboard:
        url = vboard.url
    finder = BoardFinder(url, kit_timeout=0.5)
    assert finder.try_open() is None
    assert finder.open_error == (url, "Connection refused")  # the system's reason, for the operator
    missing = str(tmp_path / "ttyACM9")
    finder = BoardFinder(missing, kit_timeout=0.5)
    assert finder.try_open() is None
    assert finder.open_error == (missing, "No such file or directory")


def test_part_state_read_with_the_serial_number(tmp_path: Path) -> None:
    from atcaprov.device import lock_crc
    from atcaprov.provisioning import PartState

    with VirtualKitBoard(tmp_path / "chips", chips=1) as vboard:
        finder = BoardFinder(vboard.url, kit_timeout=2.0)
        board = finder.try_open()
        assert board is not None and finder.open_error is None
        assert board.part_state is PartState.UNLOCKED
        board.device.lock_config_zone(lock_crc(board.device.read_config_zone()))
        board.close()
        vboard.replug()
        board = finder.try_open()
        assert board is not None
        assert board.part_state is PartState.CONFIG_LOCKED
        board.device.lock_data_zone()
        board.close()
        vboard.replug()
        board = finder.try_open()
        assert board is not None
        assert board.part_state is PartState.PROVISIONED
        board.close()


def test_scan_reports_a_port_without_device_once(tmp_path: Path) -> None:
    class NoDeviceKit:
        """A kit that answers every request: no device on its bus."""

        timeout = 0.1

        def __init__(self) -> None:
            self.asked = False

        def write(self, data: bytes) -> int:
            self.asked = True
            return len(data)

        def read(self, n: int = 1) -> bytes:
            if self.asked:
                self.asked = False
                return b"no device\n"
            return b""

        in_waiting = 0  # the whole reply comes in the first read

        def close(self) -> None:
            self.asked = False

    entries = [port("COM9", "XPLAINED")]
    finder = BoardFinder(
        None, kit_timeout=0.3, lister=lambda: entries, serial_factory=lambda *a, **k: NoDeviceKit()
    )
    with pytest.raises(BoardError, match="COM9"):
        finder.try_open()
    assert finder.try_open() is None  # reported once while it stays plugged
    entries.clear()
    assert finder.try_open() is None


def test_pty_board_behind_a_stable_link(tmp_path: Path) -> None:
    link = tmp_path / "ttyKIT"
    with VirtualKitBoard(tmp_path / "chips", chips=2, pty=True, link=link) as vboard:
        finder = BoardFinder(str(link), kit_timeout=2.0)
        board = finder.try_open()
        assert board is not None
        try:
            assert board.serial_number == vboard.chips[0].chip.serial_number
            assert not board.gone(0.05)
            vboard.unplug()
            deadline = time.monotonic() + 5
            while not board.gone(0.05):
                assert time.monotonic() < deadline, "removal not noticed"
            assert finder.try_open() is None
            vboard.replug(next_chip=True)
            second = finder.try_open()
            assert second is not None
            assert second.serial_number == vboard.chips[1].chip.serial_number
            second.close()
        finally:
            board.close()


def test_scan_finds_a_listed_kit_and_notices_it_unlisted(tmp_path: Path) -> None:
    link = tmp_path / "ttyACM7"
    with VirtualKitBoard(tmp_path / "chips", chips=1, pty=True, link=link) as vboard:
        entries = [
            port("/dev/ttyS0", "ttyS0"),
            port(str(link), "Communication Device Class ASF Example"),
        ]
        finder = BoardFinder(None, kit_timeout=2.0, lister=lambda: entries)
        board = finder.try_open()
        assert board is not None
        try:
            assert board.url == str(link)
            assert board.serial_number == vboard.chips[0].chip.serial_number
            assert not board.gone(0.05)
            entries.pop()  # the OS no longer lists the port
            assert board.gone(0.05)
        finally:
            board.close()
