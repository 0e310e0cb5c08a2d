"""End to end with ATECC608B chips: the real provserver, ``atcaprov sim board --chip-type`` and
provclient-cdc, as command-line programs.

* a mixed board (608B, 508A alternating) is provisioned; each board's line names its model; the
  ledger records the device type the client sent (CertRequest2) for every issuance; the
  client's JSON lines and station log rows, ``provserver records list --json`` and ``records
  export --format csv`` carry it;
* on a pty, the operator sees ``Device SN: ... ATECC608B (blank)`` and the ten stages;
* a ``--config`` for the other model is refused before any write, naming the bytes that differ
  in meaning: the saved chip's config zone stays unlocked (508A config on a 608B, and a 608
  config on a 508A).

Every wait is bounded (process start, client run, stop).
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from atcaprov.config import DEFAULT_CONFIG_TEXT
from atcaprov.config_models import DEFAULT_CONFIG_608_TEXT
from atcaprov.emulator.chip import Atecc508a
from atcaprov_demo import (
    DemoLayout,
    Processes,
    cli_command,
    create_signer,
    run_client,
    run_demo,
    start_board,
    start_server,
    verify_chains,
)
from provclient_cdc.session import ExitCode
from provclient_cdc.station_log import COLUMNS
from provserver.ledger import IssuanceState
from provserver.ledger.sqlite import SqliteLedger
from tests.provclient_cdc.test_interactive import expect_line, spawn_client
from tests.support.client import STAGE_LINES

pytestmark = pytest.mark.slow

DEVICE_LINE = re.compile(r"^    Device SN: ([0-9A-F]{18}) (ATECC\w+) \((.*)\)$")


@pytest.fixture
def layout(tmp_path: Path) -> DemoLayout:
    layout = DemoLayout.new(tmp_path)
    create_signer(layout)
    return layout


@pytest.fixture
def procs() -> Iterator[Processes]:
    with Processes() as group:
        yield group


def _records(layout: DemoLayout, *args: str) -> list[str]:
    """The output lines of ``provserver --data-dir DATA records ARGS`` (a program)."""
    done = subprocess.run(
        [*cli_command("provserver", "provserver.cli"), "--data-dir", str(layout.data_dir),
         "records", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _chip_models(layout: DemoLayout) -> dict[str, str]:
    """Serial number (hex) -> model name of every chip file on the board."""
    out = {}
    for path in sorted(layout.boards.glob("chip-*.json")):
        chip = Atecc508a.load(path)
        out[chip.serial_number.hex().upper()] = type(chip).MODEL.name
    return out


def test_mixed_board_608b_and_508a(layout: DemoLayout, procs: Processes) -> None:
    server, port = start_server(procs, layout)
    board, url = start_board(
        procs, layout, chips=4, auto_swap=0.1, chip_types="atecc608b,atecc508a"
    )
    run = run_client(procs, layout, port, url, 4, timeout=180)
    assert board.stop() == 0 and server.stop() == 0
    assert run.returncode == ExitCode.OK, "\n".join(run.lines)
    assert len(run.results) == 4 and all(r["result"] == "ok" for r in run.results)

    # each board's line names the model read from its Info revision, alternating
    shown = [m.groups() for m in map(DEVICE_LINE.match, run.lines) if m]
    assert [model for _, model, _ in shown] == ["ATECC608B", "ATECC508A"] * 2
    assert all(state == "blank" for _, _, state in shown)
    models = _chip_models(layout)
    assert {sn: model for sn, model, _ in shown} == models

    # the chains verify and every chip is data-locked
    chains = verify_chains(layout)
    assert chains.failures == [] and sorted(chains.verified) == sorted(models)
    assert all(Atecc508a.load(p).data_locked for p in layout.boards.glob("chip-*.json"))

    # the ledger: one installed issuance per device, with the device type the request carried
    with SqliteLedger(layout.data_dir / "ledger.sqlite3", read_only=True) as ledger:
        histories = {sn: ledger.device_history(sn) for sn in models}
    for sn, history in histories.items():
        assert history.device is not None
        assert history.device.state is IssuanceState.INSTALLED
        [issuance] = history.issuances
        assert issuance.device_type == models[sn]
    assert sorted(models.values()) == ["ATECC508A", "ATECC508A", "ATECC608B", "ATECC608B"]

    # what people read names each part's model: the client's JSON lines and station log rows,
    # and `provserver records list --json` / `export --format csv` over the server's ledger
    assert {r["serial_number"]: r["device_type"] for r in run.results} == models
    rows = [
        dict(zip(COLUMNS, line.split("\t"), strict=True))
        for path in layout.station_logs.glob("station-*.tsv")
        for line in path.read_text(encoding="utf-8").splitlines()[1:]
    ]
    assert {r["serial_number"]: r["device_type"] for r in rows} == models
    records = _records(layout, "list", "--json")
    assert {r["device_sn"]: r["device_type"] for r in map(json.loads, records)} == models
    exported = _records(layout, "export", "--format", "csv", "-o", "-")
    assert {r["device_sn"]: r["device_type"] for r in csv.DictReader(exported)} == models


@pytest.mark.parametrize(
    ("chip_type", "config_text", "config_model", "part_model"),
    [
        ("atecc608b", DEFAULT_CONFIG_TEXT, "ATECC508A", "ATECC608B"),
        ("atecc508a", DEFAULT_CONFIG_608_TEXT, "ATECC608B", "ATECC508A"),
    ],
)
def test_config_for_the_other_model_refused_before_any_write(
    layout: DemoLayout,
    procs: Processes,
    chip_type: str,
    config_text: str,
    config_model: str,
    part_model: str,
) -> None:
    config = layout.folder / "device.cfg"
    config.write_text(config_text, encoding="ascii")
    _, port = start_server(procs, layout)
    board, url = start_board(procs, layout, chips=1, chip_types=chip_type)
    run = run_client(procs, layout, port, url, 1, timeout=60, extra=["--config", str(config)])
    board.stop()
    assert run.returncode == ExitCode.BOARD_FAILED, "\n".join(run.lines)
    [result] = run.results
    assert result["result"] == "failed" and result["stage"] is None
    assert result["error_code"] == "CONFIG_MISMATCH"
    assert result["part_state"] == "UNLOCKED"
    message = result["error_message"]
    assert f"the config is for the {config_model}" in message
    assert f"this part is an {part_model}" in message
    assert "byte 18: " in message and "bytes 90-91: " in message  # OTPmode/CountMatch, RFU/...
    error = next(i for i, line in enumerate(run.lines) if line.startswith("    Error: "))
    assert run.lines[error] == f"    Error: {message}"
    assert run.lines[error + 1] == (
        "    Part state: untouched (config zone unlocked; can be provisioned again)"
    )
    assert not any(STAGE in line for line in run.lines for STAGE in ("Writing", "Locking"))
    chip = Atecc508a.load(layout.boards / "chip-000.json")
    assert type(chip).MODEL.name == part_model
    assert not chip.config_locked and not chip.data_locked


def test_demo_with_608b(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_demo(2, tmp_path, out, chip_types="atecc608b") == 0
    lines = out.getvalue().splitlines()
    assert "2 provisioned, 2 verified, 0 failed" in lines
    # the demo runs a gang: its lines carry a "[board N] " prefix
    assert (
        sum(
            1
            for line in lines
            if DEVICE_LINE.match(re.sub(r"^\[board \d+\] ", "", line))
            and "ATECC608B (blank)" in line
        )
        == 2
    )


def test_608b_line_on_a_pty(layout: DemoLayout, procs: Processes) -> None:
    """What the operator sees on a terminal: the model next to the serial number, then the ten
    stages of the 608B."""
    _, port = start_server(procs, layout)
    board, url = start_board(procs, layout, chips=1, auto_swap=None, chip_types="atecc608b")
    child = spawn_client(layout, port, url)
    try:
        expect_line(child, "Waiting for board to be connected...ok")
        child.expect(r"    Device SN: (0123[0-9A-F]{12}EE) ATECC608B \(blank\)\r\n")
        expect_line(child, "    Press ENTER to provision...")
        child.send("\r")
        for stage in STAGE_LINES:
            expect_line(child, stage)
        expect_line(child, "Provisioning successful! Please remove board...")
        child.send("\x1b")
        child.expect_exact("Quit.")
    finally:
        child.close(force=True)
        board.stop()
    assert Atecc508a.load(layout.boards / "chip-000.json").data_locked
