"""End to end: one station, two real ``provserver`` processes, failover between boards.

Both servers run on loopback with their own data folder and the same sim signer modules; either
each with its own SQLite ledger, or both on one shared PostgreSQL ledger (tests/support's
throw-away PostgreSQL; skipped when it cannot run here). The station is given ``--host A,B``;
after its first board the first server is stopped (SIGTERM, between boards). The next board's
readiness check finds it gone, the station says on the screen that it uses the second server,
and the line goes on: every part is provisioned (data zone locked, certificates verified by
the client), no part is left between its config lock and its data lock, and the ledgers hold
every device once, installed (separate ledgers: each exactly the devices its server signed).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from atcaprov.emulator.chip import Atecc508a
from atcaprov_demo import (
    DemoLayout,
    ManagedProcess,
    Processes,
    cli_command,
    create_signer,
    run_client,
    start_board,
    start_server,
)
from provclient_cdc.session import ExitCode
from provserver.ledger import IssuanceState, open_ledger
from provserver.ledger.sqlite import SqliteLedger
from tests.support.postgres import PostgresServer, postgres_or_skip

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 60.0


@pytest.fixture
def layout(tmp_path: Path) -> DemoLayout:
    layout = DemoLayout.new(tmp_path)
    create_signer(layout)
    return layout


@pytest.fixture
def procs() -> Iterator[Processes]:
    with Processes() as group:
        yield group


def start_second_server(
    procs: Processes, layout: DemoLayout, data: Path, extra: list[str]
) -> tuple[ManagedProcess, int]:
    """A second provserver on the same sim modules, with its own data folder (the signer
    profile taken from the first one's folder with --profiles)."""
    argv = [
        *cli_command("provserver", "provserver.cli"),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data-dir",
        str(data),
        "--signers",
        "sim",
        "--modules",
        str(layout.modules),
        "--profiles",
        str(layout.data_dir / "signers"),
        *extra,
    ]
    proc = procs.start("provserver B", argv, layout.log("server-b"), cwd=layout.folder)
    found = proc.wait_for(r"Server listening on [^ ]*:(\d+)", START_TIMEOUT_S)
    proc.wait_for(r"Signer \(.*\) found", START_TIMEOUT_S)
    return proc, int(found.group(1))


def installed(ledger_file: Path) -> dict[str, IssuanceState]:
    """Device serial number -> state, for every device of a SQLite ledger."""
    with SqliteLedger(ledger_file, read_only=True) as ledger:
        return {i.device_sn: i.state for i in ledger.iter_issuances()}


@pytest.mark.parametrize("ledger", ["separate", "shared"])
def test_first_server_stopped_between_boards(
    layout: DemoLayout,
    procs: Processes,
    tmp_path: Path,
    ledger: str,
    postgres_server: PostgresServer | str,
) -> None:
    ledger_url = postgres_or_skip(postgres_server).new_database() if ledger == "shared" else None
    extra = ["--ledger", ledger_url] if ledger_url is not None else []
    server_a, port_a = start_server(procs, layout, extra=extra)
    data_b = tmp_path / "data-b"
    server_b, port_b = start_second_server(procs, layout, data_b, extra)
    board, url = start_board(procs, layout, chips=4, auto_swap=1.0)

    stopped = threading.Event()
    stopper: list[threading.Thread] = []

    def stop_now() -> None:
        server_a.stop()
        stopped.set()

    def stop_a(stream: str, line: str) -> None:
        # after the first board, while the station waits for the next one
        if line.startswith("Provisioning successful!") and not stopper:
            thread = threading.Thread(target=stop_now)
            stopper.append(thread)
            thread.start()

    run = run_client(
        procs,
        layout,
        port_a,
        url,
        4,
        timeout=240,
        on_line=stop_a,
        extra=["--host", f"127.0.0.1:{port_a},127.0.0.1:{port_b}"],
    )
    assert stopper and stopped.wait(30)
    board.stop()
    assert server_b.stop() == 0

    # the line went on: four boards, all provisioned
    assert run.returncode == ExitCode.OK, "\n".join(run.lines)
    assert [r["result"] for r in run.results] == ["ok"] * 4
    serials = [r["serial_number"] for r in run.results]
    assert len(set(serials)) == 4

    # the screen: first server chosen at start, then the switch, said once
    a, b = f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"
    assert f"Connecting to {a}...ok" in run.lines
    assert any(line.startswith(f"    Using server {a} (ready") for line in run.lines)
    switches = [line for line in run.lines if line.endswith(f": using {b}.")]
    assert switches == [f"    Server {a} unreachable (connection refused): using {b}."]
    # the switch came before the second board wrote anything
    i = run.lines.index(switches[0])
    writes = [k for k, line in enumerate(run.lines) if line.startswith("Writing config zone")]
    assert len(writes) == 4 and writes[0] < i < writes[1]

    # no part half-done: every chip is config- and data-locked
    chips = sorted(layout.boards.glob("chip-*.json"))
    assert len(chips) == 4
    assert all(Atecc508a.load(p).config_locked and Atecc508a.load(p).data_locked for p in chips)

    if ledger_url is None:
        # each ledger has what its server signed, installed; together, every device once
        first = installed(layout.data_dir / "ledger.sqlite3")
        second = installed(data_b / "ledger.sqlite3")
        assert list(first) == serials[:1] and sorted(second) == sorted(serials[1:])
        assert set(first.values()) | set(second.values()) == {IssuanceState.INSTALLED}
        return
    # one shared ledger: every device once, installed, whichever server signed it
    with open_ledger(ledger_url, tmp_path, read_only=True) as shared:
        issuances = list(shared.iter_issuances())
    assert sorted(i.device_sn for i in issuances) == sorted(serials)  # one each
    assert {i.state for i in issuances} == {IssuanceState.INSTALLED}


def test_no_server_reachable_names_every_server(layout: DemoLayout, procs: Processes) -> None:
    from tests.support.net import free_port

    ports = [free_port(), free_port()]
    _, url = start_board(procs, layout, chips=1)
    servers = ",".join(f"127.0.0.1:{p}" for p in ports)
    run = run_client(
        procs,
        layout,
        ports[0],
        url,
        1,
        timeout=60,
        extra=["--host", servers, "--connect-retries", "1"],
    )
    assert run.returncode == ExitCode.SERVER_UNREACHABLE
    a, b = (f"127.0.0.1:{p}" for p in ports)
    assert run.lines[1:] == [
        f"Connecting to {a}...failed (connection refused)",
        f"Connecting to {b}...failed (connection refused)",
        "No server reachable, trying again in 1 s...",
        f"Connecting to {a}...failed (connection refused)",
        f"Connecting to {b}...failed (connection refused)",
        f"Cannot reach any provisioning server ({a}: connection refused; {b}: connection"
        " refused). Is provserver running there?",
    ]
