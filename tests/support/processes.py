"""``provserver`` as a real process for the tests, and blocking stations that load it.

:class:`ServerProcess` starts ``python -m provserver.cli`` (pem signer back-end on the test
chain, any extra options such as ``--ledger``), waits for its listening line and its signer,
and stops it with SIGTERM (or kills it); its console goes to a file. :class:`LoadStation` is one
station thread sending requests back to back on one connection and keeping every certificate
it RECEIVED. Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from atcaprov.certinfo import CertInfo
from atcaprov.protocol import CertReply, MessageReader, MessageType, encode
from provserver.profile import write_profile
from tests.support.server import Chain, write_pem_signer
from tests.support.station import request_for

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
SOCKET_TIMEOUT_S = 15.0


def prepare_data_dir(chain: Chain, data: Path, keys: Path) -> Path:
    """A data folder with the chain's signer profile; returns the pem key file."""
    key = write_pem_signer(chain, keys)
    (data / "signers").mkdir(parents=True, exist_ok=True)
    write_profile(data / "signers" / f"{chain.key_id.hex().upper()}.json", chain.profile)
    return key


class ServerProcess:
    """One ``provserver`` process (see the module docstring)."""

    def __init__(self, data: Path, key: Path, console: Path, *extra: str) -> None:
        self.data = data
        self.console = console
        self.args = [
            sys.executable, "-m", "provserver.cli", "--host", "127.0.0.1", "--port", "0",
            "--data-dir", str(data), "--signers", "pem", "--pem-key", str(key),
            "--rescan-interval", "0.5", "--shutdown-grace", "5", *extra,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        with self.console.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )  # fmt: skip
        return self.proc

    def start(self) -> ServerProcess:
        """Spawn and wait until it listens and has its signer; AssertionError otherwise."""
        proc = self.spawn()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.text()
            m = re.search(r"Server listening on 127\.0\.0\.1:(\d+)\.", text)
            if m and " found." in text:
                self.port = int(m.group(1))
                return self
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"server did not start:\n{self.text()}")

    def text(self) -> str:
        return (
            self.console.read_text(encoding="utf-8", errors="replace")
            if self.console.exists()
            else ""
        )

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def wait(self, timeout: float = STOP_TIMEOUT_S) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server did not end within {timeout} s:\n{self.text()}") from None

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed after STOP_TIMEOUT_S)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class LoadStation(threading.Thread):
    """A station sending requests for devices ``first``, ``first+1``... back to back."""

    def __init__(self, port: int, info: CertInfo, first: int, count: int, name: str) -> None:
        super().__init__(daemon=True, name=name)
        self.port, self.info, self.first, self.count = port, info, first, count
        self.received: list[tuple[str, bytes]] = []  # (device SN hex, device cert DER)
        self.refused: list[str] = []
        self.ended_by = ""
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=SOCKET_TIMEOUT_S)
        except OSError as exc:
            self.ended_by = f"connect: {exc!r}"
            return
        reader = MessageReader({MessageType.CERT_REPLY, MessageType.ERROR_REPLY})
        with sock:
            for n in range(self.first, self.first + self.count):
                if self.stop_event.is_set():
                    self.ended_by = "stopped"
                    return
                request = request_for(self.info, n, self.name)
                try:
                    sock.sendall(encode(request))
                    reply = _reply(sock, reader)
                except OSError as exc:  # the server died or dropped us
                    self.ended_by = repr(exc)
                    return
                if isinstance(reply, CertReply):
                    self.received.append(
                        (request.device_serial_number.hex().upper(), reply.device_cert)
                    )
                else:
                    self.refused.append(repr(reply))
        self.ended_by = "request budget used up"


def _reply(sock: socket.socket, reader: MessageReader) -> object:
    while True:
        msg = reader.next_message()
        if msg is not None:
            return msg
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        reader.feed(data)
