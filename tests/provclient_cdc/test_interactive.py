"""The interactive client through a real pty (pexpect): ENTER prompt, board removal and replug
through the virtual board's stdin controls, removal mid-run, ESC to quit.

Real programs: ``provserver signer create``, ``provserver``, ``atcaprov sim board`` and
``provclient-cdc`` (the building blocks of ``atcaprov_demo``). Every expect has a timeout.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from atcaprov_demo import (
    DemoLayout,
    Processes,
    cli_command,
    start_board,
)
from provclient_cdc.session import ExitCode
from tests.support.client import STAGE_LINES
from tests.support.net import free_port
from tests.support.pki import make_pki

T = 20  # seconds, per expect

LATER_STAGES = [
    "Writing certificates",
    "Writing data zone",
    "Locking data zone",
    "Locking slots",
    "Validating certificates",
]


def spawn_client(layout: DemoLayout, port: int, url: str) -> pexpect.spawn:
    argv = [
        *cli_command("provclient-cdc", "provclient_cdc.cli"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--board",
        url,
        "--station-id",
        "pty-test",
    ]
    child = pexpect.spawn(
        argv[0], argv[1:], cwd=str(layout.folder), encoding="utf-8", timeout=T, dimensions=(40, 120)
    )
    child.logfile_read = io.StringIO()  # the whole transcript
    return child


def expect_line(child: pexpect.spawn, text: str) -> None:
    child.expect_exact(text + "\r\n")


@pytest.mark.slow
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
        child.expect(r"    Device SN: ([0-9A-F]{18}) ATECC508A \(blank\)\r\n")
        first_sn = child.match.group(1)
        expect_line(child, "    Press ENTER to provision...")
        child.send("\r")
        for stage in STAGE_LINES:
            expect_line(child, stage)
        expect_line(child, "Provisioning successful! Please remove board...")

        # the same board plugged again: already provisioned, left untouched; V verifies it
        board.send("replug")
        child.expect_exact("Board removed. Waiting for board to be connected...")
        child.expect_exact("ok\r\n")
        expect_line(child, f"    Device SN: {first_sn} ATECC508A (already provisioned)")
        expect_line(
            child, "    This part is already provisioned (data zone locked); it was left untouched."
        )
        expect_line(child, "    Press V to verify it, ENTER to go on...")
        child.send("v")
        expect_line(child, "Verifying part...ok")
        expect_line(child, "    ok   config zone locked")
        expect_line(child, "    ok   data zone locked")
        expect_line(child, "    ok   certificate chain: root -> signer -> device verified")
        expect_line(child, "    ok   device key challenge: slot 0 signed a random challenge")
        expect_line(child, "Part already provisioned, left untouched. Please remove board...")

        # the operator pulls the board, then plugs the next one
        board.send("unplug")
        child.expect_exact("Board removed. Waiting for board to be connected...")
        board.send("next")
        child.expect_exact("ok\r\n")
        child.expect(r"    Device SN: ([0-9A-F]{18}) ATECC508A \(blank\)\r\n")
        second_sn = child.match.group(1)
        assert second_sn != first_sn
        expect_line(child, "    Press ENTER to provision...")

        # pulled at the prompt: nothing was written
        board.send("unplug")
        expect_line(child, "    Board removed before provisioning.")
        child.expect_exact("Board removed. Waiting for board to be connected...")
        board.send("replug")
        child.expect_exact("ok\r\n")
        expect_line(child, f"    Device SN: {second_sn} ATECC508A (blank)")
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
        # the lock bytes cannot be read from a removed board: the library does not guess
        assert state == "unknown: plug the part in again to check"
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
    assert "Writing config zone.......error" not in transcript
    assert "Provisioning failed!" not in transcript
    assert child.exitstatus == ExitCode.BOARD_FAILED


def _countdown_client(tmp_path: Path) -> pexpect.spawn:
    """The client on a pty, counting down to reconnect to a server that is not there, followed
    by ``stty -a`` in the same terminal (to see the mode the client left behind)."""
    make_pki().write_certinfo(tmp_path)
    port = free_port()
    client = " ".join(shlex.quote(a) for a in cli_command("provclient-cdc", "provclient_cdc.cli"))
    script = (
        f"{client} --host 127.0.0.1 --port {port} --connect-retries 5"
        f" --retry-interval 10; echo EXIT=$?; stty -a"
    )
    child = pexpect.spawn(
        "bash",
        ["--norc", "-c", script],
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=T,
        dimensions=(40, 200),
    )
    child.logfile_read = io.StringIO()
    child.expect_exact(
        f"Connecting to 127.0.0.1:{port}...failed (connection refused), retrying in 10 s"
    )
    child.expect_exact("retrying in 9 s")  # counted down in place
    return child


def _assert_terminal_restored(child: pexpect.spawn) -> None:
    child.expect(pexpect.EOF)
    modes = child.before.split()
    assert "icanon" in modes and "echo" in modes and "isig" in modes


def test_escape_during_countdown_restores_terminal(tmp_path: Path) -> None:
    child = _countdown_client(tmp_path)
    try:
        child.send("\x1b")
        child.expect_exact("Quit.\r\n")
        child.expect_exact(f"EXIT={int(ExitCode.OPERATOR_QUIT)}\r\n")
        _assert_terminal_restored(child)
    finally:
        child.close(force=True)


@pytest.mark.skipif(shutil.which("pgrep") is None, reason="needs pgrep to find the client")
def test_sigterm_restores_terminal(tmp_path: Path) -> None:
    child = _countdown_client(tmp_path)
    try:
        pid = int(
            subprocess.run(
                ["pgrep", "-P", str(child.pid)], capture_output=True, text=True, timeout=10
            ).stdout.split()[0]
        )
        os.kill(pid, signal.SIGTERM)
        child.expect_exact("Interrupted.\r\n")
        child.expect_exact(f"EXIT={int(ExitCode.INTERRUPTED)}\r\n")
        _assert_terminal_restored(child)
    finally:
        child.close(force=True)
