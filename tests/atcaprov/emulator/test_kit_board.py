"""Virtual kit board: TCP and pty transports, unplug/replug, auto-swap, CLI."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from atcaprov import kit_protocol as kp
from atcaprov.device import Device, lock_crc
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.kit_board import MAX_REFUSED_CLIENTS, KitBoardError, VirtualKitBoard
from atcaprov.errors import CommError, NoDevicesError
from atcaprov.hal import open_hal
from atcaprov.hal.kit_cdc import KitCdcHal
from tests.support.board_cli import start_board_cli
from tests.support.config import TEST_CONFIG


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def connect(url: str) -> KitCdcHal:
    hal = open_hal("kit-cdc", url=url, timeout=2.0)
    assert isinstance(hal, KitCdcHal)
    return hal


def provision(dev: Device) -> None:
    dev.write_config_zone(TEST_CONFIG)
    dev.lock_config_zone(crc=lock_crc(dev.read_config_zone()))
    dev.genkey(0)
    dev.lock_data_zone()


# ---- board over TCP ------------------------------------------------------------------------------
@pytest.fixture
def events() -> list[str]:
    return []


@pytest.fixture
def board(tmp_path: Path, events: list[str]) -> Iterator[VirtualKitBoard]:
    b = VirtualKitBoard(tmp_path / "state", chips=2, on_event=events.append)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def test_tcp_round_trip_and_files(board: VirtualKitBoard, events: list[str]) -> None:
    assert board.url.startswith("socket://127.0.0.1:")
    assert events[0] == f"Board ready: {board.url}"
    assert events[1].startswith("Plugged chip-000.json")
    names = sorted(p.name for p in board.state_dir.iterdir())
    assert names == ["chip-000.json", "chip-001.json"]
    chip = board.current_chip
    assert chip is not None
    with connect(board.url) as hal:
        dev = Device(hal)
        assert (hal.device_type, hal.address) == ("ECC508A", 0xC0)
        assert dev.info() == b"\x00\x00\x50\x00"
        assert dev.read_serial_number() == chip.serial_number
        dev.write_config_zone(TEST_CONFIG)
    # saved after the Write commands, without an unplug
    saved = Atecc508a.load(board.state_dir / "chip-000.json")
    assert saved.config_zone[16:84] == TEST_CONFIG[16:84]
    assert wait_for(lambda: any("disconnected (closed by host)" in e for e in events))


def test_unplug_refuses_and_replug(board: VirtualKitBoard, events: list[str]) -> None:
    first = board.current_chip
    assert first is not None
    hal = connect(board.url)
    dev = Device(hal, wake_retries=0)
    dev.info()
    board.unplug()
    assert not board.plugged and board.current_chip is None
    with pytest.raises(CommError):
        dev.info()
    hal.close()
    with pytest.raises(NoDevicesError, match="cannot open kit port"):
        connect(board.url)
    assert "unplugged" in board.status()
    # same chip again
    assert board.replug(next_chip=False) is board.current_entry
    assert board.current_chip is first
    with connect(board.url) as hal2:
        assert Device(hal2).read_serial_number() == first.serial_number
    # the next chip that is not provisioned
    entry = board.replug(next_chip=True)
    assert entry is not None and entry.index == 1
    with connect(board.url) as hal3:
        assert Device(hal3).read_serial_number() == entry.chip.serial_number
    assert sum(e.startswith("Unplugged chip-000.json") for e in events) == 2
    assert "plugged: chip-001.json" in board.status()


def test_control_needs_running_board(tmp_path: Path) -> None:
    b = VirtualKitBoard(tmp_path, chips=1)
    with pytest.raises(KitBoardError, match="not running"):
        b.unplug()
    with pytest.raises(KitBoardError, match="either listen"):
        VirtualKitBoard(tmp_path, pty=True, listen=("127.0.0.1", 0))
    with pytest.raises(KitBoardError, match="link= only applies"):
        VirtualKitBoard(tmp_path, link=tmp_path / "kit")


def test_bad_state_folder(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(KitBoardError, match=r"cannot use .* as the chip folder"):
        VirtualKitBoard(afile)
    with pytest.raises(KitBoardError, match="nothing to plug"):
        VirtualKitBoard(tmp_path / "empty", chips=0)


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        b = VirtualKitBoard(tmp_path, listen=("127.0.0.1", port))
        with pytest.raises(KitBoardError, match=f"cannot listen on 127.0.0.1:{port}"):
            b.start()


def test_auto_swap_until_no_blank_left(tmp_path: Path) -> None:
    events: list[str] = []
    with VirtualKitBoard(tmp_path, chips=2, auto_swap=0.2, on_event=events.append) as board:
        serials = [e.chip.serial_number for e in board.chips]
        for expected_index in (0, 1):
            entry = board.current_entry
            assert entry is not None and entry.index == expected_index
            with connect(board.url) as hal:
                provision(Device(hal))
            if expected_index == 0:
                assert wait_for(
                    lambda: (
                        board.current_entry is not None
                        and board.current_entry.index == 1
                        and board.plugged
                    )
                )
                with connect(board.url) as hal:
                    assert Device(hal).read_serial_number() == serials[1]
        assert wait_for(lambda: board.exhausted)
        assert not board.plugged
        assert any(e.startswith("Auto-swap: chip-000.json is provisioned") for e in events)
        assert "No blank chip left: board stays unplugged" in events
    for name in ("chip-000.json", "chip-001.json"):
        assert Atecc508a.load(tmp_path / name).data_locked


def test_auto_swap_waits_for_silence(tmp_path: Path) -> None:
    with VirtualKitBoard(tmp_path, chips=2, auto_swap=0.8) as board:
        with connect(board.url) as hal:
            dev = Device(hal)
            provision(dev)
            # keep talking: the board must not swap while the host is busy
            deadline = time.monotonic() + 1.2
            while time.monotonic() < deadline:
                dev.info()
                time.sleep(0.02)
            entry = board.current_entry
            assert entry is not None and entry.index == 0 and board.plugged
        assert wait_for(lambda: board.current_entry is not None and board.current_entry.index == 1)


def test_state_survives_restart(tmp_path: Path) -> None:
    with VirtualKitBoard(tmp_path, chips=1) as board, connect(board.url) as hal:
        dev = Device(hal)
        dev.write_config_zone(TEST_CONFIG)
        dev.lock_config_zone()
        serial = dev.read_serial_number()
    with VirtualKitBoard(tmp_path, chips=1) as board:
        assert len(board.chips) == 1
        with connect(board.url) as hal:
            dev = Device(hal)
            assert dev.read_serial_number() == serial
            assert dev.is_locked(0)


# ---- board over a pty ----------------------------------------------------------------------------
def test_pty_board_with_link(tmp_path: Path) -> None:
    link = tmp_path / "ttyKIT0"
    events: list[str] = []
    with VirtualKitBoard(
        tmp_path / "s", chips=2, pty=True, link=link, on_event=events.append
    ) as board:
        assert board.url == str(link)
        assert link.is_symlink() and os.readlink(link) == board.pty_path
        chip = board.current_chip
        assert chip is not None
        with connect(str(link)) as hal:
            assert Device(hal).read_serial_number() == chip.serial_number
        board.unplug()
        assert not link.exists() and not link.is_symlink()
        with pytest.raises(NoDevicesError):
            connect(str(link))
        entry = board.replug(next_chip=True)
        assert entry is not None
        assert link.is_symlink()
        with connect(str(link)) as hal:
            dev = Device(hal)
            assert dev.read_serial_number() == entry.chip.serial_number
            assert dev.info() == b"\x00\x00\x50\x00"
    assert not link.is_symlink()


def test_pty_unplug_breaks_open_client(tmp_path: Path) -> None:
    with VirtualKitBoard(tmp_path, pty=True) as board:
        hal = connect(board.url)
        dev = Device(hal, wake_retries=0)
        dev.info()
        board.unplug()
        with pytest.raises(CommError):
            dev.info()
        hal.close()


# ---- one program at a time -----------------------------------------------------------------------
def test_second_tcp_client_is_told_board_in_use(board: VirtualKitBoard, events: list[str]) -> None:
    chip = board.current_chip
    assert chip is not None
    first = connect(board.url)
    try:
        dev = Device(first)
        dev.info()
        with pytest.raises(kp.KitBoardInUseError, match="board in use by another program"):
            connect(board.url)
        assert wait_for(lambda: any("refused: board in use" in e for e in events))
        # a raw client sees the answer itself, once per line, and the board keeps it connected
        host, port = board.url.removeprefix("socket://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(b"board:device(00)\n\x00s:w()\n")
            got = b""
            while got.count(b"\n") < 2:
                chunk = raw.recv(4096)
                assert chunk, f"closed after {got!r}"
                got += chunk
            assert got == b"board in use by another program\n" * 2
            # meanwhile the first program is served as before, the chip untouched by the other
            assert dev.read_serial_number() == chip.serial_number
    finally:
        first.close()
    with connect(board.url) as again:  # closed, then reopened at once: no ghost of the first
        assert Device(again).read_serial_number() == chip.serial_number


def test_refused_clients_are_bounded(board: VirtualKitBoard, events: list[str]) -> None:
    host, port = board.url.removeprefix("socket://").rsplit(":", 1)

    def told() -> int:
        return sum("board in use" in e for e in events)

    with connect(board.url):
        socks = [socket.create_connection((host, int(port)), timeout=5) for _ in range(12)]
        try:
            assert wait_for(lambda: told() == 12)
            assert sum("closed at once" in e for e in events) == 12 - MAX_REFUSED_CLIENTS
        finally:
            for s in socks:
                s.close()


def test_second_program_on_the_pty_board_is_told_board_in_use(tmp_path: Path) -> None:
    with VirtualKitBoard(tmp_path, pty=True) as board:
        chip = board.current_chip
        assert chip is not None
        with connect(board.url) as first:
            with pytest.raises(kp.KitBoardInUseError, match="board in use by another program"):
                connect(board.url)
            assert Device(first).read_serial_number() == chip.serial_number
        with connect(board.url) as again:
            assert Device(again).read_serial_number() == chip.serial_number


# ---- CLI -----------------------------------------------------------------------------------------
def test_cli_board_stdin_control(tmp_path: Path) -> None:
    proc, url = start_board_cli("--state", str(tmp_path), "--chips", "2", "--listen", "127.0.0.1:0")
    try:
        assert url.startswith("socket://127.0.0.1:")
        with connect(url) as hal:
            Device(hal).write_config_zone(TEST_CONFIG)
        assert proc.stdin is not None
        proc.stdin.write("status\nunplug\nnext\nstatus\nbogus\nquit\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Status: plugged: chip-000.json" in out
    assert "Unplugged chip-000.json" in out
    assert "Status: plugged: chip-001.json" in out
    assert "Unknown command 'bogus'" in out
    assert "Board stopped" in out
    assert Atecc508a.load(tmp_path / "chip-000.json").config_zone[16:84] == TEST_CONFIG[16:84]


def test_cli_sigterm_saves(tmp_path: Path) -> None:
    link = tmp_path / "kit"
    proc, url = start_board_cli("--state", str(tmp_path / "s"), "--pty", "--link", str(link))
    try:
        assert url == str(link)
        with connect(url) as hal:
            Device(hal).write_config_zone(TEST_CONFIG)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Board stopped" in out
    assert not link.is_symlink()
    assert Atecc508a.load(tmp_path / "s" / "chip-000.json").config_zone[16:84] == TEST_CONFIG[16:84]


def test_cli_usage_errors(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from atcaprov.cli import main

    runner = CliRunner()
    result = runner.invoke(
        main, ["sim", "board", "--state", str(tmp_path), "--pty", "--listen", "127.0.0.1:0"]
    )
    assert result.exit_code == 2 and "exclusive" in result.output
    result = runner.invoke(main, ["sim", "board", "--state", str(tmp_path), "--link", "x"])
    assert result.exit_code == 2 and "--link needs --pty" in result.output
    result = runner.invoke(main, ["sim", "board", "--state", str(tmp_path), "--listen", "nope"])
    assert result.exit_code == 2 and "expected HOST:PORT" in result.output
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "sim" in result.output
