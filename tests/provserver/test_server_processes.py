"""``provserver`` processes: one server per data folder, kill -9 on a shared ledger, disk full.

Real processes (``python -m provserver.cli``, pem signer back-end), real stations over
127.0.0.1, bounded in count and time:

* a second server on a data folder in use refuses in one line and exits 2, touching nothing;
  the first goes on serving and stops cleanly;
* two servers on one PostgreSQL ledger under load, ``kill -9`` of one: the other keeps
  serving, every certificate any station received is in the ledger, and the killed server's
  run is recovered (and said so) when its folder is started again;
* a full disk (a small tmpfs; skipped where one cannot be mounted): a refused request leaves
  no record anywhere, signing stops and says why, resumes by itself once space is freed; a
  shutdown and a start-up on the full disk end with one error line each and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from atcaprov.protocol import CertReply, ErrorReply, MessageReader, MessageType, encode
from atcaprov.return_codes import ReturnCode
from provserver.ledger import open_ledger
from provserver.ledger.files import read_marker
from tests.support.cert_files import cert_files, devices_with_files
from tests.support.polling import wait_until
from tests.support.postgres import PostgresServer, postgres_or_skip
from tests.support.processes import LoadStation, ServerProcess, prepare_data_dir
from tests.support.server import make_chain
from tests.support.station import request_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and mounts")

CHAIN = make_chain()
INFO = CHAIN.cert_info
LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, (info|warning|error)\] (.*)$")


def errors(lines: list[str]) -> list[str]:
    return [m.group(2) for m in map(LINE.match, lines) if m and m.group(1) == "error"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in ("ledger.sqlite3-shm", ".provserver.lock")
    }


# ------------------------------------------------------------------ one server per folder
@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_second_server_on_a_folder_in_use_refuses(tmp_path: Path, writer: str) -> None:
    data = tmp_path / "data"
    key = prepare_data_dir(CHAIN, data, tmp_path / "keys")
    first = ServerProcess(data, key, tmp_path / "first.txt", "--commit-writer", writer).start()
    try:
        assert first.proc is not None
        files = {p for p in snapshot(data) if not p.startswith("logs/activity-")}
        second = ServerProcess(data, key, tmp_path / "second.txt", "--commit-writer", writer)
        second.spawn()
        assert second.wait(30) == 2
        (line,) = second.lines()
        assert LINE.match(line) and line.endswith(
            f"] Server cannot run: data folder {data} is in use by provserver pid {first.proc.pid}"
        ), line
        assert {p for p in snapshot(data) if not p.startswith("logs/activity-")} == files
        assert len(list((data / "logs").glob("activity-*.log"))) == 1
        station = LoadStation(first.port, INFO, 1, 3, "line-1")
        station.run()
        assert len(station.received) == 3, station.ended_by
    finally:
        code = first.stop()
    assert code == 0
    assert first.lines()[-1].endswith("] Server stopped."), first.text()
    assert errors(first.lines()) == []
    assert not list((data / "logs").glob(".running-*"))


# ------------------------------------------------------------------ two servers, kill -9
def test_kill_9_of_one_server_on_a_shared_postgresql_ledger(
    tmp_path: Path, postgres_server: PostgresServer | str
) -> None:
    url = postgres_or_skip(postgres_server).new_database()
    key = prepare_data_dir(CHAIN, tmp_path / "a", tmp_path / "keys")
    prepare_data_dir(CHAIN, tmp_path / "b", tmp_path / "keys")
    a = ServerProcess(tmp_path / "a", key, tmp_path / "a.txt", "--ledger", url).start()
    b = ServerProcess(tmp_path / "b", key, tmp_path / "b.txt", "--ledger", url).start()
    on_a = [LoadStation(a.port, INFO, 1 + 2000 * s, 2000, f"a-{s}") for s in range(3)]
    on_b = [LoadStation(b.port, INFO, 20001 + 2000 * s, 2000, f"b-{s}") for s in range(2)]
    try:
        for station in (*on_a, *on_b):
            station.start()
        wait_until(lambda: sum(len(s.received) for s in on_a) >= 60, 20, "load on A")
        assert a.proc is not None
        a.proc.kill()  # SIGKILL, in the middle of the load
        a.proc.wait(15)
        at_kill = sum(len(s.received) for s in on_b)
        wait_until(
            lambda: sum(len(s.received) for s in on_b) >= at_kill + 40,
            30,
            "B serving after the kill",
        )
    finally:
        for station in on_b:
            station.stop_event.set()
        for station in (*on_a, *on_b):
            station.join(30)
        a.kill()
        code_b = b.stop()
    assert not any(s.is_alive() for s in (*on_a, *on_b))
    assert all(s.ended_by not in ("", "request budget used up") for s in on_a)
    assert [s.refused for s in on_b] == [[], []] and code_b == 0
    received = [item for s in (*on_a, *on_b) for item in s.received]
    with open_ledger(url, None, read_only=True) as ledger:
        for sn, der in received:
            issued = [i.device_cert for i in ledger.device_history(sn).issuances]
            assert issued == [der], f"device {sn}: certificate sent, not in the ledger"
        (run_a,) = [r for r in ledger.runs() if r.data_dir == str((tmp_path / "a").resolve())]
        issued_a = sum(1 for _ in ledger.iter_issuances(run_id=run_a.id))
    assert run_a.stopped_at is None  # killed

    # A's folder, started again: its crashed run is recovered from the ledger, and said so
    again = ServerProcess(tmp_path / "a", key, tmp_path / "a2.txt", "--ledger", url).start()
    assert again.stop() == 0
    assert f"Recovered run {run_a.stamp} (the server did not stop cleanly)" in again.text()
    (tsv,) = (tmp_path / "a" / "logs").glob(f"signing-{run_a.stamp}.tsv")
    with tsv.open(newline="", encoding="utf-8") as fh:
        signed = [r for r in csv.DictReader(fh, dialect="excel-tab") if r["result"] == "signed"]
    assert len(signed) == issued_a


# ------------------------------------------------------------------ disk full
@contextlib.contextmanager
def small_disk(folder: Path, size: str = "8m") -> Iterator[Path]:
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a tmpfs can only be mounted as root here")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=20, check=False)


def fill(path: Path) -> None:
    """Take every free byte of the disk of ``path`` (bounded by the disk's size)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for chunk in (1 << 20, 4096, 1):
            data = b"\0" * chunk
            for _ in range(100_000):
                try:
                    os.write(fd, data)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)


class Line:
    """One blocking station connection (reconnects when the server closed it)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None

    def request(self, n: int) -> object:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=15)
        reader = MessageReader({MessageType.CERT_REPLY, MessageType.ERROR_REPLY})
        self.sock.sendall(encode(request_for(INFO, n, "line-1")))
        while (msg := reader.next_message()) is None:
            data = self.sock.recv(65536)
            assert data, "server closed the connection"
            reader.feed(data)
        return msg

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def serial(n: int) -> str:
    return request_for(INFO, n).device_serial_number.hex().upper()


def checkpointed(logs: Path) -> bool:
    """Whether the open run's crash marker names a synced issuance (a checkpoint ran)."""
    markers = [read_marker(path) for path in logs.glob(".running-*")]
    return any(marker is not None and marker.synced_issuance > 0 for marker in markers)


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_disk_full(tmp_path: Path, writer: str) -> None:
    with small_disk(tmp_path / "disk") as disk:
        data = disk / "data"
        key = prepare_data_dir(CHAIN, data, tmp_path / "keys")
        filler = disk / "filler"
        server = ServerProcess(
            data, key, tmp_path / "console.txt", "--commit-writer", writer
        ).start()
        line = Line(server.port)
        try:
            assert isinstance(line.request(1), CertReply)
            # its certs/ copies are written right after the reply, and the idle checkpoint
            # (1 s later) syncs them and rewrites the crash marker: let all of it land first,
            # so that the next write to meet the full disk is the ledger's
            wait_until(lambda: len(cert_files(data / "certs", serial(1))) == 2, 10, "files")
            wait_until(lambda: checkpointed(data / "logs"), 10, "checkpoint")
            fill(filler)
            refused = line.request(2)  # the ledger cannot write: refused, nothing kept
            assert isinstance(refused, ErrorReply) and refused.code is ReturnCode.SERVER_ERROR
            assert "could not record it, so it is not sent" in refused.message, refused.message
            not_signed = line.request(3)  # the store failed: nothing is even signed
            assert isinstance(not_signed, ErrorReply)
            assert "signs nothing" in not_signed.message
            text = server.text()
            assert re.search(
                r"error\] Records cannot be written: SQLite ledger .*"
                r"Signing stopped; it resumes by itself",
                text,
            ), text
            filler.unlink()
            wait_until(lambda: "Records can be written again" in server.text(), 20, "resume")
            assert "signing resumed." in server.text()
            assert isinstance(line.request(4), CertReply)
            wait_until(lambda: len(cert_files(data / "certs", serial(4))) == 2, 10, "files")
            fill(filler)
        finally:
            line.close()
            code = server.stop()
        stop_lines = server.lines()[
            server.lines().index(next(x for x in server.lines() if "SIGTERM received" in x)) :
        ]
        assert code == 1, server.text()
        assert (
            len(errors(stop_lines)) == 1 and "Server did not stop cleanly" in errors(stop_lines)[0]
        ), stop_lines
        assert stop_lines[-1].endswith("] Server stopped.")
        assert "Traceback" not in server.text()

        # start-up on the full disk: one error line, a non-zero exit, nothing touched
        before = snapshot(data)
        full = ServerProcess(data, key, tmp_path / "full.txt")
        full.spawn()
        assert full.wait(30) == 1
        (only,) = full.lines()
        assert "Server cannot run: data folder" in only and "free some space" in only, only
        assert snapshot(data) == before

        # space freed: the next start recovers the run that could not close, and serves
        filler.unlink()
        again = ServerProcess(data, key, tmp_path / "again.txt").start()
        again_line = Line(again.port)
        try:
            assert isinstance(again_line.request(5), CertReply)
        finally:
            again_line.close()
            assert again.stop() == 0
        assert "Recovered run " in again.text() and errors(again.lines()) == []

        # no record of the refused requests anywhere; the others everywhere
        with open_ledger(None, data, read_only=True) as ledger:
            for n in (2, 3):
                history = ledger.device_history(serial(n))
                assert history.issuances == [] and history.events == [], n
            for n in (1, 4, 5):
                assert len(ledger.device_history(serial(n)).issuances) == 1, n
        logged: list[str] = []
        for tsv in sorted((data / "logs").glob("signing-*.tsv")):
            with tsv.open(newline="", encoding="utf-8") as fh:
                logged += [r["device_sn"] for r in csv.DictReader(fh, dialect="excel-tab")]
        assert sorted(logged) == sorted(serial(n) for n in (1, 4, 5))
        assert devices_with_files(data / "certs") == {serial(n) for n in (1, 4, 5)}


# ------------------------------------------------------------------ the commit writer process
def child_pids(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(x) for x in (task / "children").read_text().split()]
    return found


def test_commit_writer_process_killed_stops_signing_and_says_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = prepare_data_dir(CHAIN, data, tmp_path / "keys")
    server = ServerProcess(data, key, tmp_path / "console.txt", "--commit-writer", "process")
    server.start()
    line = Line(server.port)
    try:
        assert isinstance(line.request(1), CertReply)
        assert server.proc is not None
        (writer,) = child_pids(server.proc.pid)
        os.kill(writer, signal.SIGKILL)
        wait_until(
            lambda: "commit writer process ended unexpectedly" in server.text(),
            20,
            "the console line on the writer's end",
        )
        refused = line.request(2)  # nothing signed, nothing recorded: restart needed
        assert isinstance(refused, ErrorReply) and refused.code is ReturnCode.SERVER_ERROR
        assert "restart the server" in refused.message, refused.message
    finally:
        line.close()
        code = server.stop()
    assert code != 0 and "Traceback" not in server.text(), server.text()
    with open_ledger(None, data, read_only=True) as ledger:
        assert [i.device_sn for i in ledger.iter_issuances()] == [serial(1)]
        assert ledger.device_history(serial(2)).issuances == []
    # the next start recovers the run the killed writer left open, and serves
    again = ServerProcess(data, key, tmp_path / "again.txt", "--commit-writer", "process").start()
    again_line = Line(again.port)
    try:
        assert isinstance(again_line.request(3), CertReply)
    finally:
        again_line.close()
    assert again.stop() == 0
    assert "(the server did not stop cleanly)" in again.text(), again.text()


def test_kill_9_of_a_server_with_a_commit_writer_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = prepare_data_dir(CHAIN, data, tmp_path / "keys")
    server = ServerProcess(data, key, tmp_path / "console.txt", "--commit-writer", "process")
    server.start()
    stations = [LoadStation(server.port, INFO, 1 + 1000 * s, 1000, f"s-{s}") for s in range(3)]
    try:
        for station in stations:
            station.start()
        wait_until(lambda: sum(len(s.received) for s in stations) >= 60, 20, "load")
        assert server.proc is not None
        (writer,) = child_pids(server.proc.pid)
        server.proc.kill()
        server.proc.wait(15)
        # the writer sees its link end and goes at once, leaving the folder free
        wait_until(lambda: not Path(f"/proc/{writer}").exists(), 15, "writer gone")
    finally:
        for station in stations:
            station.join(30)
        server.kill()
    received = [item for s in stations for item in s.received]
    with open_ledger(None, data, read_only=True) as ledger:
        for sn, der in received:
            issued = [i.device_cert for i in ledger.device_history(sn).issuances]
            assert issued == [der], f"device {sn}: certificate sent, not in the ledger"
    again = ServerProcess(data, key, tmp_path / "again.txt", "--commit-writer", "process").start()
    assert again.stop() == 0
    assert "(the server did not stop cleanly)" in again.text(), again.text()
    assert len(devices_with_files(data / "certs")) >= len(received)


@pytest.mark.parametrize(("option", "children"), [((), 1), (("--commit-writer", "thread"), 0)])
def test_the_default_commit_writer_is_a_process_on_posix(
    tmp_path: Path, option: tuple[str, ...], children: int
) -> None:
    """`--commit-writer auto` (the default) starts the child on POSIX; `thread` starts none."""
    data = tmp_path / "data"
    key = prepare_data_dir(CHAIN, data, tmp_path / "keys")
    server = ServerProcess(data, key, tmp_path / "console.txt", *option).start()
    line = Line(server.port)
    try:
        assert isinstance(line.request(1), CertReply)
        assert server.proc is not None
        kids = child_pids(server.proc.pid)
        assert len(kids) == children, kids
        for kid in kids:
            cmdline = Path(f"/proc/{kid}/cmdline").read_bytes()
            assert b"provserver.ledger.writer_process" in cmdline, cmdline
    finally:
        line.close()
    assert server.stop() == 0, server.text()
