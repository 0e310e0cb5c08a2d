"""The station log (a row per board, a file per day), its default folder, and the shift summary."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from atcaprov import __version__
from atcaprov.stages import ProvStage
from provclient_cdc.output import BoardResult, format_duration, summary_lines
from provclient_cdc.station_log import (
    COLUMNS,
    LEGACY_COLUMNS,
    StationLog,
    StationLogError,
    default_log_dir,
    log_field,
)

TZ = timezone(timedelta(hours=2))


class Clock:
    def __init__(self, when: datetime) -> None:
        self.when = when

    def __call__(self) -> datetime:
        return self.when


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_default_folder_per_platform() -> None:
    assert default_log_dir(platform="linux", environ={"HOME": "/home/op"}) == Path(
        "/home/op/.local/share/atcaprov/provclient-cdc"
    )
    assert default_log_dir(
        platform="linux", environ={"HOME": "/home/op", "XDG_DATA_HOME": "/data/op"}
    ) == Path("/data/op/atcaprov/provclient-cdc")
    assert default_log_dir(
        platform="linux", environ={"HOME": "/home/op", "XDG_DATA_HOME": "relative"}
    ) == Path("/home/op/.local/share/atcaprov/provclient-cdc")
    assert default_log_dir(platform="darwin", environ={"HOME": "/Users/op"}) == Path(
        "/Users/op/Library/Application Support/atcaprov/provclient-cdc"
    )
    win = default_log_dir(
        platform="win32", environ={"LOCALAPPDATA": "C:\\Users\\op\\AppData\\Local"}
    )
    assert win.parts[-2:] == ("atcaprov", "provclient-cdc")
    assert str(win).startswith("C:\\Users\\op\\AppData\\Local")


def test_rows_header_once_and_a_file_per_day(tmp_path: Path) -> None:
    clock = Clock(datetime(2024, 5, 1, 23, 59, 58, tzinfo=TZ))
    log = StationLog(tmp_path / "logs", clock=clock)
    assert log.check() == tmp_path / "logs" / "station-2024-05-01.tsv"
    ok = BoardResult(
        index=1,
        board="socket://127.0.0.1:5",
        serial_number="0123AABBCCDDEEFFEE",
        device_type="ATECC608B",
        result="ok",
        stage=ProvStage.VALIDATE_CERTS,
        part_state="PROVISIONED",
        elapsed_s=1.23456,
        station_id="line1-st3",
    )
    failed = BoardResult(
        index=2,
        board="COM5",
        serial_number="0123000000000001EE",
        stage=ProvStage.CERTS_REQUEST,
        error_code="SIGNER_LOCKED",
        error_message="signer locked",
        server_message="\x1b[2J\tlocked\nProvisioning successful!",
        part_state="CONFIG_LOCKED",
        station_id="line1-st3",
    )
    first = log.write(ok)
    log.write(failed)
    clock.when += timedelta(seconds=3)  # past midnight: a new file with its own header
    second = log.write(ok)
    assert second.name == "station-2024-05-02.tsv" and first != second
    text = first.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "\t".join(COLUMNS)
    assert len(text.splitlines()) == 3  # header + 2 rows: the server text did not add lines
    day1 = rows(first)
    assert day1[0] == {
        "time": "2024-05-01T23:59:58+02:00",
        "station": "line1-st3",
        "board": "socket://127.0.0.1:5",
        "serial_number": "0123AABBCCDDEEFFEE",
        "device_type": "ATECC608B",
        "result": "ok",
        "stage": "VALIDATE_CERTS",
        "error_code": "",
        "error": "",
        "part_state": "PROVISIONED",
        "elapsed_s": "1.235",
        "version": __version__,
    }
    assert day1[1]["result"] == "failed" and day1[1]["stage"] == "CERTS_REQUEST"
    assert day1[1]["error"] == "\\x1b[2J\\tlocked\\nProvisioning successful!"
    assert day1[1]["error_code"] == "SIGNER_LOCKED"
    assert day1[1]["device_type"] == ""  # its model was not read: an empty cell
    assert len(rows(second)) == 1


def _board(n: int, device_type: str | None = "ATECC608B") -> BoardResult:
    return BoardResult(
        index=n,
        board="COM5",
        serial_number=f"01230000000000{n:02X}EE",
        device_type=device_type,
        result="ok",
        stage=ProvStage.VALIDATE_CERTS,
        station_id="st1",
    )


def test_a_day_file_of_an_older_client_keeps_its_layout(tmp_path: Path) -> None:
    """An older client's file of today (no device_type column): rows keep lining up with its
    header for the rest of the day; the next day's file has the new layout."""
    clock = Clock(datetime(2024, 5, 1, 14, 0, 0, tzinfo=TZ))
    log = StationLog(tmp_path, clock=clock)
    old = tmp_path / "station-2024-05-01.tsv"
    old_row = "2024-05-01T08:00:00+02:00\tst1\tCOM5\t0123000000000000EE\tok\tVALIDATE_CERTS"
    old_row += "\t\t\tPROVISIONED\t1.000\t0.9\n"
    old.write_text("\t".join(LEGACY_COLUMNS) + "\n" + old_row, encoding="utf-8")
    assert (*LEGACY_COLUMNS, "device_type") == COLUMNS  # the new column came last

    assert log.check() == old and log.columns_of(old) == LEGACY_COLUMNS
    assert log.write(_board(1)) == old
    lines = old.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and lines[1] == old_row.rstrip("\n")
    assert [len(line.split("\t")) for line in lines] == [len(LEGACY_COLUMNS)] * 3
    added = rows(old)[1]
    assert (added["serial_number"], added["result"], added["version"]) == (
        "0123000000000001EE",
        "ok",
        __version__,
    )
    assert "device_type" not in added

    clock.when += timedelta(days=1)
    new = log.write(_board(2))
    assert new.name == "station-2024-05-02.tsv"
    assert log.columns_of(new) == COLUMNS and rows(new)[0]["device_type"] == "ATECC608B"


def test_rows_follow_the_header_of_the_file(tmp_path: Path) -> None:
    """A column this client does not know is left empty; an empty file (created, then the power
    went) gets the header first; a file without a header of ours gets the current layout."""
    clock = Clock(datetime(2024, 5, 1, 14, 0, 0, tzinfo=TZ))
    log = StationLog(tmp_path, clock=clock)
    path = log.path_for(clock())
    path.write_text("time\tdevice_type\tshift\tserial_number\n", encoding="utf-8")
    log.write(_board(3))
    assert rows(path) == [
        {
            "time": "2024-05-01T14:00:00+02:00",
            "device_type": "ATECC608B",
            "shift": "",
            "serial_number": "0123000000000003EE",
        }
    ]
    path.write_bytes(b"")
    log.write(_board(4, None))
    assert path.read_text(encoding="utf-8").splitlines()[0] == "\t".join(COLUMNS)
    assert rows(path)[0]["device_type"] == ""
    path.write_text("not a header\n", encoding="utf-8")
    log.write(_board(5))
    cells = path.read_text(encoding="utf-8").splitlines()[1].split("\t")
    assert (cells[3], cells[-1]) == ("0123000000000005EE", "ATECC608B")


def test_fields_are_escaped_and_not_formulas() -> None:
    assert log_field(None) == ""
    assert log_field("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert log_field("a\tb") == "a\\tb"
    assert len(log_field("x" * 5000)) == 1024


def test_unwritable_folder_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StationLogError, match="cannot write the station log"):
        StationLog(blocker / "logs").check()


def test_summary_counts_by_result_and_stage() -> None:
    results = [
        BoardResult(1, "b", result="ok", elapsed_s=1.0),
        BoardResult(2, "b", result="ok", elapsed_s=2.0),
        BoardResult(3, "b", result="failed", stage=ProvStage.CERTS_REQUEST),
        BoardResult(4, "b", result="removed", stage=ProvStage.CERTS_WRITE),
        BoardResult(5, "b", result="failed", stage=ProvStage.CERTS_REQUEST),
        BoardResult(6, "b", result="already_provisioned", verify=["ok   x"], verify_ok=True),
        BoardResult(7, "b", result="interrupted", stage=ProvStage.VALIDATE_CERTS),
    ]
    lines = summary_lines(results, duration_s=70.0, header="Shift summary: 7 boards")
    assert lines == [
        "Shift summary: 7 boards",
        "    Provisioned:          2",
        "    Failed:               4 (Requesting certificates: 2, Validating certificates"
        " (interrupted): 1, Writing certificates (board removed): 1)",
        "    Already provisioned:  1",
        "    Verified:             1 (1 passed, 0 failed)",
        "    Mean time per board:  1.50 s provisioning, 10.0 s board to board",
    ]
    verified = [
        BoardResult(1, "b", result="verified", verify_ok=True, elapsed_s=0.5),
        BoardResult(2, "b", result="verify_failed", verify_ok=False, elapsed_s=0.3),
    ]
    assert summary_lines(verified, duration_s=4.0, header="h")[-2:] == [
        "    Verified:             2 (1 passed, 1 failed)",
        "    Mean time per board:  0.40 s verifying, 2.0 s board to board",
    ]
    assert format_duration(3725.9) == "1:02:05"
