"""Crash durability: `provserver` killed with SIGKILL in the middle of a load.

The server runs as a subprocess (sim back-end, the SQLite ledger), with each commit writer
(threads, or the child process). Station threads send requests back to back and keep every
certificate they RECEIVED. After ``kill -9``:

(i)  every received certificate is in the ledger, byte for byte (a certificate never leaves
     before its ledger entry is durable);
(ii) reopening the records (what the next server start does) recovers the crashed run from
     the ledger, after a torn signing log and lost certificate files: one row per issuance,
     every certificate file back, the crash marker gone.

Bounded: a few stations, each at most ``MAX_PER_STATION`` requests, the kill after at most
``KILL_AFTER_S`` seconds, every socket read with a timeout.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from atcaprov.certinfo import CertInfo
from atcaprov.protocol import CertReply, MessageReader, MessageType, encode
from provserver.folder_lock import DataFolderInUseError, DataFolderLock
from provserver.ledger.sqlite import SqliteLedger
from provserver.ledger.store import LedgerRecordStore
from tests.support.cert_files import cert_files
from tests.support.polling import wait_until
from tests.support.sim_signer import make_sim_signer, serial_hex
from tests.support.station import request_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

STATIONS = 4
MAX_PER_STATION = 400
KILL_AFTER_RECEIVED = 120  # certificates received before the kill...
KILL_AFTER_S = 10.0  # ...or this long after the load started, whichever comes first
SOCKET_TIMEOUT = 15.0


def start_server(
    modules: Path, data: Path, console: Path, writer: str
) -> tuple[subprocess.Popen[bytes], int]:
    """`python -m provserver.cli` on a free port; returns the process and its port."""
    out = console.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "provserver.cli", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(data), "--signers", "sim", "--modules", str(modules),
         "--rescan-interval", "1", "--commit-writer", writer],
        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    out.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = console.read_text(encoding="utf-8", errors="replace")
        m = re.search(r"Server listening on 127\.0\.0\.1:(\d+)\.", text)
        if m and " found." in text:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    raise AssertionError(f"server did not start:\n{console.read_text(errors='replace')}")


class StationThread(threading.Thread):
    """One station on a blocking socket; keeps (device SN hex, device cert DER) it received."""

    def __init__(self, number: int, port: int, info: CertInfo) -> None:
        super().__init__(daemon=True, name=f"station-{number}")
        self.number, self.port, self.info = number, port, info
        self.received: list[tuple[str, bytes]] = []
        self.unexpected: list[str] = []
        self.ended_by = ""

    def run(self) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=SOCKET_TIMEOUT)
        except OSError as exc:
            self.ended_by = f"connect: {exc!r}"
            return
        reader = MessageReader({MessageType.CERT_REPLY, MessageType.ERROR_REPLY})
        with sock:
            for i in range(MAX_PER_STATION):
                n = 1 + self.number * MAX_PER_STATION + i
                request = request_for(self.info, n, f"crash-{self.number}")
                try:
                    sock.sendall(encode(request))
                    reply = self._reply(sock, reader)
                except (OSError, ConnectionError) as exc:  # the server died
                    self.ended_by = repr(exc)
                    return
                if not isinstance(reply, CertReply):
                    self.unexpected.append(repr(reply))
                    return
                self.received.append(
                    (request.device_serial_number.hex().upper(), reply.device_cert)
                )
        self.ended_by = "request budget used up"

    @staticmethod
    def _reply(sock: socket.socket, reader: MessageReader) -> object:
        while True:
            msg = reader.next_message()
            if msg is not None:
                return msg
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            reader.feed(data)


def read_signing_logs(data: Path, stamp: str) -> list[dict[str, str]]:
    with open(data / "logs" / f"signing-{stamp}.tsv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, dialect="excel-tab"))


def pem_of(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_kill_9_mid_load_loses_no_sent_certificate(tmp_path: Path, writer: str) -> None:
    signer = make_sim_signer(tmp_path)
    data = signer.data
    proc, port = start_server(signer.modules, data, tmp_path / "console.txt", writer)
    stations = [StationThread(s, port, signer.info) for s in range(STATIONS)]
    try:
        for station in stations:
            station.start()
        deadline = time.monotonic() + KILL_AFTER_S
        while time.monotonic() < deadline:
            if sum(len(s.received) for s in stations) >= KILL_AFTER_RECEIVED:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: the stations are still sending
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    for station in stations:
        station.join(SOCKET_TIMEOUT + 5)
        assert not station.is_alive()
    assert proc.returncode == -signal.SIGKILL
    # The commit writer child (the default on POSIX) ends when it sees the server's socket
    # close, and holds the data folder until then: look at the folder once it is free, as
    # the next server start does (it refuses while the folder is in use).
    folder = DataFolderLock(data)

    def acquired() -> bool:
        try:
            folder.acquire()
        except DataFolderInUseError:
            return False
        return True

    wait_until(acquired, 15, "the data folder to be let go after the kill")
    try:
        check_the_crashed_run(data, stations)
    finally:
        folder.release()


def check_the_crashed_run(data: Path, stations: list[StationThread]) -> None:
    assert [s.unexpected for s in stations] == [[]] * STATIONS
    received = [item for s in stations for item in s.received]
    assert len(received) >= 1, [s.ended_by for s in stations]
    assert all(s.ended_by != "request budget used up" for s in stations), "not killed mid-load"

    # The run did not close: its crash marker is still there.
    (marker,) = (data / "logs").glob(".running-*")
    stamp = marker.name.removeprefix(".running-")

    # (i) every certificate a station received is in the ledger, byte for byte
    ledger = SqliteLedger(data / "ledger.sqlite3", read_only=True)
    with ledger:
        for sn, der in received:
            history = ledger.device_history(sn)
            assert [i.device_cert for i in history.issuances] == [der], (
                f"device {sn}: certificate sent, not in the ledger"
            )
        in_ledger = sum(1 for _ in ledger.iter_issuances())
    assert in_ledger >= len(received)  # recorded but not delivered may add issuances

    # A power cut after the kill could also lose files that were written but not yet synced:
    # remove a few, and cut the signing log, so the recovery has work to do whatever the timing.
    for sn, _der in received[:3]:
        for path in cert_files(data / "certs", sn):
            path.unlink()
    tsv = data / "logs" / f"signing-{stamp}.tsv"
    lines = tsv.read_bytes().split(b"\n")
    tsv.write_bytes(b"\n".join(lines[: max(2, len(lines) // 2)]) + b"\n12345\tcut")

    # (ii) reopen the records (as the next server start does): the crashed run recovers.
    store = LedgerRecordStore(SqliteLedger(data / "ledger.sqlite3"), data)

    async def reopen() -> None:
        await store.open()
        await store.close()

    asyncio.run(asyncio.wait_for(reopen(), 60))
    assert [run.stamp for run in store.recovered] == [stamp]
    assert store.recovered[0].cut and store.recovered[0].rows > 0
    assert store.recovered[0].files >= 6
    assert not list((data / "logs").glob(".running-*"))
    rows = [r for r in read_signing_logs(data, stamp) if r["result"] == "signed"]
    assert len(rows) == in_ledger  # one row per issuance, none twice
    signed = {(r["device_sn"], r["cert_sn"]) for r in rows}
    for sn, der in received:
        cert = x509.load_der_x509_certificate(der)
        assert (sn, serial_hex(cert)) in signed, f"device {sn}: row not recovered"
        files = [p.read_bytes() for p in cert_files(data / "certs", sn, "device")]
        assert pem_of(der) in files, f"device {sn}: certificate file not recovered"
    assert not list((data / "certs").glob("*/.*.tmp"))
