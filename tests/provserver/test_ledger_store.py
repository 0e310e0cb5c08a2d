"""The ledger record store: group commit, run files from the ledger, recovery, write failures.

SQLite ledger in a temporary folder; file-system failures are injected at the store's own
system calls (the process tests fill a real disk).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
from pathlib import Path
from time import sleep as time_sleep
from typing import Any

import pytest

from atcaprov.return_codes import ReturnCode
from provserver.console import Console
from provserver.folder_lock import DataFolderInUseError, DataFolderLock
from provserver.ledger import IssueOp, RefusalOp
from provserver.ledger import files as ledger_files
from provserver.ledger.files import Marker
from provserver.ledger.sqlite import SqliteLedger
from provserver.ledger.store import LedgerRecordStore
from provserver.records import RecordStoreError
from provserver.records_file import FileRecordStore
from tests.support.cert_files import cert_files
from tests.support.polling import eventually
from tests.support.records import signed

DEVICE = b"\x30\x03DEV"


def op(n: int, key: int | None = None) -> IssueOp:
    k = n if key is None else key
    return IssueOp(
        time=f"2026-01-01T00:00:{n % 60:02d}.{n:06d}Z", station="127.0.0.1:9 line-1",
        device_sn=f"01231E6CD82C{n:04X}EE", public_key=f"{k:0128X}", issuer_key_id="AB" * 20,
        signer_id="C48B", signer="Example Signer (0123, pem:signer.pem)", cert_sn=f"{n:08X}",
        device_cert=DEVICE + n.to_bytes(4, "big"), signer_cert=b"\x30\x03SGN", root_cert=None,
    )  # fmt: skip


def store(data: Path, out: io.StringIO | None = None, **kw: Any) -> LedgerRecordStore:
    console = Console(out) if out is not None else None
    return LedgerRecordStore(
        SqliteLedger(data / "ledger.sqlite3"), data, console=console, retry_interval=0.1, **kw
    )


def tsv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, dialect="excel-tab"))


async def test_group_commit_and_files_follow_the_ledger(tmp_path: Path) -> None:
    s = store(tmp_path)
    await s.open()
    results = await asyncio.wait_for(asyncio.gather(*(s.issue(op(n)) for n in range(1, 201))), 30)
    await s.refuse(
        RefusalOp(
            time="2026-01-01T00:01:00.000000Z",
            station="x",
            device_sn="00",
            public_key="",
            signer="C48B/AB",
            code=ReturnCode.SIGNER_LOCKED,
            message="locked",
        )
    )
    tsv = s.tsv_path
    await s.close()
    assert all(r.action == "issued" for r in results)
    assert s.commits < 50 and s.largest_batch > 1  # batches, not one transaction per record
    rows = tsv_rows(tsv)
    assert [r["device_sn"] for r in rows[:200]] == [op(n).device_sn for n in range(1, 201)]
    assert rows[-1]["result"] == "refused" and rows[-1]["reason"] == (
        "ATCAPROV_E_SIGNER_LOCKED: locked"
    )
    assert len(list((tmp_path / "certs").glob("*/*-device.pem"))) == 200
    signers = list((tmp_path / "certs").glob("*/*-signer.pem"))
    assert len({os.stat(p).st_ino for p in signers}) == 1  # hard links to one copy
    assert not list((tmp_path / "logs").glob(".running-*"))


async def test_files_that_cannot_be_written_are_caught_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    s = store(tmp_path, out)
    await s.open()
    real = ledger_files.write_all
    failing = {"on": True}

    def write_all(fd: int, data: bytes) -> None:
        if failing["on"] and b"01231E6CD82C0002EE" in data:
            os.write(fd, data[:10])  # a torn row, then the disk is full
            raise OSError(28, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(ledger_files, "write_all", write_all)
    assert (await s.issue(op(1))).action == "issued"
    assert (await s.issue(op(2))).action == "issued"  # in the ledger: it goes out
    await asyncio.sleep(0.05)
    assert s.failure is not None and "No space left" in s.failure
    with pytest.raises(RecordStoreError, match="records cannot be written"):
        await s.issue(op(3))
    failing["on"] = False
    await eventually(lambda: s.failure is None, 5, 0.05)
    assert s.failure is None
    assert (await s.issue(op(4))).action == "issued"
    tsv = s.tsv_path
    await s.close()
    assert [r["device_sn"][-6:] for r in tsv_rows(tsv)] == ["0001EE", "0002EE", "0004EE"]
    text = out.getvalue()
    assert "Records cannot be written:" in text and "No space left on device" in text
    assert (
        "Records can be written again (1 signing log row(s) and 2 certificate file(s) "
        "caught up from the ledger): signing resumed."
    ) in text


async def test_idle_checkpoint_when_the_files_follow_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit loop goes idle before the files thread has written the last batch's files:
    the idle checkpoint still comes (it once waited for the next request, however long)."""
    s = store(tmp_path, checkpoint_after=0.1)
    await s.open()
    write_files = s._write_files_sync

    def late(*args: Any) -> str | None:
        time_sleep(0.3)  # the files thread is slow to start this batch
        return write_files(*args)

    monkeypatch.setattr(s, "_write_files_sync", late)
    await s.issue(op(1))
    assert s.files is not None and s.files.unsynced == 0  # idle, files not written yet

    def checkpointed() -> bool:
        marker = Marker.parse(s.marker_path.read_bytes())
        return marker is not None and marker.synced_issuance == 1

    await eventually(checkpointed, 3)
    assert checkpointed() and s.files.unsynced == 0
    await s.close()


async def test_checkpoint_marker_and_crash_recovery(tmp_path: Path) -> None:
    s = store(tmp_path, checkpoint_after=0.5)
    await s.open()
    for n in range(1, 4):
        await s.issue(op(n))
    await asyncio.sleep(1.5)  # idle: a checkpoint
    marker = Marker.parse(s.marker_path.read_bytes())
    assert marker is not None and marker.synced_issuance == 3 and marker.synced_event == 3
    await s.issue(op(4))
    # the batch's files are written right after its waiters go
    await eventually(lambda: len(cert_files(tmp_path / "certs", op(4).device_sn)) == 2, 0.5)
    stamp, tsv = s.stamp, s.tsv_path
    # a crash: the store is dropped without close(); then a file and the last row are lost
    assert s.files is not None
    s.files.close()
    s.ledger.close()
    for path in cert_files(tmp_path / "certs", op(4).device_sn):
        path.unlink()
    tsv.write_bytes(tsv.read_bytes()[:-5])
    out = io.StringIO()
    again = store(tmp_path, out)
    await again.open()
    await again.close()
    (recovered,) = again.recovered
    assert (recovered.stamp, recovered.rows, recovered.files, recovered.cut) == (stamp, 1, 2, True)
    assert (
        f"Recovered run {stamp} (the server did not stop cleanly): a torn last row cut, "
        "1 signing log row(s) and 2 certificate file(s) restored from the ledger." in out.getvalue()
    )
    assert len(tsv_rows(tsv)) == 4
    with SqliteLedger(tmp_path / "ledger.sqlite3", read_only=True) as ledger:
        (run,) = [r for r in ledger.runs() if r.stamp == stamp]
    assert run.note == "did not stop cleanly; recovered"


async def store_with_one_issuance(data: Path) -> LedgerRecordStore:
    """An open store that issued op(1), its two certificate files written."""
    s = store(data)
    await s.open()
    await s.issue(op(1))
    await eventually(lambda: len(cert_files(data / "certs", op(1).device_sn)) == 2, 1)
    return s


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: data[: len(data) // 2], id="prefix"),
        pytest.param(lambda data: data[:10] + bytes(len(data) - 10), id="prefix-then-zeros"),
        pytest.param(lambda data: bytes(len(data)), id="zeros"),
    ],
)
async def test_a_certificate_file_a_crash_cut_short_is_rewritten_whole(
    tmp_path: Path, cut: Any
) -> None:
    """Certificate files are made by one exclusive create (no temporary file and rename): a
    crash can leave one short, and recovery puts the whole certificate back under its name,
    with no second copy beside it."""
    s = await store_with_one_issuance(tmp_path)
    device, signer = sorted(cert_files(tmp_path / "certs", op(1).device_sn))
    whole = {path: path.read_bytes() for path in (device, signer)}
    assert s.files is not None
    s.files.close()  # a crash before any checkpoint
    s.ledger.close()
    for path in (device, signer):
        path.unlink()  # not through the hard link: each file on its own
        path.write_bytes(cut(whole[path]))
    again = store(tmp_path)
    await again.open()
    await again.close()
    (recovered,) = again.recovered
    assert recovered.files == 2
    assert sorted(cert_files(tmp_path / "certs", op(1).device_sn)) == [device, signer]
    assert {path: path.read_bytes() for path in (device, signer)} == whole
    assert not list((tmp_path / "certs").rglob("*.tmp"))


async def test_another_certificate_under_the_name_is_kept_and_ours_goes_beside_it(
    tmp_path: Path,
) -> None:
    """A file under the issuance's name that is not a short copy of its certificate (changed
    by hand) is left as it is; the certificate goes to the name with the issuance id."""
    s = await store_with_one_issuance(tmp_path)
    device = next(p for p in cert_files(tmp_path / "certs", op(1).device_sn) if "device" in p.name)
    whole = device.read_bytes()
    assert s.files is not None
    s.files.close()
    s.ledger.close()
    device.write_bytes(b"edited by hand\n")
    again = store(tmp_path)
    await again.open()
    await again.close()
    assert device.read_bytes() == b"edited by hand\n"
    (beside,) = [p for p in device.parent.iterdir() if p.name.endswith("-1-device.pem")]
    assert beside.read_bytes() == whole


async def test_commits_go_on_while_the_files_thread_is_held_up_but_only_so_far(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow moment on the files thread (a checkpoint's sync) does not hold up the commits
    that signings wait for; the files may fall FILES_BATCHES_BEHIND batches behind, no more."""
    import threading

    from provserver.ledger import store as store_module

    held = threading.Event()
    entered = threading.Event()
    original = ledger_files.RunFiles.append_rows

    def slow_append(self: ledger_files.RunFiles, events: Any) -> int:
        entered.set()
        assert held.wait(30)
        return original(self, events)

    s = store(tmp_path)
    await s.open()
    monkeypatch.setattr(ledger_files.RunFiles, "append_rows", slow_append)
    await s.issue(op(1))  # its files are now held up
    assert await asyncio.to_thread(entered.wait, 10)
    behind = store_module.FILES_BATCHES_BEHIND
    for n in range(2, 2 + behind):  # one batch each: committed although the files wait
        await asyncio.wait_for(s.issue(op(n)), 10)
    blocked = asyncio.ensure_future(s.issue(op(2 + behind)))
    await asyncio.sleep(0.3)
    assert not blocked.done()  # the files are FILES_BATCHES_BEHIND + 1 batches behind: wait
    held.set()
    await asyncio.wait_for(blocked, 10)
    await s.close()
    assert len(tsv_rows(s.tsv_path)) == 2 + behind
    for n in range(1, 3 + behind):
        assert len(cert_files(tmp_path / "certs", op(n).device_sn)) == 2


@pytest.mark.skipif(not hasattr(os, "sync"), reason="checkpoints sync per file here")
async def test_a_checkpoint_under_load_syncs_beside_the_files_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every CHECKPOINT_FILES certificate files, the files written so far are synced in a
    thread of their own: while that sync is slow (a few hundred ms for 20,000 files), the
    commits and the files go on; the crash marker then names what was written before the
    sync began, never more; one checkpoint runs at a time; close waits for it."""
    import threading

    from provserver.ledger import store as store_module

    monkeypatch.setattr(store_module, "CHECKPOINT_FILES", 4)  # 2 issuances: 4 files
    held, entered = threading.Event(), threading.Event()
    syncs: list[str] = []

    def slow_sync() -> None:
        syncs.append(threading.current_thread().name)
        entered.set()
        assert held.wait(30)

    monkeypatch.setattr(os, "sync", slow_sync)
    s = store(tmp_path, checkpoint_after=None)
    await s.open()
    for n in (1, 2):
        await s.issue(op(n))
    assert await asyncio.to_thread(entered.wait, 10)  # the checkpoint after op 2's files
    for n in range(3, 3 + 3 * store_module.FILES_BATCHES_BEHIND):  # far more than the
        await asyncio.wait_for(s.issue(op(n)), 10)  # files may lag: they are not held up
    last = 2 + 3 * store_module.FILES_BATCHES_BEHIND
    await eventually(lambda: len(cert_files(tmp_path / "certs", op(last).device_sn)) == 2, 2)
    assert len(cert_files(tmp_path / "certs", op(last).device_sn)) == 2
    marker = Marker.parse(s.marker_path.read_bytes())
    assert marker is not None and marker.synced_issuance == 0  # not synced yet: not named
    assert syncs == ["ledger-sync_0"]  # one at a time, in its own thread
    held.set()
    await s.close()  # waits for the checkpoint in flight, then syncs the rest itself
    assert syncs[0] == "ledger-sync_0" and not s.marker_path.exists()
    assert len(tsv_rows(s.tsv_path)) == last


@pytest.mark.skipif(not hasattr(os, "sync"), reason="checkpoints sync per file here")
async def test_a_checkpoint_marker_names_only_what_was_written_before_its_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from provserver.ledger import store as store_module

    monkeypatch.setattr(store_module, "CHECKPOINT_FILES", 4)
    held = threading.Event()
    real_sync = os.sync

    def slow_sync() -> None:
        if threading.current_thread().name.startswith("ledger-sync"):
            assert held.wait(30)
        real_sync()

    monkeypatch.setattr(os, "sync", slow_sync)
    s = store(tmp_path, checkpoint_after=None)
    await s.open()
    for n in (1, 2, 3):  # op 2's files start the checkpoint; op 3's come after it began
        await s.issue(op(n))
    await eventually(lambda: len(cert_files(tmp_path / "certs", op(3).device_sn)) == 2, 2)
    held.set()

    def synced_issuance() -> int:
        marker = Marker.parse(s.marker_path.read_bytes())
        return marker.synced_issuance if marker is not None else 0

    await eventually(synced_issuance, 2)
    marker = Marker.parse(s.marker_path.read_bytes())
    assert marker is not None and (marker.synced_issuance, marker.synced_event) == (2, 2)
    await s.close()


@pytest.mark.skipif(not hasattr(os, "sync"), reason="checkpoints sync per file here")
async def test_a_checkpoint_that_cannot_sync_stops_signing_until_caught_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provserver.ledger import store as store_module

    monkeypatch.setattr(store_module, "CHECKPOINT_FILES", 2)
    failing = {"on": True}
    real_sync = os.sync

    def sync() -> None:
        if failing["on"]:
            raise OSError(5, "Input/output error")
        real_sync()

    monkeypatch.setattr(os, "sync", sync)
    out = io.StringIO()
    s = store(tmp_path, out, checkpoint_after=None)
    await s.open()
    await s.issue(op(1))  # in the ledger: it goes out; the checkpoint after its files fails
    await eventually(lambda: s.failure is not None, 2)
    assert s.failure is not None and "Input/output error" in s.failure
    with pytest.raises(RecordStoreError, match="records cannot be written"):
        await s.issue(op(2))
    failing["on"] = False
    await eventually(lambda: s.failure is None, 4, 0.02)
    assert s.failure is None and "signing resumed" in out.getvalue()
    assert (await s.issue(op(3))).action == "issued"
    await s.close()
    assert [r["device_sn"][-6:] for r in tsv_rows(s.tsv_path)] == ["0001EE", "0003EE"]


async def test_a_run_of_the_file_store_is_recovered_from_its_journal(tmp_path: Path) -> None:
    old = FileRecordStore(tmp_path, checkpoint_after=None)
    await old.open()
    await old.log_signing(signed(1), *(_pem("d"), _pem("s")))
    # crash: never closed (its marker stays, empty)
    old._close_handles()
    for path in (tmp_path / "certs").glob("*/*.pem"):
        path.unlink()
    s = store(tmp_path)
    await s.open()
    await s.close()
    assert [r.legacy for r in s.recovered] == [True]
    assert len(list((tmp_path / "certs").glob("*/*.pem"))) == 2


async def test_a_run_of_another_ledger_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir(parents=True)
    marker = tmp_path / "logs" / ".running-20250101-000000"
    marker.write_bytes(Marker("ff" * 16, 7).to_bytes())
    out = io.StringIO()
    s = store(tmp_path, out)
    await s.open()
    await s.close()
    assert marker.exists() and "it wrote to another ledger" in out.getvalue()


async def test_close_that_cannot_record_keeps_the_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = store(tmp_path)
    await s.open()
    await s.issue(op(1))

    def no_end(*args: object, **kw: object) -> None:
        from provserver.ledger import LedgerWriteError

        raise LedgerWriteError("database or disk is full")

    monkeypatch.setattr(s.ledger, "end_run", no_end)
    with pytest.raises(RecordStoreError, match="end of run not recorded: database or disk"):
        await s.close()
    assert s.marker_path.exists()


def test_folder_lock(tmp_path: Path) -> None:
    with DataFolderLock(tmp_path / "data") as held:
        assert held.held
        with pytest.raises(DataFolderInUseError) as info:
            DataFolderLock(tmp_path / "data").acquire()
        assert info.value.pid == os.getpid()
        assert str(info.value) == (
            f"data folder {tmp_path / 'data'} is in use by provserver pid {os.getpid()}"
        )
    with DataFolderLock(tmp_path / "data"):  # released: free again
        pass


@pytest.mark.skipif(os.name != "posix", reason="whether a pid has ended: POSIX only")
def test_folder_lock_held_after_its_server_ended_says_so(tmp_path: Path) -> None:
    """A killed server's commit writer child holds the lock a moment longer: the pid in the
    file is the server's, which has ended; the second server's message says so."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(30)  # reaped: this pid names no process now
    with DataFolderLock(tmp_path / "data") as held:
        fd = held.fileno()
        assert fd is not None
        os.pwrite(fd, f"{ended.pid}\n".encode().ljust(32), 0)
        with pytest.raises(DataFolderInUseError) as info:
            DataFolderLock(tmp_path / "data").acquire()
    assert info.value.pid == ended.pid
    assert str(info.value) == (
        f"data folder {tmp_path / 'data'} is in use by provserver pid {ended.pid} (that "
        "process has ended; its commit writer still holds the folder and lets it go when it "
        "ends: try again in a moment)"
    )


def _pem(cn: str) -> str:
    from tests.support.records import cert_pem_text

    return cert_pem_text(cn)
