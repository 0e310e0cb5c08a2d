"""Operator lines, stage lines and JSON result lines."""

from __future__ import annotations

import io
import json
import logging

from atcaprov.stages import ProvStage, ProvStatus
from provclient_cdc.output import BoardResult, Output, OutputLogHandler


def test_steps_and_details() -> None:
    buf = io.StringIO()
    out = Output(buf)
    out.begin("Connecting to localhost:11235...")
    out.end("ok")
    out.begin("Waiting for board to be connected...")
    out.detail("Board not usable: no device")  # closes the open line first
    out.line("Press ESC to quit.")
    assert buf.getvalue().splitlines() == [
        "Connecting to localhost:11235...ok",
        "Waiting for board to be connected...",
        "    Board not usable: no device",
        "Press ESC to quit.",
    ]


def test_stage_lines_match_the_seed() -> None:
    buf = io.StringIO()
    out = Output(buf)
    out.stage(ProvStage.CONFIG_WRITE, ProvStatus.START)
    assert buf.getvalue() == "Writing config zone......."  # shown while the stage runs
    out.stage(ProvStage.CONFIG_WRITE, ProvStatus.DONE)
    out.stage(ProvStage.SLOTS_LOCK, ProvStatus.SKIPPED)
    out.stage(ProvStage.CERTS_REQUEST, ProvStatus.START)
    out.stage(ProvStage.CERTS_REQUEST, ProvStatus.ERROR)
    out.stage(ProvStage.DATA_LOCK, ProvStatus.DONE)  # without START: still a whole line
    assert buf.getvalue().splitlines() == [
        "Writing config zone.......done",
        "Locking slots.............skipped",
        "Requesting certificates...error",
        "Locking data zone.........done",
    ]


def test_update_only_on_a_terminal() -> None:
    buf = io.StringIO()
    out = Output(buf)
    out.begin("Connecting...")
    out.update("Connecting...failed, retrying in 4 s")
    assert buf.getvalue() == "Connecting..."
    live = io.StringIO()
    out = Output(live, live=True)
    out.begin("Connecting...failed, retrying in 10 s")
    out.update("Connecting...failed, retrying in 9 s")
    assert live.getvalue().endswith("\rConnecting...failed, retrying in 9 s \b")


def test_json_line() -> None:
    human, js = io.StringIO(), io.StringIO()
    out = Output(human, js)
    result = BoardResult(
        index=1,
        board="socket://127.0.0.1:5",
        serial_number="0123AA",
        device_type="ATECC608B",
        result="failed",
        stage=ProvStage.CERTS_REQUEST,
        error_code="SIGNER_LOCKED",
        error_code_value=0x21,
        error_message="locked",
        server_message="locked",
        part_state="CONFIG_LOCKED",
        part_state_text="config",
        elapsed_s=0.12345,
        station_id="st1",
        skipped=[ProvStage.SLOTS_LOCK],
    )
    out.result(result)
    record = json.loads(js.getvalue())
    assert record == {
        "index": 1,
        "board": "socket://127.0.0.1:5",
        "serial_number": "0123AA",
        "device_type": "ATECC608B",
        "result": "failed",
        "stage": "CERTS_REQUEST",
        "stage_label": "Requesting certificates",
        "error_code": "SIGNER_LOCKED",
        "error_code_value": 33,
        "error_message": "locked",
        "server_message": "locked",
        "part_state": "CONFIG_LOCKED",
        "part_state_text": "config",
        "skipped": ["SLOTS_LOCK"],
        "elapsed_s": 0.123,
        "station_id": "st1",
        "verify": None,
        "chip_floor_ms": 0.0,
        "commands": 0,
    }
    assert human.getvalue() == ""
    Output(io.StringIO()).result(result)  # no JSON stream: nothing, no error


def test_json_line_of_a_part_whose_model_was_not_read_has_a_null_device_type() -> None:
    js = io.StringIO()
    Output(io.StringIO(), js).result(BoardResult(index=1, board="COM5", serial_number="0123AA"))
    assert json.loads(js.getvalue())["device_type"] is None


def test_log_records_as_indented_lines() -> None:
    buf = io.StringIO()
    out = Output(buf)
    handler = OutputLogHandler(out)
    log = logging.getLogger("atcaprov.test_output")
    log.addHandler(handler)
    log.propagate = False
    try:
        out.begin("Writing certificates......")
        log.warning("idle after a failed command also failed: %s", "broken pipe")
        log.warning("bad %d format", "x")
    finally:
        log.removeHandler(handler)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "Writing certificates......"
    assert lines[1] == "    (warning) idle after a failed command also failed: broken pipe"
    assert lines[2].startswith("    (warning) 'bad %d format' (unformattable:")


def test_outside_text_is_escaped_on_its_way_to_the_terminal() -> None:
    buf = io.StringIO()
    out = Output(buf, live=True)
    out.begin("Waiting for \x1b[2Jboard...")
    out.end("ok\r")
    out.detail("Server error: \x1b[2J\nProvisioning successful! Please remove board... (X)")
    out.line("kit said \x00\x07\u202eevil")
    out.begin("Connecting...")
    out.update("Connecting...\x1b[H")
    out.end("")
    text = buf.getvalue()
    assert "\x1b" not in text and "\x00" not in text and "\x07" not in text
    assert text.split("\n")[:4] == [
        "Waiting for \\x1b[2Jboard...ok\\r",
        "    Server error: \\x1b[2J\\nProvisioning successful! Please remove board... (X)",
        "kit said \\x00\\x07\\u202eevil",
        "Connecting...\rConnecting...\\x1b[H",
    ]
