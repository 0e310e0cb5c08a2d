"""The interactive client through a real pty (pexpect): ENTER prompt, board removal and replug
through the virtual board's stdin controls, removal mid-run, ESC to quit.

Real programs: ``provserver signer create``, ``provserver``, ``atcaprov sim board`` and
``provclient-cdc`` (the building blocks of ``atcaprov.demo``). Every expect has a timeout.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from atcaprov.demo import (
    DemoLayout,
    Processes,
    cli_command,
    create_signer,
    start_board,
    start_server,
)
from provclient_cdc.session import ExitCode

T = 20  # seconds, per expect

STAGES = [
    "Writing config zone.......done",
    "Locking config zone.......done",
    "Reading config zone.......done",
    "Generating device key.....done",
    "Requesting certificates...done",
    "Writing certificates......done",
    "Writing data zone.........done",
    "Locking data zone.........done",
    "Locking slots.............skipped",
    "Validating certificates...done",
]
LATER_STAGES = ["Writing certificates", "Writing data zone", "Locking data zone",
                "Locking slots", "Validating certificates"]


@pytest.fixture
def line(tmp_path: Path) -> Iterator[tuple[DemoLayout, Processes, int]]:
    layout = DemoLayout.new(tmp_path)
    with Processes() as procs:
        create_signer(layout)
        _, port = start_server(procs, layout)
        yield layout, procs, port


def spawn_client(layout: DemoLayout, port: int, url: str) -> pexpect.spawn:
    argv = [*cli_command("provclient-cdc", "provclient_cdc.cli"), "--host", "127.0.0.1",
            "--port", str(port), "--board", url, "--station-id", "pty-test"]
    child = pexpect.spawn(argv[0], argv[1:], cwd=str(layout.folder), encoding="utf-8",
                          timeout=T, dimensions=(40, 120))
    child.logfile_read = io.StringIO()  # the whole transcript
    return child


def expect_line(child: pexpect.spawn, text: str) -> None:
    child.expect_exact(text + "\r\n")


def test_operator_session(line: tuple[DemoLayout, Processes, int]) -> None:
    layout, procs, port = line
    board, url = start_board(procs, layout, chips=3, auto_swap=None, timing_scale=2.0)
    child = spawn_client(layout, port, url)
    try:
        # start-up, as in the app note
        expect_line(child, "Reading provisioning config file atcaprov_cert_info_0.c...ok")
        expect_line(child, f"Connecting to 127.0.0.1:{port}...ok")
        expect_line(child, "Press ESC to quit.")
        expect_line(child, "Waiting for board to be connected...ok")
        child.expect(r"    Device SN: ([0-9A-F]{18})\r\n")
        first_sn = child.match.group(1)
        expect_line(child, "    Press ENTER to provision...")
        child.send("\r")
        for stage in STAGES:
            expect_line(child, stage)
        expect_line(child, "Provisioning successful! Please remove board...")

        # the operator pulls the board, then plugs the next one
        board.send("unplug")
        child.expect_exact("Board removed. Waiting for board to be connected...")
        board.send("next")
        child.expect_exact("ok\r\n")
        child.expect(r"    Device SN: ([0-9A-F]{18})\r\n")
        second_sn = child.match.group(1)
        assert second_sn != first_sn
        expect_line(child, "    Press ENTER to provision...")

        # pulled at the prompt: nothing was written
        board.send("unplug")
        expect_line(child, "    Board removed before provisioning.")
        child.expect_exact("Board removed. Waiting for board to be connected...")
        board.send("replug")
        child.expect_exact("ok\r\n")
        expect_line(child, f"    Device SN: {second_sn}")
        expect_line(child, "    Press ENTER to provision...")
        child.send("\r")

        # pulled in the middle of provisioning: the stage and the part state are shown
        expect_line(child, "Requesting certificates...done")
        board.send("unplug")
        child.expect(r"([A-Za-z ]+)\.{3,}error\r\n    Error: [^\r]+\r\n")
        stage = child.match.group(1)
        assert stage in LATER_STAGES
        expect_line(child, f'    Board removed during "{stage}".')
        child.expect(r"    Part state: ([^\r]+)\r\n")
        state = child.match.group(1)
        if stage in ("Writing certificates", "Writing data zone", "Locking data zone"):
            assert state.startswith("config zone locked, data zone unlocked") or (
                stage == "Locking data zone" and state.startswith("data zone locked"))
        else:
            assert state.startswith("data zone locked")
        child.expect_exact("Board removed. Waiting for board to be connected...")

        # ESC quits at any prompt; a board failed, so the exit code says so
        child.send("\x1b")
        expect_line(child, "Quit.")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        transcript = child.logfile_read.getvalue()
        sys.stdout.write(transcript)  # shown by pytest on failure
    assert "Traceback" not in transcript and "(warning)" not in transcript
    assert child.exitstatus == ExitCode.BOARD_FAILED
