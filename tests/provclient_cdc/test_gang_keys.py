"""Gang mode on a real pty (pexpect): the one-row-per-board table, ENTER starting every board
that shows a part ready, ESC (no new parts, running ones finish) and a second ESC (running
ones stop at their next stage, each reported with its part state).

Real programs: ``provserver``, ``atcaprov sim board --count 2`` (chip times x 2, so that a part
is still running when the keys arrive) and ``provclient-cdc`` with two ``--board``. Every
expect has a timeout.
"""

from __future__ import annotations

import io
import re
import time

import pexpect
import pytest

from atcaprov_demo import (
    DemoLayout,
    Processes,
    cli_command,
    start_boards,
)
from provclient_cdc.session import ExitCode

T = 30  # seconds, per expect
ESC = "\x1b"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def spawn_gang(layout: DemoLayout, port: int, urls: list[str]) -> pexpect.spawn:
    argv = [
        *cli_command("provclient-cdc", "provclient_cdc.cli"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--board",
        ",".join(urls),
        "--station-id",
        "gang-pty",
        "--log-dir",
        str(layout.station_logs),
    ]
    child = pexpect.spawn(
        argv[0], argv[1:], cwd=str(layout.folder), encoding="utf-8", timeout=T, dimensions=(40, 200)
    )
    child.logfile_read = io.StringIO()
    return child


def screen_text(child: pexpect.spawn) -> str:
    log = child.logfile_read
    assert isinstance(log, io.StringIO)
    return ANSI.sub("", log.getvalue())


@pytest.mark.slow
def test_enter_starts_ready_boards_then_esc_quits(line: tuple[DemoLayout, Processes, int]) -> None:
    layout, procs, port = line
    _, urls = start_boards(procs, layout, chips=1, count=2, auto_swap=None, timing_scale=1.0)
    child = spawn_gang(layout, port, urls)
    try:
        child.expect_exact("Press ENTER to start every board showing a part ready, ESC to quit.")
        # both rows show a part waiting for ENTER before anything is written
        for _ in range(2):
            child.expect(r"ready: press ENTER")
        child.expect(r"ready: press ENTER +[0-9A-F]{18} +blank ")
        child.send("\r")
        # both finish: the last drawing of the table shows both rows done, result ok
        for _ in range(200):  # bounded: at most 200 x 0.2 s
            last = screen_text(child).rsplit("Serial number", 1)[-1]  # the last drawing
            if len(re.findall(r"remove the part +[0-9A-F]{18} +provisioned +ok ", last)) == 2:
                break
            child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=0.2)
        else:
            raise AssertionError(screen_text(child)[-3000:])
        child.send(ESC)
        child.expect_exact("ESC: no new parts")
        child.expect_exact("Quit.")
        child.expect(r"Shift summary: 2 boards in ")
        child.expect_exact("Provisioned:          2")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == ExitCode.OPERATOR_QUIT, screen_text(child)


@pytest.mark.slow
def test_second_esc_aborts_running_boards(line: tuple[DemoLayout, Processes, int]) -> None:
    layout, procs, port = line
    _, urls = start_boards(procs, layout, chips=1, count=2, auto_swap=None, timing_scale=2.0)
    child = spawn_gang(layout, port, urls)
    try:
        for _ in range(2):
            child.expect(r"ready: press ENTER")
        child.send("\r")
        # a stage under way (the table is redrawn a few times a second: any stage may show)
        child.expect(r"(Writing|Locking|Reading|Generating|Requesting) (config|data|device|cert)")
        # both ESCs at once (a run is short: it must not end between them), apart enough not
        # to read as one escape sequence
        child.send(ESC)
        time.sleep(0.2)
        child.send(ESC)
        child.expect_exact("ESC: no new parts; running boards finish (ESC again aborts them).")
        child.expect_exact("ESC again: running boards stop at their next stage.")
        for _ in range(2):
            child.expect(
                r"socket://[^ ]+: aborted by the operator before \"([A-Za-z ]+)\";"
                r" part state: ([^\r\n]+)"
            )
            assert "unknown" not in child.match.group(2) or "locking" in child.match.group(2)
        child.expect(r"Shift summary: 2 boards in ")
        child.expect(r"Failed: +2 \(")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == ExitCode.BOARD_FAILED, screen_text(child)
    rows = [
        row.split("\t")
        for path in layout.station_logs.glob("*.tsv")
        for row in path.read_text(encoding="utf-8").splitlines()[1:]
    ]
    assert sorted(row[4] for row in rows) == ["interrupted", "interrupted"]
