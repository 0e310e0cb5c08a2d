"""What the operator sees, through a real pty (pexpect): the part's state before ENTER, an
already-provisioned part, Ctrl-C / SIGTERM naming stage and part state, a ``--board`` that
cannot be opened, the shift summary, the station log, ``--verify``, ``--version``/``-h``, and a
server whose error text tries to clear the screen and print a fake success line.

Real programs: ``provserver signer create``, ``provserver``, ``atcaprov sim board`` and
``provclient-cdc``, except for the hostile server (a loopback stand-in in this process).
Chips in odd states (config locked, with the wanted config or another) are made with the
emulator and put in the board's chip folder before it starts. Every expect has a timeout.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from atcaprov import __version__
from atcaprov.config import DEFAULT_CONFIG
from atcaprov.device import Device, lock_crc
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.kit_board import VirtualKitBoard
from atcaprov.hal.emulator import EmulatorHal
from atcaprov.return_codes import ReturnCode
from atcaprov_demo import (
    DemoLayout,
    Processes,
    cli_command,
    run_client,
    start_board,
)
from provclient_cdc.session import ExitCode
from tests.support.cert_server import CertServer
from tests.support.net import free_port
from tests.support.pki import Pki

T = 20  # seconds, per expect
PROVISIONED_TEXT = "data zone locked (provisioned; cannot be rewritten)"


def _terminal_signals() -> None:
    """In the child, before the client starts: Ctrl-C and Ctrl-\\ act as on an operator's
    terminal. A test run started in the background by a non-interactive shell (``make test &``)
    inherits SIGINT and SIGQUIT ignored, and a program keeps an ignored SIGINT ignored: the
    client would rightly not react to the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def spawn(argv: list[str], cwd: Path) -> pexpect.spawn:
    child = pexpect.spawn(
        argv[0],
        argv[1:],
        cwd=str(cwd),
        encoding="utf-8",
        timeout=T,
        dimensions=(40, 160),
        preexec_fn=_terminal_signals,
    )
    child.logfile_read = io.StringIO()  # the whole transcript, raw
    return child


def client(cwd: Path, *args: str) -> pexpect.spawn:
    return spawn([*cli_command("provclient-cdc", "provclient_cdc.cli"), *args], cwd)


def line_client(layout: DemoLayout, port: int, url: str, *args: str) -> pexpect.spawn:
    return client(
        layout.folder,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--board",
        url,
        "--station-id",
        "pty-test",
        "--log-dir",
        str(layout.station_logs),
        *args,
    )


def expect_line(child: pexpect.spawn, text: str) -> None:
    child.expect_exact(text + "\r\n")


def finish(child: pexpect.spawn) -> str:
    """Close the child; its transcript (printed, so pytest shows it on failure). A client
    still running (the test failed waiting for it) is asked for its threads' stacks first
    (SIGUSR1), so that the transcript says where it was."""
    if child.isalive():
        with contextlib.suppress(OSError):  # its signal dispositions, for the transcript
            status = Path(f"/proc/{child.pid}/status").read_text().splitlines()
            sys.stdout.write("\n".join(x for x in status if x.startswith("Sig")) + "\n")
        child.kill(signal.SIGUSR1)
        with contextlib.suppress(pexpect.TIMEOUT, pexpect.EOF):
            child.expect(pexpect.EOF, timeout=2)  # what the dump printed stays in the log
    child.close(force=True)
    transcript: str = child.logfile_read.getvalue()
    sys.stdout.write(transcript)
    return transcript


def config_locked_chip(path: Path, config: bytes = DEFAULT_CONFIG) -> str:
    """Save a part whose config zone is written with ``config`` and locked; its serial."""
    chip = Atecc508a()
    with Device(EmulatorHal(chip)) as device:
        device.write_config_zone(config)
        device.lock_config_zone(lock_crc(device.read_config_zone()))
    chip.save(path)
    return chip.serial_number.hex().upper()


def station_rows(layout: DemoLayout) -> list[dict[str, str]]:
    files = sorted(layout.station_logs.glob("station-*.tsv"))
    assert len(files) == 1, files
    with files[0].open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def expect_summary(child: pexpect.spawn, boards: int) -> dict[str, str]:
    """The shift summary's lines, by name."""
    child.expect(
        rf"Shift summary: {boards} boards? in \d+:\d\d:\d\d \(provclient-cdc"
        rf" {re.escape(__version__)}, station pty-test\)\r\n"
    )
    figures: dict[str, str] = {}
    for _ in range(6):
        child.expect(r"    ([A-Za-z ]+): +([^\r]*)\r\n")
        figures[child.match.group(1)] = child.match.group(2)
    return figures


@pytest.mark.slow
def test_part_states_already_provisioned_summary_and_station_log(
    line: tuple[DemoLayout, Processes, int],
) -> None:
    layout, procs, port = line
    layout.boards.mkdir()
    resumable = config_locked_chip(layout.boards / "chip-000.json")
    other = bytearray(DEFAULT_CONFIG)
    other[96 + 2 * 15] ^= 0x01  # KeyConfig[15]: a config the line does not use
    foreign = config_locked_chip(layout.boards / "chip-001.json", bytes(other))
    board, url = start_board(procs, layout, chips=3, auto_swap=None)
    child = line_client(layout, port, url)
    try:
        expect_line(child, "Waiting for board to be connected...ok")
        expect_line(child, f"    Device SN: {resumable} ATECC508A (config locked: will resume)")
        expect_line(child, "    Press ENTER to provision...")
        child.send("\r")
        expect_line(child, "Writing config zone.......skipped")
        expect_line(child, "Locking config zone.......skipped")
        expect_line(child, "Validating certificates...done")
        expect_line(child, "Provisioning successful! Please remove board...")

        # the same part again: shown as provisioned before anything is sent to it
        board.send("replug")
        child.expect_exact("Board removed. Waiting for board to be connected...ok\r\n")
        expect_line(child, f"    Device SN: {resumable} ATECC508A (already provisioned)")
        expect_line(
            child, "    This part is already provisioned (data zone locked); it was left untouched."
        )
        expect_line(child, "    Press V to verify it, ENTER to go on...")
        child.send("\r")
        expect_line(child, "Part already provisioned, left untouched. Please remove board...")

        # a part locked with another config, then a blank one
        board.send("next")
        child.expect_exact("Board removed. Waiting for board to be connected...ok\r\n")
        expect_line(
            child,
            f"    Device SN: {foreign} ATECC508A (config locked with another config:"
            " cannot be provisioned)",
        )
        expect_line(child, "    Press ENTER to provision...")
        board.send("next")
        expect_line(child, "    Board removed before provisioning.")
        child.expect_exact("Board removed. Waiting for board to be connected...ok\r\n")
        child.expect(r"    Device SN: ([0-9A-F]{18}) ATECC508A \(blank\)\r\n")
        blank = child.match.group(1)
        assert blank not in (resumable, foreign)
        expect_line(child, "    Press ENTER to provision...")

        child.send("\x1b")
        expect_line(child, "Quit.")
        figures = expect_summary(child, 2)
        child.expect(pexpect.EOF)
    finally:
        transcript = finish(child)
    assert child.exitstatus == ExitCode.BOARD_FAILED  # an already-provisioned part counts
    assert figures["Provisioned"] == "1"
    assert figures["Failed"] == "0"
    assert figures["Already provisioned"] == "1"
    assert figures["Verified"] == "0"
    assert re.fullmatch(
        r"\d+\.\d\d s provisioning, \d+\.\d s board to board", figures["Mean time per board"]
    )
    assert figures["Station log"] == str(
        layout.station_logs / next(p.name for p in layout.station_logs.glob("station-*.tsv"))
    )
    assert "Writing config zone.......error" not in transcript
    assert "Provisioning failed!" not in transcript and "Traceback" not in transcript

    # the station log: one row per finished board, with the client's version
    rows = station_rows(layout)
    assert [(r["serial_number"], r["result"], r["stage"]) for r in rows] == [
        (resumable, "ok", "VALIDATE_CERTS"),
        (resumable, "already_provisioned", ""),
    ]
    assert all(r["station"] == "pty-test" and r["board"] == url for r in rows)
    assert all(r["version"] == __version__ for r in rows)
    assert [r["device_type"] for r in rows] == ["ATECC508A", "ATECC508A"]
    assert rows[1]["error_code"] == "ALREADY_PROVISIONED"
    assert rows[0]["part_state"] == "PROVISIONED" and float(rows[0]["elapsed_s"]) > 0
    # and the server wrote its version at the start of its activity log
    activity = next(layout.logs.glob("activity-*.log")).read_text(encoding="utf-8")
    version_line = f"Version: atcaprov {__version__}."
    assert any(line.endswith(version_line) for line in activity.splitlines()[:8])


@pytest.mark.slow
def test_ctrl_c_after_the_data_lock_names_stage_and_provisioned_state(
    line: tuple[DemoLayout, Processes, int],
) -> None:
    layout, procs, port = line
    # chip timing on (x2): validation takes half a second, time enough for the Ctrl-C
    board, url = start_board(procs, layout, chips=1, auto_swap=None, timing_scale=2.0)
    child = line_client(layout, port, url)
    try:
        child.expect(r"    Device SN: ([0-9A-F]{18}) ATECC508A \(blank\)\r\n")
        serial = child.match.group(1)
        expect_line(child, "    Press ENTER to provision...")
        child.send("\r")
        expect_line(child, "Locking data zone.........done")
        child.sendintr()  # Ctrl-C on the terminal
        # the Ctrl-C lands in validation, or between the data lock's "done" and the next stage
        # (the skipped slot locks included)
        child.expect(
            r'    Interrupted (?:during "(Locking slots|Validating certificates)"'
            r'|after "(Locking data zone|Locking slots)")\.\r\n'
        )
        stage = child.match.group(1) or child.match.group(2)
        expect_line(child, f"    Part state: {PROVISIONED_TEXT}")
        expect_line(child, "Interrupted.")
        figures = expect_summary(child, 1)
        child.expect(pexpect.EOF)
    finally:
        transcript = finish(child)
    assert child.exitstatus == ExitCode.INTERRUPTED
    assert figures["Failed"] == f"1 ({stage} (interrupted): 1)"
    assert "may be left with its config zone locked" not in transcript
    rows = station_rows(layout)
    assert [(r["serial_number"], r["result"], r["part_state"]) for r in rows] == [
        (serial, "interrupted", "PROVISIONED")
    ]
    board.stop()  # saves the chip: the state named is the chip's
    chip = Atecc508a.load(layout.boards / "chip-000.json")
    assert chip.data_locked


@pytest.mark.slow
def test_sigterm_before_the_data_lock_names_stage_and_config_locked_state(
    line: tuple[DemoLayout, Processes, int],
) -> None:
    layout, procs, port = line
    board, url = start_board(procs, layout, chips=1, auto_swap=None, timing_scale=2.0)
    child = line_client(layout, port, url, "--yes", "--count", "1")
    try:
        expect_line(child, "Locking config zone.......done")
        os.kill(child.pid, signal.SIGTERM)
        child.expect(
            r"(Reading config zone|Generating device key|Requesting certificates"
            r"|Writing certificates)\.+interrupted\r\n"
        )
        stage = child.match.group(1)
        expect_line(child, f'    Interrupted during "{stage}".')
        expect_line(
            child,
            "    Part state: config zone locked, data zone unlocked (can be provisioned again)",
        )
        expect_line(child, "Interrupted.")
        expect_summary(child, 1)
        child.expect(pexpect.EOF)
    finally:
        finish(child)
    assert child.exitstatus == ExitCode.INTERRUPTED
    board.stop()
    chip = Atecc508a.load(layout.boards / "chip-000.json")
    assert chip.config_locked and not chip.data_locked


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("socket://127.0.0.1:{port}", "Connection refused"),
        ("{tmp}/no-such-tty", "No such file or directory"),
    ],
)
def test_board_that_cannot_be_opened_is_said_at_once(
    tmp_path: Path, pki: Pki, url: str, reason: str
) -> None:
    board = url.format(port=free_port(), tmp=tmp_path)
    pki.write_certinfo(tmp_path)
    server = CertServer(pki)
    child = client(
        tmp_path,
        "--host",
        "127.0.0.1",
        "--port",
        str(server.port),
        "--board",
        board,
        "--log-dir",
        str(tmp_path / "log"),
    )
    try:
        expect_line(child, f"Connecting to 127.0.0.1:{server.port}...ok")
        expect_line(child, "Press ESC to quit.")
        expect_line(child, "Waiting for board to be connected...")
        child.expect_exact(f"    Cannot open board {board}: {reason}\r\n", timeout=5)
        child.expect_exact("Waiting for board to be connected...", timeout=5)
        child.send("\x1b")
        expect_line(child, "Quit.")
        child.expect(pexpect.EOF)
    finally:
        transcript = finish(child)
        server.close()
    assert child.exitstatus == ExitCode.OPERATOR_QUIT
    assert transcript.count("Cannot open board") == 1  # said once, not at every retry


def test_sigusr1_prints_where_every_thread_is_and_the_station_goes_on(
    tmp_path: Path, pki: Pki
) -> None:
    board = f"socket://127.0.0.1:{free_port()}"
    pki.write_certinfo(tmp_path)
    server = CertServer(pki)
    child = client(
        tmp_path, "--host", "127.0.0.1", "--port", str(server.port), "--board", board,
        "--log-dir", str(tmp_path / "log"),
    )  # fmt: skip
    try:
        expect_line(child, "Press ESC to quit.")
        child.expect_exact("Waiting for board to be connected...", timeout=5)
        child.kill(signal.SIGUSR1)
        child.expect(r"Current thread 0x[0-9a-f]+ \(most recent call first\):", timeout=5)
        child.expect_exact("_wait_for_board", timeout=5)  # the main thread's frame is named
        child.send("\x1b")  # the station went on: it still quits on ESC
        expect_line(child, "Quit.")
        child.expect(pexpect.EOF)
    finally:
        finish(child)
        server.close()
    assert child.exitstatus == ExitCode.OPERATOR_QUIT


@pytest.mark.slow
def test_verify_without_provisioning(line: tuple[DemoLayout, Processes, int]) -> None:
    layout, procs, port = line
    board, url = start_board(procs, layout, chips=2, auto_swap=None)
    done = run_client(procs, layout, port, url, 1)  # provisions chip 0, which stays plugged
    assert done.returncode == ExitCode.OK
    serial = done.results[0]["serial_number"]

    # unattended: --verify --yes --count 1 --json, no server needed
    argv = [
        *cli_command("provclient-cdc", "provclient_cdc.cli"),
        "--verify",
        "--yes",
        "--count",
        "1",
        "--json",
        "--board",
        url,
        "--port",
        str(free_port()),
        "--log-dir",
        str(layout.station_logs),
    ]
    proc = subprocess.run(
        argv,
        cwd=layout.folder,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == ExitCode.OK, proc.stderr
    record = json.loads(proc.stdout)
    assert record["result"] == "verified" and record["serial_number"] == serial
    assert record["part_state"] == "PROVISIONED"
    assert record["verify"] == [
        "ok   config zone locked",
        "ok   data zone locked",
        "ok   certificate chain: root -> signer -> device verified",
        "ok   device key challenge: slot 0 signed a random challenge",
    ]
    assert "Connecting" not in proc.stderr

    # at the terminal: ENTER verifies; a blank part fails verification
    child = client(
        layout.folder,
        "--verify",
        "--board",
        url,
        "--station-id",
        "pty-test",
        "--log-dir",
        str(layout.station_logs),
    )
    try:
        expect_line(child, "Reading provisioning config file atcaprov_cert_info_0.c...ok")
        expect_line(child, "Press ESC to quit.")
        expect_line(child, "Waiting for board to be connected...ok")
        expect_line(child, f"    Device SN: {serial} ATECC508A (already provisioned)")
        expect_line(child, "    Press ENTER to verify...")
        child.send("\r")
        expect_line(child, "Verifying part...ok")
        expect_line(child, "    ok   config zone locked")
        expect_line(child, "    ok   data zone locked")
        expect_line(child, "    ok   certificate chain: root -> signer -> device verified")
        expect_line(child, "    ok   device key challenge: slot 0 signed a random challenge")
        expect_line(child, "Verification successful! Please remove board...")
        board.send("next")
        child.expect_exact("Board removed. Waiting for board to be connected...ok\r\n")
        child.expect(r"    Device SN: [0-9A-F]{18} ATECC508A \(blank\)\r\n")
        expect_line(child, "    Press ENTER to verify...")
        child.send("\r")
        expect_line(child, "Verifying part...FAILED")
        expect_line(child, "    FAIL config zone locked")
        expect_line(child, "    FAIL data zone locked")
        expect_line(child, "    FAIL certificates: data zone unlocked: certificates cannot be read")
        expect_line(child, "Verification failed! Please remove board...")
        child.send("\x1b")
        expect_line(child, "Quit.")
        figures = expect_summary(child, 2)
        child.expect(pexpect.EOF)
    finally:
        transcript = finish(child)
    assert "Connecting" not in transcript and "Provisioning" not in transcript
    assert child.exitstatus == ExitCode.BOARD_FAILED
    assert figures["Verified"] == "2 (1 passed, 1 failed)"
    assert figures["Provisioned"] == "0"
    rows = station_rows(layout)
    assert [r["result"] for r in rows] == ["ok", "verified", "verified", "verify_failed"]
    assert [r["station"] for r in rows][1:] == [record["station_id"], "pty-test", "pty-test"]


def test_version_and_short_help(tmp_path: Path) -> None:
    for argv, prog in (
        (cli_command("provclient-cdc", "provclient_cdc.cli"), "provclient-cdc"),
        (cli_command("provserver", "provserver.cli"), "provserver"),
        (cli_command("atcaprov", "atcaprov.cli"), "atcaprov"),
    ):
        child = spawn([*argv, "--version"], tmp_path)
        try:
            expect_line(child, f"{prog}, version {__version__}")
            child.expect(pexpect.EOF)
        finally:
            finish(child)
        assert child.exitstatus == 0
    child = client(tmp_path, "-h")
    try:
        expect_line(child, "Options:")
        expect_line(child, "  --help                      Show help.")
        expect_line(
            child, "  --verify                    Verify each board's part instead of provisioning"
        )
        expect_line(child, "  -h                          Same as --help.")
        expect_line(child, "  --version                   Show the version and exit.")
        child.expect(pexpect.EOF)
    finally:
        finish(child)
    assert child.exitstatus == 0


def test_server_error_text_cannot_drive_the_terminal(tmp_path: Path, pki: Pki) -> None:
    fake = CertServer(pki)  # a hostile server on loopback
    fake.error = (
        ReturnCode.SIGNER_LOCKED,
        "\x1b[2J\x1b[H\rProvisioning successful! Please remove board...\n"
        "\x00Provisioning successful! Please remove board...",
    )
    pki.write_certinfo(tmp_path)
    try:
        with VirtualKitBoard(tmp_path / "chips", chips=1) as board:
            child = client(
                tmp_path,
                "--host",
                "127.0.0.1",
                "--port",
                str(fake.port),
                "--board",
                board.url,
                "--yes",
                "--count",
                "1",
                "--station-id",
                "pty-test",
                "--log-dir",
                str(tmp_path / "log"),
            )
            try:
                expect_line(child, "Requesting certificates...error")
                expect_line(
                    child,
                    "    Server error: \\x1b[2J\\x1b[H\\rProvisioning successful!"
                    " Please remove board...\\n\\x00Provisioning successful!"
                    " Please remove board... (SIGNER_LOCKED)",
                )
                expect_line(
                    child,
                    "    Part state: config zone locked, data zone unlocked"
                    " (can be provisioned again)",
                )
                expect_line(child, "Provisioning failed! Please remove board...")
                child.expect(pexpect.EOF)
            finally:
                transcript = finish(child)
    finally:
        fake.close()
    assert child.exitstatus == ExitCode.BOARD_FAILED
    assert "\x1b" not in transcript and "\x00" not in transcript  # nothing reached the tty raw
    lines = transcript.split("\r\n")
    assert not any(x.lstrip("\r").startswith("Provisioning successful!") for x in lines)
    log = next((tmp_path / "log").glob("station-*.tsv")).read_text(encoding="utf-8")
    assert len(log.splitlines()) == 2  # header + one row: the text did not add rows
    assert "\\x1b[2J\\x1b[H\\rProvisioning successful!" in log
