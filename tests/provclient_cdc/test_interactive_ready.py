"""Nothing irreversible before the server is known ready, on a real pty (pexpect) with the real
programs: ``provserver`` (subprocess), ``atcaprov sim board --state DIR`` and
``provclient-cdc``. For each way the server can be not ready (stopped at ENTER, signer
locked, signer unknown, no profile, plain client meeting a TLS server) the screen says why,
and the chip file the board saved shows the config zone still unlocked afterwards.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pexpect
import pytest

from atcaprov.certinfo import load_cert_info
from atcaprov.emulator import Atecc508a
from atcaprov_demo import (
    DemoLayout,
    ManagedProcess,
    Processes,
    cli_command,
    create_signer,
    start_board,
    start_server,
)
from provclient_cdc.session import ExitCode
from tests.support.certs import tls_files

T = 30  # seconds, per expect
UNTOUCHED = "    Part state: untouched (config zone unlocked; can be provisioned again)"
PASSWORD_VAR = "ATCAPROV_TEST_SIGNER_PASSWORD"

pytestmark = pytest.mark.slow


@pytest.fixture
def procs() -> Iterator[Processes]:
    with Processes() as running:
        yield running


def spawn_client(
    layout: DemoLayout, port: int, url: str, extra: Sequence[str] = ()
) -> pexpect.spawn:
    argv = [
        *cli_command("provclient-cdc", "provclient_cdc.cli"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--board",
        url,
        "--station-id",
        "pty-ready",
        *extra,
    ]
    child = pexpect.spawn(
        argv[0], argv[1:], cwd=str(layout.folder), encoding="utf-8", timeout=T, dimensions=(40, 200)
    )
    child.logfile_read = io.StringIO()
    return child


def expect_line(child: pexpect.spawn, text: str) -> None:
    child.expect_exact(text + "\r\n")


def finish(child: pexpect.spawn, code: ExitCode) -> str:
    """Wait for the end; the transcript (shown by pytest on failure)."""
    try:
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        transcript: str = child.logfile_read.getvalue()
        sys.stdout.write(transcript)
    assert "Traceback" not in transcript
    assert "Writing config zone" not in transcript and "Locking" not in transcript
    assert child.exitstatus == code
    return transcript


def assert_chip_untouched(
    layout: DemoLayout, board: ManagedProcess, serial: str | None = None
) -> None:
    """Stop the board (it saves the chip), then read the chip file it keeps."""
    board.stop()
    chip = Atecc508a.load(layout.boards / "chip-000.json")
    assert not chip.config_locked and not chip.data_locked
    if serial is not None:
        assert chip.serial_number.hex().upper() == serial


def board_and_prompt(
    procs: Processes, layout: DemoLayout, port: int, reason: str, extra: Sequence[str] = ()
) -> tuple[pexpect.spawn, ManagedProcess, str]:
    """Board and client; the client says at start that the server is not ready, and again
    after ENTER, without a chip command that writes; ESC quits."""
    board, url = start_board(procs, layout, chips=1, auto_swap=None)
    child = spawn_client(layout, port, url, extra)
    expect_line(child, f"Connecting to 127.0.0.1:{port}...ok")
    expect_line(child, f"    Server not ready: {reason}")
    expect_line(child, "Press ESC to quit.")
    expect_line(child, "Waiting for board to be connected...ok")
    child.expect(r"    Device SN: ([0-9A-F]{18}) ATECC508A \(blank\)\r\n")
    serial = str(child.match.group(1))
    expect_line(child, "    Press ENTER to provision...")
    child.send("\r")
    expect_line(child, f"    Server not ready: {reason}")
    expect_line(child, UNTOUCHED)
    expect_line(child, "Provisioning failed! Please remove board...")
    child.send("\x1b")
    expect_line(child, "Quit.")
    return child, board, serial


def test_server_stopped_at_enter(tmp_path: Path, procs: Processes) -> None:
    layout = DemoLayout.new(tmp_path)
    create_signer(layout)
    server, port = start_server(procs, layout)
    board, url = start_board(procs, layout, chips=1, auto_swap=None)
    child = spawn_client(layout, port, url, ["--connect-retries", "2", "--retry-interval", "0.5"])
    expect_line(child, f"Connecting to 127.0.0.1:{port}...ok")
    expect_line(child, "Press ESC to quit.")
    child.expect(r"    Device SN: ([0-9A-F]{18}) ATECC508A \(blank\)\r\n")
    serial = str(child.match.group(1))
    expect_line(child, "    Press ENTER to provision...")
    server.stop()  # the server goes away while the station waits at ENTER
    child.send("\r")
    child.expect_exact(f"Reconnecting to 127.0.0.1:{port}...failed (connection refused)\r\n")
    expect_line(
        child, f"    Server not ready: cannot connect to 127.0.0.1:{port}: connection refused"
    )
    expect_line(child, UNTOUCHED)
    expect_line(child, "Provisioning failed! Please remove board...")
    child.send("\x1b")
    expect_line(child, "Quit.")
    finish(child, ExitCode.BOARD_FAILED)
    assert_chip_untouched(layout, board, serial)


def test_signer_locked(tmp_path: Path, procs: Processes) -> None:
    layout = DemoLayout.new(tmp_path)
    argv = [
        *cli_command("provserver", "provserver.cli"),
        "signer",
        "create",
        "--backend",
        "sim",
        "--name",
        "Locked Signer",
        "--signer-id",
        "47DC",
        "--password-env",
        PASSWORD_VAR,
        "--root-dir",
        str(layout.root_dir),
        "--modules",
        str(layout.modules),
        "--data-dir",
        str(layout.data_dir),
        "--certinfo-out",
        str(layout.certinfo),
    ]
    subprocess.run(
        argv,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=layout.folder,
        env={**os.environ, PASSWORD_VAR: "line-secret"},
    )
    # the server has no password for it (no terminal, no --password-env): it stays locked
    server = procs.start(
        "provserver",
        [
            *cli_command("provserver", "provserver.cli"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(layout.data_dir),
            "--signers",
            "sim",
            "--modules",
            str(layout.modules),
        ],
        layout.log("server"),
        cwd=layout.folder,
    )
    port = int(server.wait_for(r"Server listening on [^ ]*:(\d+)", T).group(1))
    server.wait_for(r"stays locked", T)
    reason = "signer 47DC is locked (enter its password at the server)"
    child, board, serial = board_and_prompt(procs, layout, port, reason)
    finish(child, ExitCode.BOARD_FAILED)
    assert_chip_untouched(layout, board, serial)
    assert any(
        "signer 47DC not ready" in line
        and "pty-ready" in line
        and "ATCAPROV_E_SIGNER_LOCKED" in line
        for line in server.text()
    )


def test_signer_unknown(tmp_path: Path, procs: Processes) -> None:
    layout = DemoLayout.new(tmp_path / "line")
    other = DemoLayout.new(tmp_path / "other")  # a cert info for another server's signer
    create_signer(layout)
    create_signer(other)
    _, port = start_server(procs, layout)
    wanted, present = load_cert_info(other.certinfo), load_cert_info(layout.certinfo)
    reason = (
        f"no signer module for signer id {wanted.signer_id.hex().upper()}, key id"
        f" {wanted.signer_key_id.hex().upper()}; present (signer id/key id):"
        f" {present.signer_id.hex().upper()}/{present.signer_key_id.hex().upper()}"
    )
    child, board, serial = board_and_prompt(
        procs, layout, port, reason, ["--certinfo", str(other.certinfo)]
    )
    finish(child, ExitCode.BOARD_FAILED)
    assert_chip_untouched(layout, board, serial)


def test_no_profile(tmp_path: Path, procs: Processes) -> None:
    layout = DemoLayout.new(tmp_path)
    create_signer(layout)
    profiles = sorted((layout.data_dir / "signers").glob("*.json"))
    assert len(profiles) == 1
    profiles[0].unlink()  # the signer module is there, its profile is not
    _, port = start_server(procs, layout)
    key_id = profiles[0].stem.upper()
    reason = (
        f"no signer profile for key id {key_id} (add {key_id}.json to"
        f" {layout.data_dir / 'signers'})"
    )
    child, board, serial = board_and_prompt(procs, layout, port, reason)
    finish(child, ExitCode.BOARD_FAILED)
    assert_chip_untouched(layout, board, serial)


def test_plain_client_meets_tls_server(tmp_path: Path, procs: Processes) -> None:
    layout = DemoLayout.new(tmp_path)
    create_signer(layout)
    tls = tls_files(layout.folder)
    _, port = start_server(
        procs,
        layout,
        extra=["--tls-cert", str(tls["server.crt"]), "--tls-key", str(tls["server.key"])],
    )
    board, url = start_board(procs, layout, chips=1, auto_swap=None)
    child = spawn_client(layout, port, url)
    expect_line(child, f"Connecting to 127.0.0.1:{port}...ok")
    expect_line(
        child,
        f"Cannot use the provisioning server at 127.0.0.1:{port}: TLS mismatch:"
        f" the server at 127.0.0.1:{port} speaks TLS and closed this plain"
        " connection; start provclient-cdc with --tls-ca (and --tls-cert/"
        "--tls-key if the server asks for a station certificate)",
    )
    finish(child, ExitCode.SERVER_UNREACHABLE)
    assert_chip_untouched(layout, board)
