"""End to end: a certificate reply lost after the server signed is asked again, same server.

A small TCP relay sits between ``provclient-cdc`` and a real ``provserver``. For the first
certificate request it forwards the request, lets the server sign and commit it, then drops the
reply and closes the station's connection, as a network cut would. The station must not give
up the part nor go to another server: it reconnects to the same server and sends the same
request (same serial number, same public key), and the ledger answers with the certificate it
already issued (``reissued``): one issuance for the device, installed, the chip data-locked.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from atcaprov.emulator.chip import Atecc508a
from atcaprov.protocol import HEADER_SIZE, MessageType
from atcaprov_demo import (
    DemoLayout,
    Processes,
    create_signer,
    run_client,
    start_board,
    start_server,
)
from provclient_cdc.session import ExitCode
from provserver.ledger import EventKind, IssuanceState
from provserver.ledger.sqlite import SqliteLedger
from tests.support.net import LoopbackListener

pytestmark = pytest.mark.slow


class DroppingRelay(LoopbackListener):
    """127.0.0.1:port -> upstream; the reply to the first CertRequest is dropped (once)."""

    def __init__(self, upstream: int) -> None:
        super().__init__(poll_s=0.2)
        self.upstream = upstream
        self.dropped = threading.Event()
        self._arm = threading.Event()  # the first CertRequest went up: drop what comes back
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []  # socket errors seen (closing sides), kept for a failure
        self.start()

    def close(self) -> None:
        super().close()
        for t in self._threads:
            t.join(5)

    def accepted(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
        for target in (self._up, self._down):
            t = threading.Thread(target=target, args=(client, upstream), daemon=True)
            t.start()
            self._threads.append(t)

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        buf = b""
        try:
            while chunk := client.recv(65536):
                buf += chunk
                while len(buf) >= HEADER_SIZE:
                    msg_type = buf[5]
                    size = HEADER_SIZE + struct.unpack(">I", buf[8:12])[0]
                    if len(buf) < size:
                        break
                    upstream.sendall(buf[:size])
                    buf = buf[size:]
                    is_request = msg_type in (MessageType.CERT_REQUEST, MessageType.CERT_REQUEST2)
                    if is_request and not self.dropped.is_set():
                        self._arm.set()
        except OSError as exc:  # the station or the server closed: the relay of it ends
            self.errors.append(str(exc))
        finally:
            _close(upstream)

    def _down(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while chunk := upstream.recv(65536):
                if self._arm.is_set() and not self.dropped.is_set():
                    self.dropped.set()  # the server signed and answered: the answer is lost
                    break
                client.sendall(chunk)
        except OSError as exc:
            self.errors.append(str(exc))
        finally:
            _close(client)
            _close(upstream)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def procs() -> Iterator[Processes]:
    with Processes() as group:
        yield group


def test_lost_reply_is_asked_again_of_the_same_server(tmp_path: Path, procs: Processes) -> None:
    layout = DemoLayout.new(tmp_path)
    create_signer(layout)
    server, port = start_server(procs, layout)
    relay = DroppingRelay(port)
    try:
        board, url = start_board(procs, layout, chips=1)
        run = run_client(procs, layout, relay.port, url, 1, timeout=120)
        board.stop()
    finally:
        relay.close()
    assert server.stop() == 0
    assert relay.dropped.is_set()

    assert run.returncode == ExitCode.OK, "\n".join(run.lines)
    [result] = run.results
    assert result["result"] == "ok"
    sn = result["serial_number"]
    address = f"127.0.0.1:{relay.port}"
    lost = [line for line in run.lines if line.startswith("    Reply lost (")]
    assert lost == [
        f"    Reply lost (the server at {address} closed the connection): sending"
        f" the same request again to {address} (same key: the same"
        " certificate)."
    ]
    assert Atecc508a.load(layout.boards / "chip-000.json").data_locked

    # the server signed once; the second request got the same certificate back
    with SqliteLedger(layout.data_dir / "ledger.sqlite3", read_only=True) as ledger:
        history = ledger.device_history(sn)
    assert len(history.issuances) == 1
    assert history.issuances[0].state is IssuanceState.INSTALLED
    kinds = [e.kind for e in history.events]
    assert kinds.count(EventKind.SIGNED) == 1 and kinds.count(EventKind.REISSUED) == 1
