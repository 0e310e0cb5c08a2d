"""Record store: group commit (counted fsyncs), TSV validity, sanitising, crash recovery."""

from __future__ import annotations

import asyncio
import csv
import datetime
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509

from provserver.records import (
    TSV_COLUMNS,
    MemoryRecordStore,
    RecordStoreError,
    SigningRecord,
    sanitize_field,
)
from provserver.records_file import FileRecordStore, parse_journal
from tests.support.records import cert_pem_text, signed

STARTED = datetime.datetime(2026, 11, 21, 5, 13, 23, tzinfo=datetime.timezone.utc)
TIMEOUT = 30.0


DEVICE_PEM = cert_pem_text("device")
SIGNER_PEM = cert_pem_text("signer")


def _refused(i: int, reason: str = "signer locked") -> SigningRecord:
    return SigningRecord.create(
        station="line-2",
        device_sn=i.to_bytes(9, "big"),
        signer="C48B",
        result="refused",
        reason=reason,
    )


class FsyncCounter:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.threads: set[int] = set()
        self.delay = delay
        self.fail = fail
        self._real: Callable[[int], None] = os.fsync
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        with self._lock:
            self.calls += 1
            self.threads.add(threading.get_ident())
        if self.fail:
            raise OSError(28, "No space left on device")
        if self.delay:
            threading.Event().wait(self.delay)
        self._real(fd)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[FsyncCounter]:
    counter = FsyncCounter()
    monkeypatch.setattr(os, "fsync", counter)
    yield counter


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh, dialect="excel-tab"))


T = TypeVar("T")


async def _bounded(coro: Awaitable[T]) -> T:
    return await asyncio.wait_for(coro, TIMEOUT)


# ------------------------------------------------------------------ group commit
async def test_200_concurrent_signings_share_fsyncs(tmp_path: Path, fsyncs: FsyncCounter) -> None:
    store = FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None)
    await store.open()
    before = fsyncs.calls
    records = [signed(i) for i in range(200)]
    await _bounded(asyncio.gather(*(store.log_signing(r, DEVICE_PEM, SIGNER_PEM) for r in records)))
    during = fsyncs.calls - before
    assert during == 2 * store.commits  # journal + TSV per batch, nothing per request
    assert during < 200 and store.largest_batch > 1
    assert fsyncs.threads and threading.get_ident() not in fsyncs.threads  # off the event loop
    await store.close()

    rows = _rows(store.tsv_path)
    assert rows[0] == list(TSV_COLUMNS)
    assert len(rows) == 201 and all(len(row) == 8 for row in rows)
    assert sorted(row[2] for row in rows[1:]) == sorted(r.device_sn for r in records)
    assert {row[6] for row in rows[1:]} == {"signed"}
    for record in records[::37]:
        folder = tmp_path / "certs" / record.device_sn
        files = sorted(p.name for p in folder.iterdir())
        assert len(files) == 2 and files[0].endswith("-device.pem")
        assert (folder / files[0]).read_text() == DEVICE_PEM
        assert (folder / files[1]).read_text() == SIGNER_PEM
    entries, end = parse_journal(store.journal_path.read_bytes())
    assert len(entries) == 400 and end == store.journal_path.stat().st_size
    assert not store.marker_path.exists()
    loaded = x509.load_pem_x509_certificates(store.journal_path.read_bytes())
    assert len(loaded) == 400


async def test_max_batch_bounds_each_commit(tmp_path: Path, fsyncs: FsyncCounter) -> None:
    store = FileRecordStore(tmp_path, started=STARTED, max_batch=7, checkpoint_after=None)
    await store.open()
    before = fsyncs.calls
    await _bounded(
        asyncio.gather(*(store.log_signing(signed(i), DEVICE_PEM, SIGNER_PEM) for i in range(50)))
    )
    assert store.largest_batch <= 7 and store.commits >= 8
    assert fsyncs.calls - before == 2 * store.commits
    await store.close()
    assert len(_rows(store.tsv_path)) == 51


async def test_staggered_arrivals_with_slow_disk_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = FsyncCounter(delay=0.01)
    monkeypatch.setattr(os, "fsync", counter)
    store = FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None)
    await store.open()

    async def one(i: int) -> None:
        await asyncio.sleep(0.001 * i)
        await store.log_signing(signed(i), DEVICE_PEM, SIGNER_PEM)

    await _bounded(asyncio.gather(*(one(i) for i in range(60))))
    assert store.commits < 60 and store.largest_batch > 1
    counter.delay = 0.0  # close() syncs the 120 certificate copies: no need to wait for them
    await store.close()
    assert len(_rows(store.tsv_path)) == 61


# ------------------------------------------------------------------ rows
async def test_refusals_and_signings_share_the_log(tmp_path: Path, fsyncs: FsyncCounter) -> None:
    async with FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None) as store:
        before = fsyncs.calls
        await store.log_refusal(_refused(1, "ATCAPROV_E_SIGNER_LOCKED: signer waits for password"))
        assert fsyncs.calls - before == 1  # refusal-only batch: the TSV alone
        await store.log_signing(signed(2), DEVICE_PEM, SIGNER_PEM)
        await store.log_refusal(_refused(3, "bad key"))
    rows = _rows(store.tsv_path)
    assert [row[6] for row in rows[1:]] == ["refused", "signed", "refused"]
    assert rows[1][7] == "ATCAPROV_E_SIGNER_LOCKED: signer waits for password"
    assert rows[1][2] == "000000000000000001" and rows[1][4] == ""
    assert rows[2][4] == "000002" and rows[2][5] == bytes(range(64)).hex().upper()
    assert rows[2][0].endswith("Z") and "T" in rows[2][0]
    assert not (tmp_path / "certs" / rows[1][2]).exists()  # refusals store no certificates


async def test_station_with_tabs_and_newlines_is_sanitised(tmp_path: Path) -> None:
    evil = "line\t7\r\nrow2\tx\x00y\u2028z"
    async with FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None) as store:
        await store.log_signing(signed(1, station=evil), DEVICE_PEM, SIGNER_PEM)
        await store.log_refusal(
            SigningRecord.create(
                station='=HYPERLINK("http://x")',
                device_sn="",
                signer="s",
                result="refused",
                reason='bad "quoted"\nreason',
            )
        )
    raw = store.tsv_path.read_bytes()
    assert raw.count(b"\r\n") == 3 and raw.count(b"\n") == 3
    rows = _rows(store.tsv_path)
    assert len(rows) == 3 and all(len(row) == 8 for row in rows)
    assert rows[1][1] == "line\\t7\\r\\nrow2\\tx\\x00y\\u2028z"
    assert rows[2][1] == '\'=HYPERLINK("http://x")'
    assert rows[2][7] == 'bad "quoted"\\nreason'


def test_sanitize_field() -> None:
    assert sanitize_field("  a\t\tb  ") == "  a\\t\\tb  "
    assert sanitize_field("C:\\data") == "C:\\data"
    assert sanitize_field("-1") == "'-1" and sanitize_field("@x") == "'@x"
    assert sanitize_field("+") == "'+"
    long = sanitize_field("x" * 2000)
    assert len(long) == 512 and long.endswith("…")
    # cut before an escape, never inside one
    cut = sanitize_field("x" * 509 + "\x1b" * 10)
    assert cut == "x" * 509 + "…"
    cut = sanitize_field("=" + "x" * 505 + "\x1b" * 10)
    assert cut == "'=" + "x" * 505 + "\\x1b" + "…" and len(cut) == 512


def test_record_validation() -> None:
    with pytest.raises(ValueError, match="device_sn must be hex"):
        SigningRecord.create(station="s", device_sn="01/../x", signer="s", result="signed")
    with pytest.raises(ValueError, match="result"):
        SigningRecord("t", "s", "", "s", "", "", "maybe")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SigningRecord("t", 5, "", "s", "", "", "signed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aware"):
        SigningRecord.create(
            station="s",
            device_sn="",
            signer="s",
            result="signed",
            when=datetime.datetime(2020, 1, 1),
        )


async def test_caller_errors(tmp_path: Path) -> None:
    store = FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None)
    with pytest.raises(RecordStoreError, match="not open"):
        await store.log_refusal(_refused(1))
    await store.open()
    with pytest.raises(RecordStoreError, match="already open"):
        await store.open()
    with pytest.raises(ValueError, match="'signed' record"):
        await store.log_signing(_refused(1), DEVICE_PEM, SIGNER_PEM)
    with pytest.raises(ValueError, match="'refused' record"):
        await store.log_refusal(signed(1))
    with pytest.raises(ValueError, match="device_cert_pem"):
        await store.log_signing(signed(1), "not a pem", SIGNER_PEM)
    with pytest.raises(ValueError, match="signer_cert_pem"):
        await store.log_signing(signed(1), DEVICE_PEM, DEVICE_PEM + SIGNER_PEM)
    with pytest.raises(ValueError, match="serial number"):
        await store.log_signing(
            SigningRecord.create(station="s", device_sn="", signer="s", result="signed"),
            DEVICE_PEM,
            SIGNER_PEM,
        )
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(RecordStoreError, match="closed"):
        await store.log_refusal(_refused(1))
    assert len(_rows(store.tsv_path)) == 1


async def test_same_device_twice_gets_distinct_files_and_new_run_new_log(tmp_path: Path) -> None:
    record = signed(5)
    crlf_pem = DEVICE_PEM.replace("\n", "\r\n")
    async with FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None) as store:
        await store.log_signing(record, crlf_pem, SIGNER_PEM)
        await store.log_signing(record, DEVICE_PEM, SIGNER_PEM)
    names = sorted(p.name for p in (tmp_path / "certs" / record.device_sn).iterdir())
    stamp = record.time.replace("-", "").replace(":", "").replace(".", "")
    assert names == [
        f"{stamp}-1-device.pem",
        f"{stamp}-1-signer.pem",
        f"{stamp}-device.pem",
        f"{stamp}-signer.pem",
    ]
    assert (tmp_path / "certs" / record.device_sn / names[2]).read_text() == DEVICE_PEM
    async with FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None) as second:
        pass
    assert store.tsv_path.name == "signing-20261121-051323.tsv"
    assert second.tsv_path.name == "signing-20261121-051323-1.tsv"


# ------------------------------------------------------------------ failures and recovery
async def test_disk_failure_refuses_and_keeps_refusing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None)
    await store.open()
    monkeypatch.setattr(os, "fsync", FsyncCounter(fail=True))
    results = await _bounded(
        asyncio.gather(
            *(store.log_signing(signed(i), DEVICE_PEM, SIGNER_PEM) for i in range(5)),
            return_exceptions=True,
        )
    )
    assert all(isinstance(r, RecordStoreError) for r in results)
    assert "No space left on device" in str(results[0])
    with pytest.raises(RecordStoreError, match="failed earlier"):
        await store.log_refusal(_refused(1))
    monkeypatch.undo()
    await store.close()
    assert store.marker_path.exists()  # left for recovery by the next open()


async def test_crash_recovery_repairs_files_and_torn_tails(tmp_path: Path) -> None:
    store = FileRecordStore(tmp_path, started=STARTED, checkpoint_after=None)
    await store.open()
    records = [signed(i) for i in range(6)]
    await _bounded(asyncio.gather(*(store.log_signing(r, DEVICE_PEM, SIGNER_PEM) for r in records)))
    await _bounded(store.log_refusal(_refused(9)))
    # crash: the process dies without close() (marker stays, copies never synced)
    assert store._task is not None
    store._task.cancel()
    store._close_handles()
    certs = tmp_path / "certs"
    dev0 = next((certs / records[0].device_sn).glob("*-device.pem"))
    dev0.unlink()
    sig1 = next((certs / records[1].device_sn).glob("*-signer.pem"))
    sig1.write_bytes(sig1.read_bytes()[:40])
    (certs / records[2].device_sn / f".{dev0.name}.tmp").write_bytes(b"partial")
    with open(store.tsv_path, "ab") as fh:
        fh.write(b"2026-11-21T05:14:00.000000Z\tline-1\t0123")  # torn row
    with open(store.journal_path, "ab") as fh:
        fh.write(b"#atcaprov-cert 0123/2026-device.pem\n-----BEGIN CERT")  # torn entry
    assert store.marker_path.exists()

    later = FileRecordStore(tmp_path, started=STARTED + datetime.timedelta(hours=1))
    await later.open()
    await later.close()
    assert later.recovered == [store.stamp]
    assert not store.marker_path.exists()
    assert dev0.read_text() == DEVICE_PEM and sig1.read_text() == SIGNER_PEM
    assert store.tsv_path.read_bytes().endswith(b"\r\n")
    rows = _rows(store.tsv_path)
    assert len(rows) == 8 and rows[-1][6] == "refused"
    entries, end = parse_journal(store.journal_path.read_bytes())
    assert len(entries) == 12 and end == store.journal_path.stat().st_size


async def test_idle_checkpoint_syncs_copies_before_close(
    tmp_path: Path, fsyncs: FsyncCounter
) -> None:
    store = FileRecordStore(tmp_path, started=STARTED, checkpoint_after=0.02)
    await store.open()
    await _bounded(
        asyncio.gather(*(store.log_signing(signed(i), DEVICE_PEM, SIGNER_PEM) for i in range(40)))
    )
    after_commit = fsyncs.calls
    for _ in range(500):  # bounded wait (<= 5 s) for the idle checkpoint chunks (32 files each)
        if not store._unsynced and fsyncs.calls > after_commit:
            break
        await asyncio.sleep(0.01)
    assert not store._unsynced
    assert fsyncs.calls - after_commit >= 80  # every copy synced (plus its folder)
    before_close = fsyncs.calls
    await store.close()
    assert fsyncs.calls - before_close <= 1  # nothing left but the logs folder entry
    assert not store.marker_path.exists()


async def test_memory_store() -> None:
    store = MemoryRecordStore()
    with pytest.raises(RecordStoreError):
        await store.log_refusal(_refused(1))
    async with store:
        await store.log_signing(signed(1), DEVICE_PEM, SIGNER_PEM)
        await store.log_refusal(_refused(2))
    assert len(store.signings) == 1 and len(store.refusals) == 1 and not store.is_open
