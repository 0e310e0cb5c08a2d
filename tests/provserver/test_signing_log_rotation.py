"""The signing log rotates within a run (per local day, and past --log-max-size) and a crash
at any moment, a rotation included, is recovered to exactly the ledger's rows, once each.

Real record stores over a real SQLite ledger; clocks are injected where the day matters; the
crash points are hit inside the store's files thread and the store is then dropped unclosed
(what ``kill -9`` leaves), and one test kills a real process with SIGKILL between rounds.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from atcaprov.protocol import CertReply
from provserver.cli import Settings, main, run
from provserver.console import Console
from provserver.ledger import RecordFilter
from provserver.ledger.files import Marker, RunFiles, read_marker
from provserver.ledger.model import TSV_EVENT_KINDS
from provserver.ledger.sqlite import SqliteLedger
from provserver.ledger.store import LedgerRecordStore
from provserver.profile import write_profile
from provserver.records import SigningRecord
from provserver.records_file import tsv_rows
from provserver.retention import prune_logs
from provserver.server import ProvisioningServer
from tests.provserver.test_ledger_store import op
from tests.support.server import make_chain, make_request, write_pem_signer
from tests.support.station import Station

HEADER = tsv_rows([], header=True)
ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0


def store(data: Path, **kw: Any) -> LedgerRecordStore:
    """The store under test; a files failure is not retried (the tests crash it first)."""
    return LedgerRecordStore(SqliteLedger(data / "ledger.sqlite3"), data, retry_interval=3600, **kw)


def row_size() -> int:
    """Bytes of the signing-log row of ``op(n)`` (the same for every n of these tests)."""
    o = op(1)
    record = SigningRecord(
        time=o.time, station=o.station, device_sn=o.device_sn, signer=o.signer,
        cert_sn=o.cert_sn, public_key=o.public_key, result="signed",
    )  # fmt: skip
    return len(tsv_rows([record]))


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _order(path: Path) -> tuple[str, int]:
    """signing-<base>[-N].tsv in the order they were made (N after the plain name)."""
    m = re.fullmatch(r"signing-(\d{8}-\d{6})(?:-(\d+))?\.tsv", path.name)
    assert m is not None, path.name
    return m.group(1), int(m.group(2) or 0)


def signing_logs(data: Path) -> list[Path]:
    return sorted((data / "logs").glob("signing-*.tsv"), key=_order)


def bodies(paths: list[Path]) -> bytes:
    """The rows of these files, in order; each file must start with the whole header."""
    out = b""
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(HEADER), f"{path.name} has no header"
        out += data[len(HEADER) :]
    return out


def ledger_rows(data: Path, run_id: int | None = None) -> bytes:
    """The signing-log rows the ledger has (of one run, or of all), as the files hold them."""
    with SqliteLedger(data / "ledger.sqlite3", read_only=True) as ledger:
        events = ledger.iter_events(RecordFilter(kinds=TSV_EVENT_KINDS), run_id=run_id)
        return tsv_rows([event.tsv_record() for event in events])


async def rows_written(s: LedgerRecordStore, n: int) -> None:
    """Wait (bounded) until the files thread has written the rows of events up to id ``n``."""
    for _ in range(400):
        if s.files is not None and s.files.last_event >= n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"rows up to event {n} not written")


def crash(s: LedgerRecordStore) -> None:
    """What kill -9 leaves: nothing closed, the marker stays (the threads are just idle)."""
    assert s.files is not None
    s.files.close()
    s.ledger.close()


async def test_the_signing_log_rotates_at_local_midnight(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 11, 21, 23, 59, 58))
    started = datetime(2026, 11, 21, 22, 59, 58, tzinfo=timezone.utc)
    s = store(tmp_path, now=clock, started=started)
    await s.open()
    await s.issue(op(1))
    await s.issue(op(2))
    await rows_written(s, 2)
    clock.now += timedelta(seconds=3)  # 00:00:01 the next (local) day
    await s.issue(op(3))
    await rows_written(s, 3)
    clock.now += timedelta(hours=5)  # same day: same file
    await s.issue(op(4))
    await s.close()
    first, second = signing_logs(tmp_path)
    assert first.name == "signing-20261121-225958.tsv"
    rotated = (datetime(2026, 11, 22, 0, 0, 1)).astimezone(timezone.utc)
    assert second.name == f"signing-{rotated:%Y%m%d-%H%M%S}.tsv"
    assert bodies([first]) == tsv_rows(records(tmp_path)[:2])
    assert bodies([second]) == tsv_rows(records(tmp_path)[2:])
    assert not list((tmp_path / "logs").glob(".running-*"))


def records(data: Path) -> list[SigningRecord]:
    with SqliteLedger(data / "ledger.sqlite3", read_only=True) as ledger:
        return [e.tsv_record() for e in ledger.iter_events(RecordFilter(kinds=TSV_EVENT_KINDS))]


async def test_the_signing_log_rotates_by_size_between_whole_rows(tmp_path: Path) -> None:
    row = row_size()
    limit = len(HEADER) + 3 * row + row // 2  # three rows fit, the fourth does not
    s = store(tmp_path, log_max_bytes=limit)
    await s.open()
    # batches of several rows: the rotation falls inside a batch too
    await asyncio.wait_for(asyncio.gather(*(s.issue(op(n)) for n in range(1000, 1040))), 30)
    for n in range(1040, 1046):
        await s.issue(op(n))
    await s.close()
    paths = signing_logs(tmp_path)
    assert len(paths) == 16  # 46 rows, three per file
    for path in paths:
        assert path.stat().st_size <= limit
        assert path.read_bytes().count(b"\r\n") == (4 if path != paths[-1] else 2)
    assert bodies(paths) == ledger_rows(tmp_path)  # every row once, in order, none cut


async def test_a_row_larger_than_the_limit_gets_a_file_of_its_own(tmp_path: Path) -> None:
    s = store(tmp_path, log_max_bytes=len(HEADER) + 10)
    await s.open()
    await asyncio.gather(*(s.issue(op(n)) for n in range(1, 6)))
    await s.close()
    paths = signing_logs(tmp_path)
    assert len(paths) == 5
    assert [p.read_bytes().count(b"\r\n") for p in paths] == [2] * 5  # header + one whole row
    assert bodies(paths) == ledger_rows(tmp_path)


async def test_the_server_rotates_its_signing_log_with_log_max_size(tmp_path: Path) -> None:
    chain = make_chain()
    data = tmp_path / "data"
    key = write_pem_signer(chain, tmp_path / "keys")
    (data / "signers").mkdir(parents=True)
    write_profile(data / "signers" / f"{chain.key_id.hex().upper()}.json", chain.profile)
    limit = 1200  # a few rows per signing log file (and a few lines per activity log)
    settings = Settings(
        host="127.0.0.1", port=0, data_dir=data, signers=["pem"], pem_key=key,
        rescan_interval=0.2, log_max_bytes=limit,
    )  # fmt: skip
    out = io.StringIO()
    stop = asyncio.Event()
    ready: asyncio.Future[ProvisioningServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run(settings, console=Console(out), stop=stop, on_ready=ready.set_result)
    )
    try:
        server = await asyncio.wait_for(ready, 30)
        station = await Station.connect(server.port)
        for n in range(1, 13):
            assert isinstance(await station.request(make_request(chain, n)), CertReply)
        await station.close()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    paths = signing_logs(data)
    assert len(paths) >= 3, out.getvalue()
    assert all(p.stat().st_size <= limit for p in paths)
    assert bodies(paths) == ledger_rows(data) and ledger_rows(data).count(b"\r\n") == 12
    assert len(list((data / "logs").glob("activity-*.log"))) >= 2


def test_log_max_size_governs_both_logs() -> None:
    result = CliRunner().invoke(main, ["--help"])
    text = " ".join(result.stdout.split())
    assert "Start a new activity log and a new signing log when the current one would pass" in (
        text
    )


def test_the_marker_names_the_file_being_written() -> None:
    plain = Marker("ab", 3, 7, 9)
    assert Marker.parse(plain.to_bytes()) == plain
    assert plain.to_bytes() == b"atcaprov-run ledger=ab run=3 event=7 issuance=9\n"
    rotated = Marker("ab", 3, 7, 9, "signing-20261122-000001-2.tsv", 41)
    assert Marker.parse(rotated.to_bytes()) == rotated
    assert rotated.signing_log("20261121-080000") == "signing-20261122-000001-2.tsv"
    assert plain.signing_log("20261121-080000") == "signing-20261121-080000.tsv"
    assert Marker.parse(b"atcaprov-run ledger=ab run=3 event=7 issuance=9 tsv=../x after=1\n") is (
        None
    )


class Crash(Exception):
    """Raised in the files thread where the test "kills" the server."""


def _crash_point(files: RunFiles, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next rotation of ``files`` stop at ``where`` (Crash raised there)."""
    first_write = files._write
    first_create = files.create
    first_marker = files.write_marker
    rotating = {"on": False}

    def write_marker(marker: Marker) -> None:
        if where == "before the marker":
            raise Crash(where)
        first_marker(marker)

    def create() -> None:
        if where == "before the new file":
            raise Crash(where)
        first_create()

    def write(data: bytes, rows: int, last_event: int) -> None:
        if files.rows == 0 and rotating["on"]:
            if where == "before the first row":
                raise Crash(where)
            if where == "inside the first row":
                os.write(files._fd or -1, data[: len(data) // 2])
                raise Crash(where)
        first_write(data, rows, last_event)

    def rotate(moment: datetime | None) -> None:
        rotating["on"] = True
        monkeypatch.setattr(files, "write_marker", write_marker)
        monkeypatch.setattr(files, "create", create)
        real_rotate(moment)

    real_rotate = files._rotate
    monkeypatch.setattr(files, "_rotate", rotate)
    monkeypatch.setattr(files, "_write", write)


@pytest.mark.parametrize(
    "where",
    ["before the marker", "before the new file", "before the first row", "inside the first row"],
)
async def test_a_crash_at_a_rotation_is_recovered_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    limit = len(HEADER) + 2 * row_size() + 5  # two rows per file
    s = store(tmp_path, log_max_bytes=limit, checkpoint_after=None)
    await s.open()
    for n in range(1, 6):  # three files, the third with one row
        await s.issue(op(n))
        await rows_written(s, n)
    assert len(signing_logs(tmp_path)) == 3 and s.files is not None
    _crash_point(s.files, where, monkeypatch)
    await s.issue(op(6))  # committed; its row starts the next file, which is where it stops
    await s.issue(op(7))  # the row rotating: the crash
    for _ in range(400):
        if s.failure is not None:
            break
        await asyncio.sleep(0.005)
    assert s.failure is not None and where in s.failure
    # committed after the crash point, never written to the files (the files thread stopped)
    s.ledger.commit([op(8), op(9)], run_id=s.run_id)
    stamp, run_id = s.stamp, s.run_id
    crash(s)
    marker = read_marker(tmp_path / "logs" / f".running-{stamp}")
    assert marker is not None
    if where == "before the marker":
        assert marker.tsv == signing_logs(tmp_path)[-1].name  # still the third file
    else:
        assert marker.tsv_after == 6  # the rows up to event 6 are in the files before

    again = store(tmp_path)
    await again.open()
    await again.close()
    (recovered,) = again.recovered
    assert recovered.stamp == stamp and recovered.rows == 3
    assert recovered.cut is (where == "inside the first row")
    paths = signing_logs(tmp_path)
    run_paths = [p for p in paths if p.name != f"signing-{again.stamp}.tsv"]
    assert len(run_paths) == (3 if where == "before the marker" else 4)
    assert bodies(run_paths) == ledger_rows(tmp_path, run_id)  # each row once, in order
    assert ledger_rows(tmp_path, run_id).count(b"\r\n") == 9
    assert not (tmp_path / "logs" / f".running-{stamp}").exists()


async def test_pruning_keeps_the_file_a_run_writes_and_recovery_needs_no_closed_file(
    tmp_path: Path,
) -> None:
    limit = len(HEADER) + 2 * row_size() + 5
    s = store(tmp_path, log_max_bytes=limit, checkpoint_after=None)
    await s.open()
    for n in range(1, 8):  # four files: 2 + 2 + 2 + 1 rows
        await s.issue(op(n))
        await rows_written(s, n)
    stamp, run_id = s.stamp, s.run_id
    paths = signing_logs(tmp_path)
    assert len(paths) == 4 and s.tsv_path == paths[-1]
    now = time.time()
    for path in paths:
        os.utime(path, (now - 40 * DAY, now - 40 * DAY))
    # The open run: its closed files go with age, the file it writes stays.
    assert set(prune_logs(tmp_path / "logs", 30, now=now)) == set(paths[:3])
    assert paths[3].exists()
    crash(s)
    # Crashed: the file the recovery appends to stays too.
    assert prune_logs(tmp_path / "logs", 30, now=now) == []
    assert paths[3].exists()
    with SqliteLedger(tmp_path / "ledger.sqlite3") as ledger:
        ledger.commit([op(8), op(9)], run_id=run_id)  # never written to the files
    again = store(tmp_path)
    await again.open()
    await again.close()
    assert [(r.stamp, r.rows) for r in again.recovered] == [(stamp, 2)]
    # The last file holds exactly the run's rows after the removed files' ones.
    expected = tsv_rows(records(tmp_path)[6:9])
    assert bodies([paths[3]]) == expected


SCRIPT = """
import asyncio, sys
from pathlib import Path
from provserver.ledger.sqlite import SqliteLedger
from provserver.ledger.store import LedgerRecordStore
from provserver.profile import write_profile
from provserver.server import ProvisioningServer
from tests.provserver.test_ledger_store import op
from tests.support.server import make_chain, make_request, write_pem_signer
from tests.support.station import Station

async def main(data: Path, first: int, limit: int) -> None:
    s = LedgerRecordStore(SqliteLedger(data / "ledger.sqlite3"), data, log_max_bytes=limit)
    await s.open()
    print("open", flush=True)
    n = first
    while n < first + 20000:  # bounded; killed long before
        await asyncio.gather(*(s.issue(op(k)) for k in range(n, n + 5)))
        n += 5

asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_kill_9_while_rotating_restores_every_row_once(tmp_path: Path) -> None:
    limit = len(HEADER) + 3 * row_size() + 7  # rotations all the time
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(ROOT / "src"), str(ROOT / "tools"), str(ROOT), os.environ.get("PYTHONPATH", "")]
        ),
    )
    for round_ in range(4):  # each start recovers the run the kill before left
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(tmp_path), str(1 + round_ * 20000), str(limit)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"open\n", proc.stderr.read() if proc.stderr else b""
            time.sleep(0.3 + 0.25 * round_)  # a different moment each round
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        markers = [p for p in (tmp_path / "logs").glob(".running-*") if p.suffix != ".tmp"]
        assert len(markers) == 1  # (and maybe a marker.tmp: killed while writing it)
    last = store(tmp_path)

    async def open_close() -> None:
        await last.open()
        await last.close()

    asyncio.run(asyncio.wait_for(open_close(), 60))
    assert len(last.recovered) == 1
    paths = signing_logs(tmp_path)
    assert len(paths) > 8  # the runs rotated
    expected = ledger_rows(tmp_path)
    assert expected.count(b"\r\n") > 20
    assert bodies(paths) == expected  # every row of every run once, in order, none cut
