"""Gang mode end to end: four virtual boards (``atcaprov sim board --count 4``, real chip times),
a real provserver and ``provclient-cdc`` with four ``--board`` options.

Board 4 holds a part that a single-board run provisioned before; board 2 is unplugged (the
board process's ``unplug 2`` control line) while its part is being provisioned, right after
its config zone was locked. Boards 1 and 3 finish; the JSON lines, the plain ``[board N]``
lines and the shift summary say exactly what happened to each board. Every wait is bounded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from atcaprov.emulator.chip import Atecc508a
from atcaprov_demo import (
    DemoLayout,
    Processes,
    create_signer,
    run_client,
    start_boards,
    start_server,
    verify_chains,
)
from provclient_cdc.session import ExitCode
from provclient_cdc.station_log import COLUMNS

pytestmark = pytest.mark.slow

UNPLUG_AFTER = "[board 2] Locking config zone.......done"


@pytest.fixture
def procs() -> Iterator[Processes]:
    with Processes() as group:
        yield group


def test_four_boards_one_unplugged_one_already_provisioned(
    tmp_path: Path, procs: Processes
) -> None:
    layout = DemoLayout.new(tmp_path)
    create_signer(layout)
    server, port = start_server(procs, layout)
    boards, urls = start_boards(procs, layout, chips=1, count=4, auto_swap=None, timing_scale=1.0)
    assert len(set(urls)) == 4

    # board 4's part: provisioned beforehand by a single-board run (it stays plugged)
    first = run_client(procs, layout, port, urls[3], 1, timeout=60)
    assert first.returncode == ExitCode.OK and first.provisioned == 1, "\n".join(first.lines)
    done_serial = first.results[0]["serial_number"]

    unplugged: list[str] = []

    def on_line(stream: str, line: str) -> None:
        if stream == "stderr" and line == UNPLUG_AFTER and not unplugged:
            unplugged.append(line)
            boards.send("unplug 2")

    run = run_client(procs, layout, port, urls, 4, timeout=90, on_line=on_line)
    boards.stop()
    server.stop()
    text = "\n".join(run.lines)
    assert unplugged, text
    assert run.returncode == ExitCode.BOARD_FAILED, text

    by_board = {r["board"]: r for r in run.results}
    assert sorted(by_board) == sorted(urls) and len(run.results) == 4, text
    assert [r["index"] for r in run.results] == [1, 2, 3, 4]
    for url in (urls[0], urls[2]):
        assert by_board[url]["result"] == "ok"
        assert by_board[url]["part_state"] == "PROVISIONED"
    removed = by_board[urls[1]]
    assert removed["result"] == "removed", removed
    # pulled after its config lock (how soon depends on the machine's load)
    assert removed["stage"] in (
        "CONFIG_READ",
        "GEN_KEY",
        "CERTREQ",
        "CERTS_WRITE",
        "DATA_WRITE",
        "DATA_LOCK",
    ), removed
    # the state the flow could read after the failure (UNKNOWN: the chip was gone), as shown
    assert removed["part_state"] in ("CONFIG_LOCKED", "PROVISIONED", "UNKNOWN"), removed
    already = by_board[urls[3]]
    assert already["result"] == "already_provisioned"
    assert already["serial_number"] == done_serial
    assert already["error_code"] == "ALREADY_PROVISIONED"
    assert already["commands"] == 0  # nothing sent to it after it was opened
    # every board's line names its part's model, read when the board was opened
    assert [r["device_type"] for r in run.results] == ["ATECC508A"] * 4

    # the plain lines: every line of a board's flow prefixed with it
    for number, url in enumerate(urls, start=1):
        assert f"Board {number}: {url}" in run.lines
    assert run.lines.count("[board 1] Provisioning successful! Please remove board...") == 1
    assert run.lines.count("[board 3] Provisioning successful! Please remove board...") == 1
    label = removed["stage_label"]
    assert f'[board 2]     Board removed during "{label}".' in run.lines, text
    assert f"[board 2]     Part state: {removed['part_state_text']}" in run.lines, text
    chip = Atecc508a.load(layout.boards / "board-02" / "chip-000.json")
    assert chip.config_locked
    assert not chip.data_locked or removed["stage"] == "DATA_LOCK"
    assert (
        "[board 4]     This part is already provisioned (data zone locked); it was left"
        " untouched." in run.lines
    )
    assert not any(line.startswith("[board 4] Writing") for line in run.lines)

    # the shift summary counts all four boards
    assert "    Provisioned:          2" in run.lines, text
    assert any(
        re.fullmatch(r"    Failed:               1 \([A-Za-z ]+ \(board removed\): 1\)", line)
        for line in run.lines
    ), text
    assert "    Already provisioned:  1" in run.lines
    assert any(line.startswith("Shift summary: 4 boards in ") for line in run.lines)

    # the station log has a row per board; the server issued exactly three certificates
    rows = [
        dict(zip(COLUMNS, line.split("\t"), strict=True))
        for path in sorted(layout.station_logs.glob("*.tsv"))
        for line in path.read_text(encoding="utf-8").splitlines()[1:]
    ]
    assert sorted(row["result"] for row in rows) == sorted(
        ["ok", "ok", "ok", "removed", "already_provisioned"]
    )  # the first run's row too
    assert {row["device_type"] for row in rows} == {"ATECC508A"}
    chains = verify_chains(layout, use_openssl=False)
    assert not chains.failures
    assert {
        done_serial,
        by_board[urls[0]]["serial_number"],
        by_board[urls[2]]["serial_number"],
    } <= set(chains.verified)
    assert json.dumps(run.results)  # the JSON lines were objects
