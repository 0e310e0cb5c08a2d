"""End to end: signer set-up, provserver, a virtual kit board and provclient-cdc, all as the
real command-line programs (the building blocks of ``atcaprov_demo``).

* 10 boards provisioned; every chain root -> signer -> device verifies (openssl when present,
  and cryptography); the signing log has 10 ``signed`` rows for exactly those serial numbers;
  the certs folder holds a device and a signer certificate per device; every chip file on the
  board is data-locked.
* Failures an operator must understand: server not running (countdown, exit 3), the server's
  error reply shown as written, a board unplugged mid-run (stage and part state shown).

Every wait is bounded (process start, client run, stop).
"""

from __future__ import annotations

import io
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from atcaprov.emulator.chip import Atecc508a
from atcaprov_demo import (
    DemoLayout,
    Processes,
    create_signer,
    run_client,
    run_demo,
    signing_rows,
    start_board,
    start_server,
    verify_chains,
)
from provclient_cdc.session import ExitCode
from provserver.ledger import IssuanceState
from provserver.ledger.sqlite import SqliteLedger
from tests.support.cert_files import cert_files, devices_with_files
from tests.support.certs import tls_files
from tests.support.net import free_port

pytestmark = pytest.mark.slow

STAGE_WORDS = re.compile(r"^([A-Za-z ]+?)\.{3,}(done|skipped|error)$")


@pytest.fixture
def layout(tmp_path: Path) -> DemoLayout:
    layout = DemoLayout.new(tmp_path)
    create_signer(layout)
    return layout


@pytest.fixture
def procs() -> Iterator[Processes]:
    with Processes() as group:
        yield group


def test_ten_boards_end_to_end(layout: DemoLayout, procs: Processes) -> None:
    server, port = start_server(procs, layout)
    board, url = start_board(procs, layout, chips=10, auto_swap=0.1)
    run = run_client(procs, layout, port, url, 10, timeout=180)
    board_code = board.stop()
    server_code = server.stop()
    assert run.returncode == ExitCode.OK, "\n".join(run.lines)
    assert board_code == 0 and server_code == 0

    # the client: 10 boards, each with the app note's ten stage lines
    assert len(run.results) == 10 and all(r["result"] == "ok" for r in run.results)
    serials = [r["serial_number"] for r in run.results]
    assert len(set(serials)) == 10
    stage_lines = [m for m in map(STAGE_WORDS.match, run.lines) if m]
    assert len(stage_lines) == 100
    assert all(m.group(2) in ("done", "skipped") for m in stage_lines)
    assert run.lines.count("Provisioning successful! Please remove board...") == 10
    assert run.lines.count("Board removed. Waiting for board to be connected...ok") == 9

    # every chain verifies, with openssl (if installed) and with cryptography
    chains = verify_chains(layout)
    assert chains.failures == [] and sorted(chains.verified) == sorted(serials)
    if shutil.which("openssl"):
        assert chains.tool == "openssl verify"
        crypto = verify_chains(layout, use_openssl=False)
        assert crypto.failures == [] and len(crypto.verified) == 10

    # signing log: one signed row per device, for exactly these devices and this station
    rows = signing_rows(layout)
    assert len(rows) == 10
    assert sorted(r["device_sn"] for r in rows) == sorted(serials)
    assert all(r["result"] == "signed" and r["station"].endswith('"demo-station"') for r in rows)

    # certs folder complete: every device has its device and signer certificate
    assert devices_with_files(layout.certs) == set(serials)
    for sn in serials:
        device = x509.load_pem_x509_certificate(
            cert_files(layout.certs, sn, "device")[0].read_bytes()
        )
        signer = x509.load_pem_x509_certificate(
            cert_files(layout.certs, sn, "signer")[0].read_bytes()
        )
        device.verify_directly_issued_by(signer)
        row = next(r for r in rows if r["device_sn"] == sn)
        assert f"{device.serial_number:X}".rjust(len(row["cert_sn"]), "0") == row["cert_sn"]
    # the ledger: every device installed (reported by the client after its validation stage)
    with SqliteLedger(layout.data_dir / "ledger.sqlite3", read_only=True) as ledger:
        states = {sn: ledger.device_history(sn) for sn in serials}
    assert all(
        h.device is not None and h.device.state is IssuanceState.INSTALLED for h in states.values()
    ), states
    assert all(len(h.issuances) == 1 for h in states.values())

    # the board: every chip provisioned (data zone locked)
    chips = sorted(layout.boards.glob("chip-*.json"))
    assert len(chips) == 10
    assert all(Atecc508a.load(p).data_locked for p in chips)


def test_server_not_running(layout: DemoLayout, procs: Processes) -> None:
    port = free_port()
    _, url = start_board(procs, layout, chips=1)
    run = run_client(procs, layout, port, url, 1, timeout=60)
    assert run.returncode == ExitCode.SERVER_UNREACHABLE
    refused = f"Connecting to 127.0.0.1:{port}...failed (connection refused)"
    assert run.lines[1:] == [
        f"{refused}, retrying in 1 s",
        f"{refused}, retrying in 1 s",
        f"{refused}, retrying in 1 s",
        refused,
        f"Cannot reach the provisioning server at 127.0.0.1:{port}: connection refused."
        " Is provserver running there?",
    ]
    assert run.results == []


def test_unknown_signer_refused_before_anything_is_written(
    layout: DemoLayout, procs: Processes, tmp_path: Path
) -> None:
    # a cert info for a signer this server does not have: the readiness check says so at
    # start and again at the board, before the first write; the chip stays blank
    other = DemoLayout.new(tmp_path / "other")
    create_signer(other)
    _, port = start_server(procs, layout)
    _, url = start_board(procs, layout, chips=1)
    run = run_client(procs, layout, port, url, 1, certinfo=other.certinfo, timeout=60)
    assert run.returncode == ExitCode.BOARD_FAILED
    [result] = run.results
    assert result["result"] == "failed" and result["stage"] is None
    assert result["error_code"] == "SIGNER_NOT_FOUND"
    assert result["part_state"] == "UNLOCKED"
    assert run.lines.count(f"    Server not ready: {result['error_message']}") == 2
    i = run.lines.index(f"    Server not ready: {result['error_message']}", 3)
    assert run.lines[i + 1] == (
        "    Part state: untouched (config zone unlocked; can be provisioned again)"
    )
    assert run.lines[i + 2] == "Provisioning failed! Please remove board..."
    assert not any(line.startswith("Writing config zone") for line in run.lines)
    assert not Atecc508a.load(layout.boards / "chip-000.json").config_locked
    server_log = layout.log("server").read_text(encoding="utf-8")
    assert "SIGNER_NOT_FOUND" in server_log


def test_board_unplugged_mid_run(layout: DemoLayout, procs: Processes) -> None:
    _, port = start_server(procs, layout)
    board, url = start_board(procs, layout, chips=2, auto_swap=None, timing_scale=2.0)
    pulled = threading.Event()

    def pull(stream: str, line: str) -> None:
        if line == "Requesting certificates...done" and not pulled.is_set():
            pulled.set()
            board.send("unplug")

    run = run_client(procs, layout, port, url, 1, timeout=90, on_line=pull)
    assert pulled.is_set()
    assert run.returncode == ExitCode.BOARD_FAILED
    [result] = run.results
    assert result["result"] == "removed"
    assert result["stage"] in (
        "CERTS_WRITE",
        "DATA_WRITE",
        "DATA_LOCK",
        "SLOTS_LOCK",
        "VALIDATE_CERTS",
    )
    label = result["stage_label"]
    i = next(k for k, line in enumerate(run.lines) if line.startswith(label + "..."))
    assert run.lines[i].endswith("error")
    assert run.lines[i + 1].startswith("    Error: ")
    assert run.lines[i + 2] == f'    Board removed during "{label}".'
    assert run.lines[i + 3] == f"    Part state: {result['part_state_text']}"
    chip = Atecc508a.load(layout.boards / "chip-000.json")
    assert chip.config_locked
    assert chip.data_locked == (result["part_state"] == "PROVISIONED")


def test_demo_command(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_demo(2, tmp_path, out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Demo folder: ")
    folder = Path(lines[0].removeprefix("Demo folder: "))
    assert folder.parent == tmp_path.resolve()
    assert "2 provisioned, 2 verified, 0 failed" in lines
    # a gang of two boards: each board's lines prefixed with it
    assert (
        lines.count("[board 1] Validating certificates...done")
        + lines.count("[board 2] Validating certificates...done")
        == 2
    )
    assert "Board 1: socket://" in out.getvalue() and "Board 2: socket://" in out.getvalue()
    assert "Reading provisioning config file atcaprov_cert_info_0.c...ok" in lines
    for name in (
        "atcaprov_cert_info_0.c",
        "server.log",
        "board.log",
        "client.log",
        "signer-create.log",
        "root/root-ca.crt",
    ):
        assert (folder / name).exists(), name
    assert len(devices_with_files(folder / "server-data" / "certs")) == 2


def test_tls_with_station_certificates(layout: DemoLayout, procs: Processes) -> None:
    tls = tls_files(layout.folder)
    _, port = start_server(
        procs,
        layout,
        extra=[
            "--tls-cert",
            str(tls["server.crt"]),
            "--tls-key",
            str(tls["server.key"]),
            "--tls-client-ca",
            str(tls["ca.crt"]),
        ],
    )
    _, url = start_board(procs, layout, chips=2, auto_swap=0.1)
    run = run_client(
        procs,
        layout,
        port,
        url,
        2,
        timeout=90,
        extra=[
            "--tls-ca",
            str(tls["ca.crt"]),
            "--tls-cert",
            str(tls["station.crt"]),
            "--tls-key",
            str(tls["station.key"]),
        ],
    )
    assert run.returncode == ExitCode.OK, "\n".join(run.lines)
    assert [r["result"] for r in run.results] == ["ok", "ok"]
    assert not any(line.startswith("Reconnecting") for line in run.lines)
    # without a station certificate the server refuses the station
    (layout.folder / "b2").mkdir()
    _, url2 = start_board(procs, DemoLayout(layout.folder / "b2"), chips=1)
    refused = run_client(
        procs, layout, port, url2, 1, timeout=90, extra=["--tls-ca", str(tls["ca.crt"])]
    )
    assert refused.returncode == ExitCode.SERVER_UNREACHABLE
    assert refused.lines[1].startswith(f"Connecting to 127.0.0.1:{port}...failed (TLS: ")
