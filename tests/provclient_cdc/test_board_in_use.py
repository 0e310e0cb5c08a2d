"""Two operators' clients on one board, each on a real pty (pexpect): the first gets the board,
the second is told "board in use by another program" and keeps waiting; once the first quits,
the second gets the board. For a virtual board over TCP (``socket://``) and over a pty.

Real programs: ``provserver signer create``, ``provserver`` and two ``provclient-cdc``; the
board runs in the test. Every expect has a timeout.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from atcaprov.emulator.kit_board import VirtualKitBoard
from atcaprov_demo import DemoLayout, Processes, cli_command, create_signer, start_server
from provclient_cdc.session import ExitCode

T = 20  # seconds, per expect
IN_USE = "board in use by another program"


@pytest.fixture
def line(tmp_path: Path) -> Iterator[tuple[DemoLayout, int]]:
    layout = DemoLayout.new(tmp_path)
    with Processes() as procs:
        create_signer(layout)
        _, port = start_server(procs, layout)
        yield layout, port


def spawn_client(layout: DemoLayout, port: int, url: str, station: str) -> pexpect.spawn:
    argv = [
        *cli_command("provclient-cdc", "provclient_cdc.cli"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--board",
        url,
        "--station-id",
        station,
    ]
    child = pexpect.spawn(
        argv[0], argv[1:], cwd=str(layout.folder), encoding="utf-8", timeout=T, dimensions=(40, 160)
    )
    child.logfile_read = io.StringIO()
    return child


def quit_with_escape(child: pexpect.spawn) -> None:
    child.send("\x1b")
    child.expect_exact("Quit.\r\n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == ExitCode.OPERATOR_QUIT


@pytest.mark.slow
@pytest.mark.parametrize("use_pty", [False, True], ids=["socket", "pty"])
def test_second_client_is_told_board_in_use(
    line: tuple[DemoLayout, int], tmp_path: Path, use_pty: bool
) -> None:
    layout, port = line
    with VirtualKitBoard(tmp_path / "board", chips=1, pty=use_pty) as board:
        chip = board.current_chip
        assert chip is not None
        serial = chip.serial_number.hex().upper()
        first = spawn_client(layout, port, board.url, "first")
        second: pexpect.spawn | None = None
        try:
            first.expect_exact(f"Device SN: {serial}")
            first.expect_exact("Press ENTER to provision...")
            second = spawn_client(layout, port, board.url, "second")
            second.expect_exact(IN_USE)
            second.expect_exact("Waiting for board to be connected...")
            # the second program never reached the chip: the first one is still at ENTER,
            # undisturbed, and nothing was written
            assert not chip.config_locked
            quit_with_escape(first)
            second.expect_exact(f"Device SN: {serial}")  # free again: the second one gets it
            second.expect_exact("Press ENTER to provision...")
            quit_with_escape(second)
        finally:
            for child in (first, second):
                if child is None:
                    continue
                child.close(force=True)
                sys.stdout.write(child.logfile_read.getvalue())  # shown by pytest on failure
        assert first.logfile_read.getvalue().count(IN_USE) == 0
        assert second is not None and second.logfile_read.getvalue().count(IN_USE) == 1
        assert "Traceback" not in first.logfile_read.getvalue() + second.logfile_read.getvalue()
