"""The station loop in-process: virtual board + threaded certificate server + scripted keys."""

from __future__ import annotations

import csv
import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from atcaprov.emulator.kit_board import VirtualKitBoard
from atcaprov.return_codes import ReturnCode
from atcaprov.stages import ProvStage, ProvStatus
from provclient_cdc.boards import BoardFinder
from provclient_cdc.server_link import ServerLink
from provclient_cdc.session import ExitCode, Station, StationOptions
from provclient_cdc.station_log import LEGACY_COLUMNS
from tests.support.cert_server import CertServer
from tests.support.client import STAGE_LINES, CapturingOutput, ScriptedKeys
from tests.support.pki import Pki


@pytest.fixture
def server(pki: Pki) -> Iterator[CertServer]:
    srv = CertServer(pki)
    yield srv
    srv.close()


def make_station(
    tmp_path: Path,
    pki: Pki,
    server_port: int,
    board_url: str,
    keys: ScriptedKeys,
    output: CapturingOutput,
    **opts: object,
) -> Station:
    options = StationOptions(
        certinfo=pki.write_certinfo(tmp_path),
        host="127.0.0.1",
        port=server_port,
        board=board_url,
        station_id="test-station",
        wait_timeout=10.0,
        connect_retries=0,
        retry_interval=0.1,
        kit_timeout=2.0,
        io_timeout=5.0,
    )
    for name, value in opts.items():
        setattr(options, name, value)
    link = ServerLink("127.0.0.1", server_port, io_timeout=5.0, connect_timeout=2.0)
    return Station(options, output, keys, link=link, finder=BoardFinder(board_url, kit_timeout=2.0))


def test_two_boards_seed_lines_and_json(tmp_path: Path, pki: Pki, server: CertServer) -> None:
    with VirtualKitBoard(tmp_path / "chips", chips=2, auto_swap=0.05) as board:
        out = CapturingOutput(json_lines=True)
        station = make_station(
            tmp_path, pki, server.port, board.url, ScriptedKeys(), out, yes=True, count=2
        )
        assert station.run() == ExitCode.OK
        serials = [e.chip.serial_number.hex().upper() for e in board.chips]
    lines = out.lines()
    expected = [
        f"Reading provisioning config file {tmp_path / 'atcaprov_cert_info_0.c'}...ok",
        f"Connecting to 127.0.0.1:{server.port}...ok",
        "Press ESC to quit.",
        "Waiting for board to be connected...ok",
        f"    Device SN: {serials[0]} ATECC508A (blank)",
        *STAGE_LINES,
        "Provisioning successful! Please remove board...",
        "Board removed. Waiting for board to be connected...ok",
        f"    Device SN: {serials[1]} ATECC508A (blank)",
        *STAGE_LINES,
        "Provisioning successful! Please remove board...",
    ]
    assert lines[: len(expected)] == expected
    assert re.fullmatch(
        r"Shift summary: 2 boards in 0:00:\d\d \(provclient-cdc [0-9.]+,"
        r" station test-station\)",
        lines[len(expected)],
    )
    assert lines[len(expected) + 1 :] == [
        "    Provisioned:          2",
        "    Failed:               0",
        "    Already provisioned:  0",
        "    Verified:             0",
        lines[-1],
    ]
    assert re.fullmatch(
        r"    Mean time per board:  \d+\.\d\d s provisioning, \d+\.\d s board"
        r" to board",
        lines[-1],
    )
    results = [json.loads(x) for x in out.json_text.getvalue().splitlines()]
    assert [r["serial_number"] for r in results] == serials
    assert all(r["result"] == "ok" and r["part_state"] == "PROVISIONED" for r in results)
    assert results[0]["stage"] == "VALIDATE_CERTS" and results[0]["skipped"] == ["SLOTS_LOCK"]
    assert results[0]["chip_floor_ms"] > 100 and results[0]["commands"] > 20
    assert [r["device_type"] for r in results] == ["ATECC508A", "ATECC508A"]
    assert [r.station_id for r in server.requests] == ["test-station", "test-station"]
    assert server.connections == 1  # one connection kept for both boards


def test_each_result_names_the_chip_model_in_json_and_station_log(
    tmp_path: Path, pki: Pki, server: CertServer
) -> None:
    """A board of 608B and 508A parts in turn: each JSON line and station log row carries the
    model read from that part."""
    with VirtualKitBoard(
        tmp_path / "chips", chips=3, auto_swap=0.05, chip_types=("atecc608b", "atecc508a")
    ) as board:
        out = CapturingOutput(json_lines=True)
        station = make_station(
            tmp_path, pki, server.port, board.url, ScriptedKeys(), out, yes=True, count=3,
            log_dir=tmp_path / "logs",
        )  # fmt: skip
        assert station.run() == ExitCode.OK
        models = {e.chip.serial_number.hex().upper(): type(e.chip).MODEL.name for e in board.chips}
    results = [json.loads(x) for x in out.json_text.getvalue().splitlines()]
    assert [r["result"] for r in results] == ["ok", "ok", "ok"]
    assert [r["device_type"] for r in results] == [models[r["serial_number"]] for r in results]
    assert [r["device_type"] for r in results] == ["ATECC608B", "ATECC508A", "ATECC608B"]
    (log,) = (tmp_path / "logs").glob("station-*.tsv")
    with log.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert [(r["serial_number"], r["device_type"]) for r in rows] == [
        (r["serial_number"], r["device_type"]) for r in results
    ]


def test_an_older_clients_station_log_of_today_is_said_and_kept(
    tmp_path: Path, pki: Pki, server: CertServer
) -> None:
    with VirtualKitBoard(tmp_path / "chips", chips=1, chip_types=("atecc608b",)) as board:
        out = CapturingOutput(json_lines=True)
        station = make_station(
            tmp_path, pki, server.port, board.url, ScriptedKeys(), out, yes=True, count=1,
            log_dir=tmp_path / "logs",
        )  # fmt: skip
        assert station.station_log is not None
        today = station.station_log.today
        today.parent.mkdir()
        today.write_text("\t".join(LEGACY_COLUMNS) + "\n", encoding="utf-8")
        assert station.run() == ExitCode.OK
    lines = out.lines()
    assert lines[1] == (
        f"Note: the station log {today} was started by an older client (no device_type"
        " column); today's rows keep its layout, tomorrow's file has the column."
    )
    (row,) = today.read_text(encoding="utf-8").splitlines()[1:]
    assert len(row.split("\t")) == len(LEGACY_COLUMNS) and "ATECC608B" not in row
    assert json.loads(out.json_text.getvalue())["device_type"] == "ATECC608B"


def test_enter_prompt_then_escape(tmp_path: Path, pki: Pki, server: CertServer) -> None:
    with VirtualKitBoard(tmp_path / "chips", chips=2, auto_swap=0.05) as board:
        out = CapturingOutput()
        keys = ScriptedKeys()
        keys.add("ENTER", when=lambda: "    Press ENTER to provision..." in out.lines())
        keys.add("ESC", when=lambda: out.lines().count("    Press ENTER to provision...") == 2)
        station = make_station(tmp_path, pki, server.port, board.url, keys, out)
        assert station.run() == ExitCode.OPERATOR_QUIT
    lines = out.lines()
    assert lines.count("    Press ENTER to provision...") == 2
    assert lines.count("Validating certificates...done") == 1
    assert lines[-7] == "Quit."
    assert lines[-6].startswith("Shift summary: 1 board in ")
    assert len(server.requests) == 1


def test_server_error_reply_shown_as_written(tmp_path: Path, pki: Pki, server: CertServer) -> None:
    server.error = (ReturnCode.SIGNER_LOCKED, "Signer module 0123 is locked: enter its password")
    with VirtualKitBoard(tmp_path / "chips", chips=1) as board:
        out = CapturingOutput(json_lines=True)
        station = make_station(
            tmp_path, pki, server.port, board.url, ScriptedKeys(), out, yes=True, count=1
        )
        assert station.run() == ExitCode.BOARD_FAILED
    lines = out.lines()
    i = lines.index("Requesting certificates...error")
    assert lines[i + 1] == (
        "    Server error: Signer module 0123 is locked: enter its password (SIGNER_LOCKED)"
    )
    assert lines[i + 2] == (
        "    Part state: config zone locked, data zone unlocked (can be provisioned again)"
    )
    assert lines[i + 3] == "Provisioning failed! Please remove board..."
    result = json.loads(out.json_text.getvalue())
    assert result["result"] == "failed" and result["stage"] == "CERTS_REQUEST"
    assert result["error_code"] == "SIGNER_LOCKED"
    assert result["server_message"] == "Signer module 0123 is locked: enter its password"
    assert result["part_state"] == "CONFIG_LOCKED"


def test_board_unplugged_mid_run(tmp_path: Path, pki: Pki, server: CertServer) -> None:
    with VirtualKitBoard(tmp_path / "chips", chips=2) as board:
        out = CapturingOutput(json_lines=True)

        def pull(stage: object, status: object) -> None:
            if stage is ProvStage.CERTS_WRITE and status is ProvStatus.START:
                board.unplug()

        out.on_stage = pull
        station = make_station(
            tmp_path, pki, server.port, board.url, ScriptedKeys(), out, yes=True, count=1
        )
        assert station.run() == ExitCode.BOARD_FAILED
        assert board.chips[0].chip.config_locked and not board.chips[0].chip.data_locked
    lines = out.lines()
    i = lines.index("Writing certificates......error")
    assert lines[i + 1].startswith("    Error: ")
    assert lines[i + 2] == '    Board removed during "Writing certificates".'
    # the removed board's lock bytes cannot be read: the state is not guessed
    assert lines[i + 3] == "    Part state: unknown: plug the part in again to check"
    assert "Provisioning failed! Please remove board..." not in lines
    result = json.loads(out.json_text.getvalue())
    assert result["result"] == "removed" and result["stage"] == "CERTS_WRITE"


def test_resume_after_unplug_then_already_provisioned_verify(
    tmp_path: Path, pki: Pki, server: CertServer
) -> None:
    with VirtualKitBoard(tmp_path / "chips", chips=1) as board:
        out = CapturingOutput(json_lines=True)
        unplugged: list[bool] = []

        def swap_same_chip() -> None:
            board.unplug()
            board.replug(next_chip=False)

        def pull(stage: object, status: object) -> None:
            if stage is ProvStage.GEN_KEY and status is ProvStatus.START and not unplugged:
                unplugged.append(True)
                swap_same_chip()
            if stage is ProvStage.VALIDATE_CERTS and status is ProvStatus.DONE:
                timer = threading.Timer(0.1, swap_same_chip)  # operator pulls and replugs
                timer.start()

        out.on_stage = pull
        keys = ScriptedKeys()
        keys.add("v", when=lambda: "    Press V to verify it, ENTER to go on..." in out.lines())
        station = make_station(tmp_path, pki, server.port, board.url, keys, out, yes=False, count=3)

        def prompted(n: int) -> Callable[[], bool]:
            return lambda: out.lines().count("    Press ENTER to provision...") == n

        keys.script[0:0] = [("ENTER", prompted(n)) for n in (1, 2)]
        assert station.run() == ExitCode.BOARD_FAILED
        serial = board.chips[0].chip.serial_number.hex().upper()
    lines = out.lines()
    # 1st run: removed at key generation; 2nd: resumes the config-locked part
    assert lines.count(f"    Device SN: {serial} ATECC508A (blank)") == 1
    assert "Generating device key.....error" in lines
    assert lines.count(f"    Device SN: {serial} ATECC508A (config locked: will resume)") == 1
    assert "Writing config zone.......skipped" in lines
    assert "Locking config zone.......skipped" in lines
    # 3rd: the same (now provisioned) part: not handed to the flow, verified with V
    i = lines.index(f"    Device SN: {serial} ATECC508A (already provisioned)")
    assert lines[i + 1 : i + 4] == [
        "    This part is already provisioned (data zone locked); it was left untouched.",
        "    Press V to verify it, ENTER to go on...",
        "Verifying part...ok",
    ]
    assert "    ok   certificate chain: root -> signer -> device verified" in lines
    assert lines.count("Writing config zone.......error") == 0
    j = lines.index("Part already provisioned, left untouched. Please remove board...")
    assert j > i and "Provisioning failed! Please remove board..." not in lines[i:]
    results = [json.loads(x) for x in out.json_text.getvalue().splitlines()]
    assert [r["result"] for r in results] == ["removed", "ok", "already_provisioned"]
    assert [r["device_type"] for r in results] == ["ATECC508A"] * 3
    assert results[2]["verify"] and all(v.startswith("ok") for v in results[2]["verify"])


def test_server_closed_connection_between_boards(
    tmp_path: Path, pki: Pki, server: CertServer
) -> None:
    server.close_after_reply = True  # like an idle timeout after each board
    with VirtualKitBoard(tmp_path / "chips", chips=2, auto_swap=0.05) as board:
        out = CapturingOutput()
        station = make_station(
            tmp_path, pki, server.port, board.url, ScriptedKeys(), out, yes=True, count=2
        )
        assert station.run() == ExitCode.OK
    assert out.lines().count("Validating certificates...done") == 2
    assert f"Reconnecting to 127.0.0.1:{server.port}...ok" in out.lines()
    # per board: the request's connection, then the outcome report's (reconnected in silence)
    assert server.connections == 4
    assert [r.outcome.name for r in server.reports] == ["INSTALLED", "INSTALLED"]


def test_server_silent_times_out(tmp_path: Path, pki: Pki, server: CertServer) -> None:
    server.silent = True
    with VirtualKitBoard(tmp_path / "chips", chips=1) as board:
        out = CapturingOutput()
        station = make_station(
            tmp_path,
            pki,
            server.port,
            board.url,
            ScriptedKeys(),
            out,
            yes=True,
            count=1,
            io_timeout=0.5,
        )
        station.link.io_timeout = 0.5
        assert station.run() == ExitCode.BOARD_FAILED
    lines = out.lines()
    i = lines.index("Requesting certificates...error")
    assert "within 0.5 s (TIMEOUT)" in lines[i + 1]


def test_bad_certinfo_file(tmp_path: Path, pki: Pki, server: CertServer) -> None:
    out = CapturingOutput()
    station = make_station(tmp_path, pki, server.port, "socket://127.0.0.1:1", ScriptedKeys(), out)
    station.options.certinfo = tmp_path / "missing.c"
    assert station.run() == ExitCode.BAD_INPUT
    assert out.lines()[0] == f"Reading provisioning config file {tmp_path / 'missing.c'}...failed"
    assert out.lines()[1].startswith("    Error: ")


def test_no_board_within_wait_timeout(tmp_path: Path, pki: Pki, server: CertServer) -> None:
    out = CapturingOutput()
    free = CertServer(pki)  # a port nobody serves a board on
    port = free.port
    free.close()
    station = make_station(
        tmp_path,
        pki,
        server.port,
        f"socket://127.0.0.1:{port}",
        ScriptedKeys(),
        out,
        wait_timeout=0.5,
    )
    assert station.run() == ExitCode.NO_BOARD
    lines = out.lines()
    assert lines[3:5] == [
        "Waiting for board to be connected...",
        f"    Cannot open board socket://127.0.0.1:{port}: Connection refused",
    ]
    assert lines[-8:-6] == [
        "Waiting for board to be connected...timed out",
        f"No board within 0.5 s (socket://127.0.0.1:{port}).",
    ]
    assert lines[-6].startswith("Shift summary: 0 boards in 0:00:00")
    assert lines[-1] == "    Mean time per board:  - (no board)"


def test_lock_slots_and_no_validate(tmp_path: Path, pki: Pki, server: CertServer) -> None:
    with VirtualKitBoard(tmp_path / "chips", chips=1) as board:
        out = CapturingOutput(json_lines=True)
        station = make_station(
            tmp_path,
            pki,
            server.port,
            board.url,
            ScriptedKeys(),
            out,
            yes=True,
            count=1,
            lock_slots=(12, 13),
            validate=False,
        )
        assert station.run() == ExitCode.OK
        config = board.chips[0].chip
        assert config.data_locked
    lines = out.lines()
    assert "Locking slots.............done" in lines
    assert "Validating certificates...skipped" in lines
    result = json.loads(out.json_text.getvalue())
    assert result["skipped"] == ["VALIDATE_CERTS"] and result["result"] == "ok"


def test_no_data_lock_crc_writes_only_the_certificates(
    tmp_path: Path, pki: Pki, server: CertServer
) -> None:
    results = {}
    for crc in (True, False):
        with VirtualKitBoard(tmp_path / f"chips-{crc}", chips=1) as board:
            out = CapturingOutput(json_lines=True)
            station = make_station(
                tmp_path,
                pki,
                server.port,
                board.url,
                ScriptedKeys(),
                out,
                yes=True,
                count=1,
                data_lock_crc=crc,
            )
            assert station.run() == ExitCode.OK
            assert board.chips[0].chip.data_locked
        results[crc] = json.loads(out.json_text.getvalue())
        assert results[crc]["result"] == "ok"
    # the CRC form writes the 37 blocks of the other covered slots and the OTP zone as well
    assert results[True]["commands"] - results[False]["commands"] == 37
    assert results[False]["chip_floor_ms"] < results[True]["chip_floor_ms"]


def test_data_locked_part_with_pending_slot_locks_is_finished(
    tmp_path: Path, pki: Pki, server: CertServer
) -> None:
    # a first shift provisions without slot locks; a second one asks for 12 and 13: the
    # data-locked part is shown as such, handed to the flow, and its slot locks are finished
    with VirtualKitBoard(tmp_path / "chips", chips=1) as board:
        first = make_station(
            tmp_path,
            pki,
            server.port,
            board.url,
            ScriptedKeys(),
            CapturingOutput(),
            yes=True,
            count=1,
        )
        assert first.run() == ExitCode.OK
        chip = board.chips[0].chip
        assert chip.data_locked
        serial = chip.serial_number.hex().upper()
        before = int.from_bytes(chip.config_zone[88:90], "little")
        assert (before >> 12) & 1 and (before >> 13) & 1  # not locked yet
        out = CapturingOutput(json_lines=True)
        second = make_station(
            tmp_path,
            pki,
            server.port,
            board.url,
            ScriptedKeys(),
            out,
            yes=True,
            count=1,
            lock_slots=(12, 13),
        )
        assert second.run() == ExitCode.OK
        slot_locked = int.from_bytes(chip.config_zone[88:90], "little")
    lines = out.lines()
    assert (
        f"    Device SN: {serial} ATECC508A (data locked: will finish slot locks 12, 13)" in lines
    )
    assert "Locking slots.............done" in lines
    assert not (slot_locked >> 12) & 1 and not (slot_locked >> 13) & 1
    assert (slot_locked >> 10) & 1  # only the slots asked for
    assert json.loads(out.json_text.getvalue())["result"] == "ok"
    assert len(server.requests) == 1  # nothing was asked of the server the second time


def test_unlockable_slot_is_bad_input_and_nothing_written(
    tmp_path: Path, pki: Pki, server: CertServer
) -> None:
    with VirtualKitBoard(tmp_path / "chips", chips=1) as board:
        out = CapturingOutput()
        station = make_station(
            tmp_path,
            pki,
            server.port,
            board.url,
            ScriptedKeys(),
            out,
            yes=True,
            count=1,
            lock_slots=(1,),
        )
        assert station.run() == ExitCode.BAD_INPUT
        assert not board.chips[0].chip.config_locked
    assert out.lines()[-1].startswith("Cannot provision with these options: lock_slots: slot 1")
    assert server.requests == []


def test_board_not_removed_within_wait_timeout(
    tmp_path: Path, pki: Pki, server: CertServer
) -> None:
    with VirtualKitBoard(tmp_path / "chips", chips=2) as board:  # nobody swaps it
        out = CapturingOutput()
        station = make_station(
            tmp_path,
            pki,
            server.port,
            board.url,
            ScriptedKeys(),
            out,
            yes=True,
            count=2,
            wait_timeout=0.5,
        )
        assert station.run() == ExitCode.NO_BOARD
    assert out.lines()[-9:-6] == [
        "Provisioning successful! Please remove board...",
        "Waiting for board to be removed...timed out",
        f"Board not removed within 0.5 s ({board.url}).",
    ]


def test_interrupt_mid_run_says_where(tmp_path: Path, pki: Pki, server: CertServer) -> None:
    with VirtualKitBoard(tmp_path / "chips", chips=1) as board:
        out = CapturingOutput()

        def interrupt(stage: object, status: object) -> None:
            if stage is ProvStage.CERTS_WRITE and status is ProvStatus.START:
                raise KeyboardInterrupt

        out.on_stage = interrupt
        station = make_station(
            tmp_path, pki, server.port, board.url, ScriptedKeys(), out, yes=True, count=1
        )
        assert station.run() == ExitCode.INTERRUPTED
    lines = out.lines()
    i = lines.index("Requesting certificates...done")  # interrupted as the next one starts
    assert lines[i + 1 : i + 4] == [
        '    Interrupted during "Writing certificates".',
        "    Part state: config zone locked, data zone unlocked (can be provisioned again)",
        "Interrupted.",
    ]
    assert lines[i + 4].startswith("Shift summary: 1 board in ")
    assert "    Failed:               1 (Writing certificates (interrupted): 1)" in lines


def test_config_file_read_and_used(tmp_path: Path, pki: Pki, server: CertServer) -> None:
    from atcaprov.config import DEFAULT_CONFIG, format_config_text

    config = tmp_path / "config.txt"
    config.write_text(format_config_text(DEFAULT_CONFIG), encoding="utf-8")
    with VirtualKitBoard(tmp_path / "chips", chips=1) as board:
        out = CapturingOutput()
        station = make_station(
            tmp_path,
            pki,
            server.port,
            board.url,
            ScriptedKeys(),
            out,
            yes=True,
            count=1,
            config=config,
        )
        assert station.run() == ExitCode.OK
    assert out.lines()[1] == f"Reading device config file {config}...ok"
    assert server.requests[0].config_zone[16:84] == DEFAULT_CONFIG[16:84]

    out = CapturingOutput()
    station = make_station(
        tmp_path,
        pki,
        server.port,
        "socket://127.0.0.1:1",
        ScriptedKeys(),
        out,
        config=tmp_path / "missing.txt",
    )
    assert station.run() == ExitCode.BAD_INPUT
    missing = tmp_path / "missing.txt"
    assert out.lines()[1:] == [
        f"Reading device config file {missing}...failed",
        f"    Error: {missing}: cannot read config file: No such file or directory",
    ]


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (ProvStatus.START, "config zone locked, data zone unlocked (can be provisioned again)"),
        (ProvStatus.DONE, "data zone locked (provisioned; cannot be rewritten)"),
    ],
)
def test_interrupt_inside_a_lock_stage_asks_the_chip(
    tmp_path: Path, pki: Pki, server: CertServer, status: ProvStatus, state: str
) -> None:
    with VirtualKitBoard(tmp_path / "chips", chips=1) as board:
        out = CapturingOutput(json_lines=True)

        def interrupt(stage: object, what: object) -> None:
            if stage is ProvStage.DATA_LOCK and what is status:
                raise KeyboardInterrupt

        out.on_stage = interrupt
        station = make_station(
            tmp_path, pki, server.port, board.url, ScriptedKeys(), out, yes=True, count=1
        )
        assert station.run() == ExitCode.INTERRUPTED
        assert board.chips[0].chip.data_locked is (status is ProvStatus.DONE)
    lines = out.lines()
    when = "after" if status is ProvStatus.DONE else "during"
    i = lines.index(f'    Interrupted {when} "Locking data zone".')
    assert lines[i + 1] == f"    Part state: {state}"
    result = json.loads(out.json_text.getvalue())
    assert result["result"] == "interrupted" and result["stage"] == "DATA_LOCK"
    assert result["part_state_text"] == state


def test_state_after_each_stage() -> None:
    from atcaprov.provisioning import PartState
    from provclient_cdc.session import _state_after

    blank, locked = PartState.UNLOCKED, PartState.CONFIG_LOCKED
    assert _state_after(None, blank) is blank
    assert _state_after(ProvStage.CONFIG_WRITE, blank) is blank
    assert _state_after(ProvStage.CONFIG_LOCK, blank) is None  # ask the chip
    assert _state_after(ProvStage.CONFIG_LOCK, locked) is locked  # resumed: skipped
    for stage in (
        ProvStage.CONFIG_READ,
        ProvStage.GEN_KEY,
        ProvStage.CERTS_REQUEST,
        ProvStage.CERTS_WRITE,
        ProvStage.DATA_WRITE,
    ):
        assert _state_after(stage, blank) is locked
    assert _state_after(ProvStage.DATA_LOCK, locked) is None
    assert _state_after(ProvStage.SLOTS_LOCK, blank) is PartState.PROVISIONED
    assert _state_after(ProvStage.VALIDATE_CERTS, blank) is PartState.PROVISIONED


def test_outcomes_reported_and_a_version_1_server_told_once(
    tmp_path: Path, pki: Pki, server: CertServer
) -> None:
    with VirtualKitBoard(tmp_path / "chips", chips=2, auto_swap=0.05) as board:
        out = CapturingOutput()
        station = make_station(
            tmp_path, pki, server.port, board.url, ScriptedKeys(), out, yes=True, count=1
        )
        assert station.run() == ExitCode.OK
        (report,) = server.reports
        assert report.outcome.name == "INSTALLED" and report.station_id == "test-station"
        assert station.hooks.recorded is not None and station.hooks.recorded.name == "INSTALLED"
    server.protocol_version = 1  # an older server: no outcome reports
    with VirtualKitBoard(tmp_path / "chips2", chips=2, auto_swap=0.05) as board:
        out = CapturingOutput()
        station = make_station(
            tmp_path, pki, server.port, board.url, ScriptedKeys(), out, yes=True, count=2
        )
        assert station.run() == ExitCode.OK
    lines = out.lines()
    assert (
        lines.count("    The server does not record provisioning outcomes (protocol version 1).")
        == 1
    )
    assert lines.count("Provisioning successful! Please remove board...") == 2
    assert len(server.reports) == 1
