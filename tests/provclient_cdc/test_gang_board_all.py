"""``--board all`` picks up kits plugged in while the gang runs (issue 13).

Real programs for everything but the port list: ``provserver``, ``atcaprov sim board`` (each
board its own program, started when it is "plugged in") and the gang in-process, whose kit
port listing is injected the way the finder tests inject it (``lister=``, entries shaped like
``serial.tools.list_ports``'): a virtual board has no USB port for the system to list. Every
wait is bounded. Both screens: the plain lines, and the live table (a row added to it).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from atcaprov.emulator.chip import Atecc508a
from atcaprov.terminal import ESC
from atcaprov_demo import (
    DemoLayout,
    ManagedProcess,
    Processes,
    start_boards,
)
from provclient_cdc.console import Keys, NoKeys
from provclient_cdc.gang import ALL_BOARDS, Gang
from provclient_cdc.server_link import ServerLink
from provclient_cdc.session import ExitCode, StationOptions
from tests.support.client import CapturingOutput, ScriptedKeys

pytestmark = pytest.mark.slow

T = 60.0  # seconds, per wait
BOARD_LINE = re.compile(r"Board (\d+): (\S+)")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class PluggedPorts:
    """The system's serial port list as a test changes it: the kits plugged now (listed as
    XPLAINED kits) and a serial port that is not a kit."""

    def __init__(self, *urls: str) -> None:
        self._urls = list(urls)
        self._lock = threading.Lock()
        self.listings = 0

    def plug(self, url: str) -> None:
        with self._lock:
            self._urls.append(url)

    def unplug(self, url: str) -> None:
        with self._lock:
            self._urls.remove(url)

    def __call__(self) -> list[SimpleNamespace]:
        with self._lock:
            self.listings += 1
            urls = list(self._urls)
        return [
            SimpleNamespace(device="/dev/ttyS0", description="ttyS0", vid=None),
            *(
                SimpleNamespace(device=url, description="SAMD21 XPLAINED PRO", vid=None)
                for url in urls
            ),
        ]


def plug_in_board(
    procs: Processes,
    layout: DemoLayout,
    name: str,
    *,
    chips: int,
    auto_swap: float | None = None,
    timing_scale: float = 0.0,
) -> tuple[ManagedProcess, Path, str]:
    """One ``atcaprov sim board`` program with its own chip folder; (process, folder, URL)."""
    proc, (url,) = start_boards(
        procs,
        layout,
        chips=chips,
        auto_swap=auto_swap,
        timing_scale=timing_scale,
        timeout=T,
        name=name,
    )
    return proc, layout.folder / name, url


class GangRun:
    """A gang with ``--board all`` running in a thread (``live``: the table of a terminal)."""

    def __init__(
        self,
        layout: DemoLayout,
        port: int,
        ports: PluggedPorts,
        keys: Keys,
        *,
        live: bool = False,
        **opts: object,
    ) -> None:
        options = StationOptions(
            certinfo=layout.certinfo,
            host="127.0.0.1",
            port=port,
            station_id="gang-all",
            yes=True,
            connect_retries=0,
            retry_interval=0.1,
            wait_timeout=T,
            kit_timeout=3.0,
            io_timeout=10.0,
            log_dir=layout.station_logs,
        )
        for name, value in opts.items():
            setattr(options, name, value)
        self.output = CapturingOutput(json_lines=True)
        self.gang = Gang(
            options,
            [ALL_BOARDS],
            self.output,
            keys,
            link_factory=lambda: [ServerLink("127.0.0.1", port, io_timeout=10.0)],
            lister=ports,
            live=live,
        )
        self.code: ExitCode | None = None
        self.thread = threading.Thread(target=self._run, name="gang", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.gang.run()

    def lines(self) -> list[str]:
        return self.output.lines()

    def results(self) -> list[dict[str, object]]:
        return [json.loads(text) for text in self.output.json_text.getvalue().splitlines()]

    def wait_until(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + T
        while not done():
            assert self.thread.is_alive(), f"gang ended before {what}:\n" + "\n".join(self.lines())
            assert time.monotonic() < deadline, f"no {what} within {T:g} s:\n" + "\n".join(
                self.lines()
            )
            time.sleep(0.05)

    def finish(self) -> ExitCode:
        self.thread.join(2 * T)
        if self.thread.is_alive():  # stop it before failing, so that nothing is left running
            self.gang.stopping.set()
            self.gang.abort.set()
            self.thread.join(T)
            raise AssertionError("the gang did not end:\n" + "\n".join(self.lines()))
        assert self.code is not None
        return self.code

    def board_lines(self) -> list[tuple[int, str]]:
        return [
            (int(m.group(1)), m.group(2))
            for m in (BOARD_LINE.fullmatch(text) for text in self.lines())
            if m is not None
        ]


def data_locked_chips(folder: Path) -> int:
    return sum(1 for path in folder.glob("chip-*.json") if Atecc508a.load(path).data_locked)


def test_a_kit_plugged_in_during_the_run_gets_its_own_board(
    line: tuple[DemoLayout, Processes, int],
) -> None:
    layout, procs, port = line
    board_a, chips_a, url_a = plug_in_board(procs, layout, "board-a", chips=2)
    ports = PluggedPorts(url_a)
    run = GangRun(layout, port, ports, NoKeys(), count=4)

    # board A's first part, then A is unplugged (its port leaves the list) and plugged back
    # on the same port with its next chip: its own worker carries on, no second one
    run.wait_until("board A's first result", lambda: len(run.results()) == 1)
    board_a.send("unplug")
    ports.unplug(url_a)
    run.wait_until("board A's removal", lambda: "[board 1] Board removed." in run.lines())
    listings = ports.listings
    run.wait_until("a port scan without A", lambda: ports.listings >= listings + 1)
    ports.plug(url_a)
    board_a.send("next")

    # board B plugged in while the gang runs: a row and a worker of its own
    board_b, chips_b, url_b = plug_in_board(procs, layout, "board-b", chips=2, auto_swap=0.3)
    ports.plug(url_b)
    assert run.finish() == ExitCode.OK, "\n".join(run.lines())
    board_a.send("quit")
    board_b.send("quit")
    assert board_a.wait(T) == 0 and board_b.wait(T) == 0
    text = "\n".join(run.lines())

    assert "Looking for kit boards...1 found" in run.lines(), text
    assert run.board_lines() == [(1, url_a), (2, url_b)], text  # each port once, in order
    results = run.results()
    assert [r["index"] for r in results] == [1, 2, 3, 4], text
    assert sorted(str(r["board"]) for r in results) == sorted([url_a, url_a, url_b, url_b])
    assert all(r["result"] == "ok" and r["part_state"] == "PROVISIONED" for r in results)
    assert len({r["serial_number"] for r in results}) == 4
    # B's lines are its own board's lines, from its connection to its second part
    assert "[board 2] Connecting to 127.0.0.1:" + str(port) + "...ok" in run.lines(), text
    assert run.lines().count("[board 2] Provisioning successful! Please remove board...") == 2
    assert run.lines().count("[board 1] Provisioning successful! Please remove board...") == 2
    assert not any("in use" in text_line for text_line in run.lines()), text
    # each board program served one client at a time, never refused a second one
    for board in (board_a, board_b):
        assert not any("refused" in event for event in board.text("stdout")), board.text()
    assert data_locked_chips(chips_a) == 2 and data_locked_chips(chips_b) == 2
    assert "    Provisioned:          4" in run.lines(), text
    assert any(text_line.startswith("Shift summary: 4 boards in ") for text_line in run.lines())
    rows = [
        row.split("\t")
        for path in layout.station_logs.glob("*.tsv")
        for row in path.read_text(encoding="utf-8").splitlines()[1:]
    ]
    assert sorted(row[4] for row in rows) == ["ok"] * 4


def test_no_board_is_added_after_esc(line: tuple[DemoLayout, Processes, int]) -> None:
    layout, procs, port = line
    # chip times x 2: the part runs on for seconds after ESC, over several port scans
    _, chips_a, url_a = plug_in_board(procs, layout, "board-a", chips=1, timing_scale=2.0)
    board_b, chips_b, url_b = plug_in_board(procs, layout, "board-b", chips=1)
    ports = PluggedPorts(url_a)
    keys = ScriptedKeys()
    run = GangRun(layout, port, ports, keys)
    keys.add(
        ESC, when=lambda: bool(run.gang.workers) and run.gang.workers[0].row.started is not None
    )
    run.wait_until("ESC", lambda: not keys.script)
    ports.plug(url_b)  # plugged once ESC was read: no new parts, so no new board
    assert run.finish() == ExitCode.OPERATOR_QUIT, "\n".join(run.lines())
    text = "\n".join(run.lines())
    assert "ESC: no new parts; running boards finish (ESC again aborts them)." in run.lines()
    assert run.board_lines() == [(1, url_a)], text
    assert [(r["board"], r["result"]) for r in run.results()] == [(url_a, "ok")], text
    assert data_locked_chips(chips_a) == 1 and data_locked_chips(chips_b) == 0
    assert not any("Client" in event for event in board_b.text("stdout")), board_b.text()


def test_the_live_table_gets_a_row_for_a_kit_plugged_in_later(
    line: tuple[DemoLayout, Processes, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    layout, procs, port = line
    _, _, url_a = plug_in_board(procs, layout, "board-a", chips=1)
    ports = PluggedPorts(url_a)
    run = GangRun(layout, port, ports, NoKeys(), live=True, count=2)
    run.wait_until("board A's result", lambda: len(run.results()) == 1)
    _, chips_b, url_b = plug_in_board(procs, layout, "board-b", chips=1)
    ports.plug(url_b)
    assert run.finish() == ExitCode.OK, run.output.text.getvalue()
    text = ANSI.sub("", run.output.text.getvalue())
    assert [(r["board"], r["result"]) for r in run.results()] == [(url_a, "ok"), (url_b, "ok")]
    assert f"Board 2: {url_b}" in text.splitlines(), text  # printed above the table
    last = text.rsplit("Serial number", 1)[-1]  # the table's last drawing
    assert re.search(r"(?m)^1 +stopped +[0-9A-F]{18} +provisioned +ok .*" + re.escape(url_a), last)
    assert re.search(r"(?m)^2 +stopped +[0-9A-F]{18} +provisioned +ok .*" + re.escape(url_b), last)
    assert data_locked_chips(chips_b) == 1
