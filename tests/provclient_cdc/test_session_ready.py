"""The station and readiness, in-process (virtual board, threaded certificate server): asked at
start and before each board's first write; a "no" is shown, and the chip stays as it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from atcaprov.emulator.kit_board import VirtualKitBoard
from atcaprov.protocol import ReadyReply
from atcaprov.return_codes import ReturnCode
from provclient_cdc.session import ExitCode
from tests.provclient_cdc.test_session import make_station
from tests.support.cert_server import CertServer
from tests.support.client import CapturingOutput, ScriptedKeys
from tests.support.pki import Pki

UNTOUCHED = "    Part state: untouched (config zone unlocked; can be provisioned again)"


@pytest.fixture
def server(pki: Pki) -> Iterator[CertServer]:
    srv = CertServer(pki)
    yield srv
    srv.close()


def test_not_ready_at_start_and_at_the_board(tmp_path: Path, pki: Pki, server: CertServer) -> None:
    reason = "signer 47DC is locked (enter its password at the server)"
    server.ready_answer = ReadyReply(ReturnCode.SIGNER_LOCKED, reason)
    with VirtualKitBoard(tmp_path / "chips", chips=1) as board:
        out = CapturingOutput(json_lines=True)
        station = make_station(
            tmp_path, pki, server.port, board.url, ScriptedKeys(), out, yes=True, count=1
        )
        assert station.run() == ExitCode.BOARD_FAILED
        chip = board.chips[0].chip
        assert not chip.config_locked  # nothing irreversible happened
    lines = out.lines()
    assert lines[1:4] == [
        f"Connecting to 127.0.0.1:{server.port}...ok",
        f"    Server not ready: {reason}",
        "Press ESC to quit.",
    ]
    i = lines.index(f"    Server not ready: {reason}", 3)
    assert lines[i + 1] == UNTOUCHED
    assert lines[i + 2] == "Provisioning failed! Please remove board..."
    assert not any(line.startswith(("Writing", "Locking")) for line in lines)
    result = json.loads(out.json_text.getvalue())
    assert result["result"] == "failed" and result["stage"] is None
    assert result["error_code"] == "SIGNER_LOCKED" and result["error_message"] == reason
    assert result["part_state"] == "UNLOCKED"
    assert len(server.ready_requests) == 2 and server.requests == []


def test_server_down_at_the_board_is_comm_error_and_writes_nothing(
    tmp_path: Path, pki: Pki, server: CertServer
) -> None:
    with VirtualKitBoard(tmp_path / "chips", chips=1) as board:
        out = CapturingOutput(json_lines=True)
        keys = ScriptedKeys()

        def server_stopped_at_enter() -> bool:
            if "    Press ENTER to provision..." not in out.lines():
                return False
            server.close()  # the server stops while the station waits at ENTER
            return True

        keys.add("ENTER", when=server_stopped_at_enter)
        station = make_station(
            tmp_path,
            pki,
            server.port,
            board.url,
            keys,
            out,
            count=1,
            connect_retries=1,
            retry_interval=0.1,
        )
        assert station.run() == ExitCode.BOARD_FAILED
        assert not board.chips[0].chip.config_locked
    lines = out.lines()
    refused = f"Reconnecting to 127.0.0.1:{server.port}...failed (connection refused)"
    assert f"{refused}, retrying in 0.1 s" in lines and refused in lines
    i = lines.index(
        f"    Server not ready: cannot connect to 127.0.0.1:{server.port}: connection refused"
    )
    assert lines[i + 1] == UNTOUCHED
    assert not any(line.startswith(("Writing", "Locking")) for line in lines)
    result = json.loads(out.json_text.getvalue())
    assert result["error_code"] == "COMM_ERROR" and result["error_code_value"] == 3
    assert result["part_state"] == "UNLOCKED"


def test_version_1_server_stops_the_station_at_start(
    tmp_path: Path, pki: Pki, server: CertServer
) -> None:
    server.versions = frozenset({1})
    out = CapturingOutput()
    station = make_station(
        tmp_path, pki, server.port, "socket://127.0.0.1:1", ScriptedKeys(), out, yes=True, count=1
    )
    assert station.run() == ExitCode.SERVER_UNREACHABLE
    assert out.lines()[-1].startswith(
        f"Cannot use the provisioning server at 127.0.0.1:{server.port}: the server speaks an"
        " older protocol (version 1) and cannot say whether it is ready; update provserver"
    )
