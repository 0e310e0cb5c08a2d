"""Gang mode's pieces: ``--board`` lists, the shared recorder (``--count`` over all boards, JSON
lines, station log), the plain screen (prefixed, escaped lines), rows added to both screens
while they run, the abort hook, the CLI's refusal of ``all`` among other boards, and
``atcaprov sim board --count``."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from atcaprov.stages import ProvStage, ProvStatus
from provclient_cdc.cli import main
from provclient_cdc.failover import ServerPool
from provclient_cdc.gang import GangAbort, GangHooks, GangRecorder, board_urls
from provclient_cdc.gang_screen import BoardOutput, BoardRow, LiveScreen, PlainScreen
from provclient_cdc.output import BoardResult
from provclient_cdc.server_link import ServerLink
from provclient_cdc.session import ExitCode
from provclient_cdc.station_log import StationLog
from tests.support.client import CapturingOutput


def test_board_urls_repeated_and_comma_lists() -> None:
    assert board_urls(("socket://a:1", "socket://b:2,socket://c:3", " socket://a:1 ")) == [
        "socket://a:1",
        "socket://b:2",
        "socket://c:3",
    ]
    assert board_urls(("all",)) == ["all"]
    assert board_urls(()) == []


def test_recorder_counts_over_all_boards(tmp_path: Path) -> None:
    output = CapturingOutput(json_lines=True)
    stopping = threading.Event()
    recorder = GangRecorder(output, StationLog(tmp_path), 3, stopping)
    assert recorder.claim() and recorder.claim()
    assert not stopping.is_set()
    assert recorder.claim()
    assert stopping.is_set()  # the third part was the last one: no new parts
    assert not recorder.claim()

    def record(board: str) -> None:
        recorder.record(BoardResult(index=0, board=board, result="ok"))

    threads = [threading.Thread(target=record, args=(f"socket://b:{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    lines = [json.loads(line) for line in output.json_text.getvalue().splitlines()]
    assert sorted(line["index"] for line in lines) == [1, 2, 3]
    assert sorted(line["board"] for line in lines) == [
        "socket://b:0",
        "socket://b:1",
        "socket://b:2",
    ]
    rows = next(tmp_path.glob("*.tsv")).read_text(encoding="utf-8").splitlines()
    assert len(rows) == 4  # header and one row per board


def test_plain_screen_prefixes_whole_lines_and_escapes() -> None:
    output = CapturingOutput()
    screen = PlainScreen([BoardRow(1, "socket://a:1"), BoardRow(2, "socket://b:2")], output)
    one, two = BoardOutput(screen, 1), BoardOutput(screen, 2)
    one.stage(ProvStage.CONFIG_WRITE, ProvStatus.START)
    two.detail("Device SN: \x1b[2J01AB")  # outside text: shown escaped
    one.stage(ProvStage.CONFIG_WRITE, ProvStatus.DONE)
    assert output.lines() == [
        "[board 2]     Device SN: \\x1b[2J01AB",
        "[board 1] Writing config zone.......done",
    ]
    assert screen.rows[0].stage == "Writing config zone"


def test_plain_screen_takes_a_row_added_while_running() -> None:
    output = CapturingOutput()
    screen = PlainScreen([], output)
    assert screen.add_row("socket://a:1").number == 1
    screen.start()
    row = screen.add_row("socket://b:2")
    BoardOutput(screen, row.number).detail("Device SN: 01AB")
    screen.update(2, stage="part found")
    screen.stop()
    assert row.number == 2 and screen.rows[1] is row and row.stage == "part found"
    assert output.lines() == ["[board 2]     Device SN: 01AB"]


def test_live_screen_draws_a_row_added_while_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    stream = io.StringIO()
    screen = LiveScreen([], stream)
    screen.add_row("socket://a:1")
    screen.start()
    try:
        row = screen.add_row("socket://b:2")
        screen.line("Board 2: socket://b:2")
        screen.update(row.number, stage="part found", serial_number="0123AB")
    finally:
        screen.stop()  # draws the table a last time
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue())
    last = text.rsplit("Serial number", 1)[-1]
    assert re.search(r"(?m)^2 +part found +0123AB .*socket://b:2", last), text
    assert re.search(r"(?m)^1 +waiting for a part .*socket://a:1", last), text
    assert "Board 2: socket://b:2" in text


def test_abort_stops_at_the_next_stage_start() -> None:
    abort = threading.Event()
    output = CapturingOutput()
    hooks = GangHooks(ServerPool([ServerLink("127.0.0.1", 1)], output), output, "s", abort)
    hooks.notify(ProvStage.CONFIG_WRITE, ProvStatus.START)
    abort.set()
    hooks.notify(ProvStage.CONFIG_WRITE, ProvStatus.DONE)  # a running stage ends normally
    with pytest.raises(GangAbort):
        hooks.notify(ProvStage.CONFIG_LOCK, ProvStatus.START)
    assert hooks.aborted_before is ProvStage.CONFIG_LOCK
    assert hooks.last_stage is ProvStage.CONFIG_WRITE


def test_all_is_refused_among_other_boards(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--board", "all,socket://127.0.0.1:1", "--log-dir", str(tmp_path)]
    )
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "--board all takes every kit found; give it alone" in result.output


def test_sim_board_count_starts_boards_with_their_own_chips(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "atcaprov.cli",
        "sim",
        "board",
        "--count",
        "3",
        "--state",
        str(tmp_path),
        "--listen",
        "127.0.0.1:0",
    ]
    run = subprocess.run(
        argv,
        input="status 2\nunplug 3\nstatus 9\nquit\n",
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    urls = [
        line.removeprefix("Board ready: ") for line in lines if line.startswith("Board ready: ")
    ]
    assert len(urls) == 3 and len(set(urls)) == 3
    assert all(url.startswith("socket://127.0.0.1:") for url in urls)
    assert any(line.startswith("[board 2] Status: plugged: chip-000.json") for line in lines)
    unplugged = [line.split()[1] for line in lines if " Unplugged chip-000.json" in line]
    assert unplugged[0] == "3]"  # "unplug 3" unplugged board 3 only; the others at quit
    assert sorted(unplugged) == ["1]", "2]", "3]"]
    assert "No board '9'; boards are numbered 1..3" in lines
    chips = tmp_path.glob("board-0*/chip-000.json")
    serials = {path.read_text(encoding="utf-8") for path in chips}
    assert len(serials) == 3  # three chips, each its own
    assert lines[-1] == f"3 boards stopped; chips saved in {tmp_path}"


def test_sim_board_count_needs_free_ports(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "atcaprov.cli",
        "sim",
        "board",
        "--count",
        "2",
        "--state",
        str(tmp_path),
        "--listen",
        "127.0.0.1:40999",
    ]
    run = subprocess.run(argv, input="", text=True, capture_output=True, timeout=60)
    assert run.returncode == 2
    assert "--count > 1 needs --listen HOST:0" in run.stderr
