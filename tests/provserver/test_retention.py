"""Log retention: the activity log rotates per day and by size, old logs are removed with
--keep-days (never the open run's signing log, never the ledger). Clocks are injected."""

from __future__ import annotations

import asyncio
import io
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from provserver.cli import Settings, main, run
from provserver.console import Console
from provserver.ledger import open_ledger
from provserver.paths import DataDir
from provserver.records import MemoryRecordStore
from provserver.retention import RotatingActivityLog, prune_and_report, prune_logs
from tests.support.server import make_chain, write_pem_signer

DAY = 86400.0
T0 = datetime(2026, 11, 21, 23, 59, 58)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_the_activity_log_rotates_at_midnight(tmp_path: Path) -> None:
    data = DataDir(tmp_path).ensure()
    clock = Clock(T0)
    log = RotatingActivityLog(data, now=clock)
    log.write("first\n")
    clock.now += timedelta(seconds=1)
    log.write("second\n")  # same day: same file
    clock.now += timedelta(seconds=2)  # 00:00:01 the next day
    log.write("third\n")
    log.close()
    first, second = log.paths
    assert (first.name, second.name) == (
        "activity-20261121-235958.log",
        "activity-20261122-000001.log",
    )
    assert first.read_text() == "first\nsecond\n[continued in activity-20261122-000001.log]\n"
    assert second.read_text() == "[continued from activity-20261121-235958.log]\nthird\n"


def test_the_activity_log_rotates_by_size_between_whole_lines(tmp_path: Path) -> None:
    data = DataDir(tmp_path).ensure()
    clock = Clock(datetime(2026, 11, 21, 8, 0, 0))
    opened: list[Path] = []
    log = RotatingActivityLog(data, max_bytes=100, now=clock, opened=opened.append)
    for n in range(10):
        clock.now += timedelta(seconds=1)
        log.write(f"line {n:02d} " + "x" * 30 + "\n")  # 39 bytes
    log.close()
    assert opened == log.paths and len(log.paths) > 2
    texts = [p.read_text() for p in log.paths]
    for text in texts[:-1]:  # each within the limit, but for the line naming the next file
        assert text.endswith(".log]\n")
        assert len(text[: text.rindex("[continued in")].encode()) <= 100
    lines = [ln for t in texts for ln in t.splitlines() if ln.startswith("line ")]
    assert lines == [f"line {n:02d} " + "x" * 30 for n in range(10)]  # nothing lost or cut


def _touch(path: Path, age_days: float, now: float) -> Path:
    path.write_text("x")
    os.utime(path, (now - age_days * DAY, now - age_days * DAY))
    return path


def test_prune_removes_old_logs_only(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    now = time.time()
    old_activity = _touch(logs / "activity-20261101-080000.log", 40, now)
    old_activity_2 = _touch(logs / "activity-20261101-080000-1.log", 31, now)
    recent_activity = _touch(logs / "activity-20261201-080000.log", 29, now)
    old_tsv = _touch(logs / "signing-20261101-080000.tsv", 40, now)
    crashed_tsv = _touch(logs / "signing-20261102-080000.tsv", 40, now)
    _touch(logs / ".running-20261102-080000", 40, now)  # not recovered yet: kept
    writing = _touch(logs / "activity-20261001-080000.log", 50, now)
    other = _touch(logs / "notes.txt", 400, now)
    ledger = _touch(tmp_path / "ledger.sqlite3", 400, now)

    removed = prune_logs(logs, 30, now=now, keep=lambda p: p == writing)
    assert removed == [old_activity_2, old_activity, old_tsv]
    for kept in (recent_activity, crashed_tsv, writing, other, ledger):
        assert kept.exists()
    assert prune_logs(logs, 30, now=now, keep=lambda p: p == writing) == []
    # a day later the 29-day-old one goes too
    later = now + 1.5 * DAY
    assert prune_logs(logs, 30, now=later, keep=lambda p: p == writing) == [recent_activity]


def test_prune_report_names_what_went(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    now = time.time()
    for n in range(7):
        _touch(logs / f"signing-2026110{n}-080000.tsv", 10, now)
    out = io.StringIO()
    removed = prune_and_report(Console(out), logs, 7, now=now)
    assert len(removed) == 7
    expected = (
        "Removed 7 log file(s) not written for 7 days (--keep-days): "
        "signing-20261100-080000.tsv, signing-20261101-080000.tsv, "
        "signing-20261102-080000.tsv, signing-20261103-080000.tsv, "
        "signing-20261104-080000.tsv and 2 more. The ledger keeps every record."
    )
    assert expected in out.getvalue()
    out = io.StringIO()
    assert prune_and_report(Console(out), logs, 7, now=now) == [] and out.getvalue() == ""


async def test_the_server_prunes_at_start_and_keeps_the_ledger(tmp_path: Path) -> None:
    chain = make_chain()
    data = tmp_path / "data"
    logs = data / "logs"
    logs.mkdir(parents=True)
    now = time.time()
    old_log = _touch(logs / "activity-20250101-080000.log", 100, now)
    old_tsv = _touch(logs / "signing-20250101-080000.tsv", 100, now)
    key = write_pem_signer(chain, tmp_path / "keys")
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=data,
        signers=["pem"],
        pem_key=key,
        rescan_interval=0.2,
        keep_days=30,
        ledger=None,
    )
    with open_ledger(None, data) as ledger:  # an existing ledger with a run in it
        ledger.start_run(
            server="old",
            data_dir=str(data),
            stamp="20250101-080000",
            started_at="2025-01-01T08:00:00.000000Z",
        )
    out = io.StringIO()
    stop = asyncio.Event()
    ready: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run(
            settings,
            console=Console(out),
            stop=stop,
            on_ready=ready.set_result,
            records=MemoryRecordStore(),
        )
    )
    await asyncio.wait_for(ready, 20)
    for _ in range(100):  # the first pass runs at once, in a worker thread
        if "Removed 2 log file(s)" in out.getvalue():
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 20)
    assert "Removed 2 log file(s) not written for 30 days (--keep-days)" in out.getvalue()
    assert not old_log.exists() and not old_tsv.exists()
    (current,) = logs.glob("activity-*.log")  # this run's log stays
    assert "Removed 2 log file(s)" in current.read_text()
    with open_ledger(None, data, read_only=True) as ledger:
        assert [r.stamp for r in ledger.runs()] == ["20250101-080000"]


def test_keep_days_option_is_checked() -> None:
    result = CliRunner().invoke(main, ["--keep-days", "0"])
    assert result.exit_code == 2 and "--keep-days" in result.stderr
    result = CliRunner().invoke(main, ["--help"])
    assert "--keep-days" in result.stdout and "--log-max-size" in result.stdout
