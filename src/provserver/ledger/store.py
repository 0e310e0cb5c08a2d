"""The server's record store over a ledger: group commit, run files, recovery, write failures.

:class:`LedgerRecordStore` is what ``provserver`` records with (:class:`~provserver.records.
RecordStore` contract). Per request the signing service hands it an operation (a signed
certificate, a refusal, a client's outcome report); the store answers with what goes out.

Group commit
    Operations waiting at the same moment form one batch (at most ``max_batch``). One
    worker-thread call per batch runs the whole batch as **one ledger transaction**
    (:meth:`~provserver.ledger.base.Ledger.commit`); when it has committed, the waiters are
    released (their certificates may leave). The batch's signing-log rows and certificate
    files (:mod:`.files`, derived data) are then written by another worker-thread call while
    the next batches commit: one batch's files at a time, in commit order, the next batch's
    files only after them, at most :data:`FILES_BATCHES_BEHIND` batches behind the commits (a
    slow moment there does not hold up the commits). Under load the files are synced every
    :data:`~.files.CHECKPOINT_FILES` files by a sync thread while the files thread goes on;
    the crash marker then names what was written before that sync began. Commits never
    overlap, and the event loop never waits for the disk or the database. A crash before the
    files are written loses nothing: the next start restores them from the ledger (below).

Runs and crashes
    ``open()`` recovers the runs of this data folder that did not close (their crash marker
    ``logs/.running-<stamp>`` is still there) from the ledger, records a new run in the ledger,
    creates its signing log and its marker. ``close()`` drains the batches, syncs the files,
    records the end of the run and removes the marker. The caller holds the data folder's lock
    (:mod:`provserver.folder_lock`) for the whole time. ``recovered`` lists what open() did.

Write failures (disk full, database gone)
    A batch whose transaction fails is stored nowhere: its waiters get :class:`RecordStoreError`
    (no certificate leaves, no row, no file). From then on :attr:`failure` says what failed;
    the signing service signs nothing while it is set, and every new operation is refused at
    once. The store says so on the console, then checks every ``retry_interval`` seconds
    whether writes work again (a small ledger write, then the run's files brought in line with
    the ledger) and resumes by itself, saying so; when the failure cannot pass by itself (the
    database file is damaged) it says that a restart is needed. The same holds when the ledger
    committed but the files could not be written: the ledger has everything, the files are
    caught up once the disk takes writes again.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from atcaprov.crypto import certificate_public_key, public_key_xy
from atcaprov.return_codes import ReturnCode

from ..console import Console, Level
from ..records import (
    RecordStore,
    RecordStoreError,
    SigningRecord,
    check_refusal_args,
    check_signing_args,
    utc_timestamp,
)
from ..records_file import recover_legacy_run
from .base import Ledger, LedgerError, LedgerWriteError
from .files import (
    CHECKPOINT_FILES,
    Marker,
    Recovered,
    RunFiles,
    catch_up,
    free_stamp,
    recover_run,
)
from .model import (
    TSV_EVENT_KINDS,
    IssueOp,
    IssueResult,
    LedgerOp,
    LedgerResult,
    RefusalOp,
    ReportOp,
    ReportResult,
)

DEFAULT_MAX_BATCH = 512
DEFAULT_CHECKPOINT_AFTER = 1.0
DEFAULT_RETRY_INTERVAL = 1.0
FILES_BATCHES_BEHIND = 8  # committed batches whose files may still be waiting (bounded memory)


@dataclass(frozen=True)
class RecoveredRun:
    """A crashed run repaired by :meth:`LedgerRecordStore.open` (``legacy``: journal files)."""

    stamp: str
    rows: int
    files: int
    cut: bool
    legacy: bool = False

    def describe(self) -> str:
        if self.legacy:
            return (
                f"Recovered run {self.stamp} (the server did not stop cleanly): signing log and "
                "certificate files repaired from its journal."
            )
        if not (self.rows or self.files or self.cut):
            return (
                f"Recovered run {self.stamp} (the server did not stop cleanly): its signing log "
                "and certificate files were complete."
            )
        parts = []
        if self.cut:
            parts.append("a torn last row cut")
        parts.append(
            f"{self.rows} signing log row(s) and {self.files} certificate file(s) "
            "restored from the ledger"
        )
        return f"Recovered run {self.stamp} (the server did not stop cleanly): {', '.join(parts)}."


_Waiter = tuple[LedgerOp, "asyncio.Future[LedgerResult]"]


class LedgerRecordStore(RecordStore):
    """Records in ``ledger`` plus the signing log and certs folder of ``data_dir``.

    ``allow_reprovision`` lets an installed device get a certificate for another key
    (``--allow-reprovision``). ``console`` gets the lines about recovery, failures and
    resuming (None: nothing is printed). ``checkpoint_after``: idle seconds after which the
    files are synced (None: only at close). The signing log rotates at the first row of each
    new day of ``now`` (local time) and, with ``log_max_bytes``, before a row that would take
    it past that size (``--log-max-size``; see :class:`~.files.RunFiles`).
    """

    def __init__(
        self,
        ledger: Ledger,
        data_dir: str | Path,
        *,
        console: Console | None = None,
        allow_reprovision: bool = False,
        started: datetime | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        checkpoint_after: float | None = DEFAULT_CHECKPOINT_AFTER,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        log_max_bytes: int | None = None,
        now: Callable[[], datetime] = datetime.now,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.ledger = ledger
        self.root = Path(data_dir)
        self.logs_dir = self.root / "logs"
        self.certs_dir = self.root / "certs"
        self.allow_reprovision = allow_reprovision
        self._console = console
        self._started = started or datetime.now(timezone.utc)
        self._max_batch = max_batch
        self._checkpoint_after = checkpoint_after
        self._retry_interval = retry_interval
        self._log_max_bytes = log_max_bytes
        self._now = now
        self.run_id = 0
        self.stamp = ""
        self.files: RunFiles | None = None
        self.recovered: list[RecoveredRun] = []
        self.commits = 0
        self.largest_batch = 0
        self._state = "new"
        self._failure: str | None = None
        self._permanent = False
        self._pending: list[_Waiter] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread writes the files, batch after batch in commit order (submitted by the
        # commit as soon as it is done); at most FILES_BATCHES_BEHIND batches behind.
        self._files_thread: ThreadPoolExecutor | None = None
        self._files_done: deque[Future[str | None]] = deque()
        # Checkpoints under load sync in a thread of their own (a sync of 20,000 files takes
        # a few hundred ms: the files thread, and the commits behind it, go on meanwhile).
        self._sync_thread: ThreadPoolExecutor | None = None
        self._sync_done: Future[None] | None = None  # the checkpoint in flight, if any
        self._files_broken = False  # a files write failed: none after it until caught up
        self._marker = Marker("", 0)

    # -- RecordStore ---------------------------------------------------------------------------
    @property
    def failure(self) -> str | None:
        return self._failure

    @property
    def tsv_path(self) -> Path:
        return self.files.tsv_path if self.files is not None else Path()

    @property
    def marker_path(self) -> Path:
        return self.files.marker_path if self.files is not None else Path()

    async def open(self) -> None:
        if self._state != "new":
            raise RecordStoreError(f"record store already {self._state}")
        try:
            await asyncio.to_thread(self._open_sync)
        except (LedgerError, OSError) as exc:
            await asyncio.to_thread(self._abandon_open)
            raise RecordStoreError(f"cannot open the records in {self.root}: {exc}") from exc
        for run in self.recovered:
            self._say("info", run.describe())
        self._files_thread = ThreadPoolExecutor(1, thread_name_prefix="ledger-files")
        self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="ledger-sync")
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._commit_loop(), name="ledger-commit")
        self._state = "open"

    async def issue(self, op: IssueOp) -> IssueResult:
        result = await self.enqueue(op)
        assert isinstance(result, IssueResult)
        return result

    async def refuse(self, op: RefusalOp) -> None:
        await self.enqueue(op)

    async def report(self, op: ReportOp) -> ReportResult:
        result = await self.enqueue(op)
        assert isinstance(result, ReportResult)
        return result

    async def log_signing(
        self, record: SigningRecord, device_cert_pem: str, signer_cert_pem: str
    ) -> None:
        """The plain record-store call: records a new issuance (issuer from the signer cert)."""
        device_pem, signer_pem = check_signing_args(record, device_cert_pem, signer_cert_pem)
        device = x509.load_pem_x509_certificate(device_pem.encode("ascii"))
        signer = x509.load_pem_x509_certificate(signer_pem.encode("ascii"))
        signer_xy = public_key_xy(certificate_public_key(signer))
        key_id = hashlib.sha1(b"\x04" + signer_xy).hexdigest().upper()
        result = await self.issue(
            IssueOp(
                time=record.time, station=record.station, device_sn=record.device_sn.upper(),
                public_key=record.public_key.upper(), issuer_key_id=key_id, signer_id="",
                signer=record.signer, cert_sn=record.cert_sn.upper(),
                device_cert=device.public_bytes(Encoding.DER),
                signer_cert=signer.public_bytes(Encoding.DER), root_cert=None,
            )
        )  # fmt: skip
        if result.action == "refused":
            raise RecordStoreError(f"the ledger refused the signing: {result.message}")

    async def log_refusal(self, record: SigningRecord) -> None:
        check_refusal_args(record)
        name, _, message = record.reason.partition(": ")
        code = next(
            (c for c in ReturnCode if c.c_name == name and c is not ReturnCode.SUCCESS),
            ReturnCode.GENERAL_ERROR,
        )
        await self.refuse(
            RefusalOp(
                time=record.time, station=record.station, device_sn=record.device_sn,
                public_key=record.public_key, signer=record.signer, code=code,
                message=message if code is not ReturnCode.GENERAL_ERROR else record.reason,
            )
        )  # fmt: skip

    async def close(self) -> None:
        if self._state != "open":
            return
        self._state = "closing"
        assert self._wakeup is not None and self._task is not None
        self._wakeup.set()
        await self._task
        for thread in (self._files_thread, self._sync_thread):
            if thread is not None:
                thread.shutdown(wait=True)  # idle: the commit loop waited for their work
        try:
            await asyncio.to_thread(self._close_sync)
        finally:
            self._state = "closed"

    # -- the commit loop -----------------------------------------------------------------------
    def enqueue(self, op: LedgerOp) -> asyncio.Future[LedgerResult]:
        """Queue ``op`` for the next batch; the future is done once the batch is durable (or
        failed: :class:`RecordStoreError`). Raises RecordStoreError at once when the store is
        not open or has failed. (``issue``/``refuse``/``report`` are this, awaited.)"""
        if self._state != "open":
            raise RecordStoreError(f"record store is {self._state}, not open")
        if self._failure is not None:
            raise RecordStoreError(f"records cannot be written: {self._failure}")
        assert self._wakeup is not None
        fut: asyncio.Future[LedgerResult] = asyncio.get_running_loop().create_future()
        self._pending.append((op, fut))
        self._wakeup.set()
        return fut

    async def _commit_loop(self) -> None:
        assert self._wakeup is not None
        files = self.files
        assert files is not None
        while True:
            timeout: float | None = None
            if self._failure is not None and not self._permanent:
                timeout = self._retry_interval
            elif (files.unsynced or self._files_done) and self._checkpoint_after is not None:
                # files written, or still being written (the files thread may not have
                # started the last batch's yet): an idle checkpoint follows
                timeout = self._checkpoint_after
            if timeout is None:
                await self._wakeup.wait()
            else:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                except asyncio.TimeoutError:
                    await self._files_written()
                    if self._failure is not None:
                        await self._try_resume()
                    elif files.unsynced:
                        await self._background(self._checkpoint_sync, "files not synced")
                    if self._state == "open":
                        continue
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: len(batch)]
                await self._commit(batch)
            if self._state != "open":
                await self._files_written()
                return

    async def _commit(self, batch: list[_Waiter]) -> None:
        if self._failure is not None:
            self._release(
                batch, None, RecordStoreError(f"records cannot be written: {self._failure}")
            )
            return
        loop = asyncio.get_running_loop()

        def durable(results: list[LedgerResult]) -> None:  # worker thread: committed
            loop.call_soon_threadsafe(self._release, batch, results, None)

        def files_failed(text: str) -> None:  # files thread: say so at once, stop signing
            loop.call_soon_threadsafe(self._files_failed, text)

        try:
            files = await asyncio.to_thread(
                self._ledger_commit_sync, [op for op, _ in batch], durable, files_failed
            )
        except LedgerWriteError as exc:
            error = RecordStoreError(str(exc))
            error.__cause__ = exc
            self._release(batch, None, error)
            self._fail(str(exc), permanent=not exc.transient)
            return
        except Exception as exc:  # a bug: every waiter gets a typed error, the store stops
            error = RecordStoreError(f"record not saved: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._release(batch, None, error)
            self._fail(f"{type(exc).__name__}: {exc}", permanent=True)
            return
        # The batch's files are written (files thread) while the next batches commit. A slow
        # moment there (a checkpoint's sync) must not hold up the commits signings wait for,
        # so the files may fall a few batches behind, never more (memory stays bounded).
        self._files_done.append(files)
        while self._files_done and (
            self._files_done[0].done() or len(self._files_done) > FILES_BATCHES_BEHIND
        ):
            await self._files_checked(self._files_done.popleft())

    async def _files_checked(self, done: Future[str | None]) -> None:
        files_error = await asyncio.wrap_future(done)
        if files_error is not None:
            self._files_failed(files_error)

    def _files_failed(self, text: str) -> None:
        self._fail(
            f"the signing log / certificate files in {self.root} cannot be written "
            f"({text}); the ledger has every record",
            permanent=False,
        )
        if self._wakeup is not None:
            self._wakeup.set()  # the commit loop starts checking for the resume

    async def _files_written(self) -> None:
        """Wait for the files of every batch committed so far, and for the checkpoint in
        flight (before other file work: an idle checkpoint, a resume, the close)."""
        while self._files_done:
            await self._files_checked(self._files_done.popleft())
        syncing, self._sync_done = self._sync_done, None
        if syncing is not None:
            await asyncio.wrap_future(syncing)

    @staticmethod
    def _release(
        batch: list[_Waiter], results: list[LedgerResult] | None, error: RecordStoreError | None
    ) -> None:
        for i, (_, fut) in enumerate(batch):
            if fut.done():  # the caller was cancelled; the record is stored anyway
                continue
            if results is not None:
                fut.set_result(results[i])
            else:
                assert error is not None
                fut.set_exception(error)

    def _fail(self, what: str, *, permanent: bool) -> None:
        if self._failure is None:
            self._failure = what
            self._permanent = permanent
            if permanent:
                self._say(
                    "error",
                    f"Records cannot be written: {what}. Signing stopped; a "
                    "restart is needed once the cause is fixed.",
                )
            else:
                self._say(
                    "error",
                    f"Records cannot be written: {what}. Signing stopped; it "
                    "resumes by itself once writes succeed again (checked every "
                    f"{self._retry_interval:g} s).",
                )

    async def _try_resume(self) -> None:
        try:
            caught_up = await asyncio.to_thread(self._resume_sync)
        except (LedgerError, OSError):
            return  # still failing: try again after retry_interval
        what = ""
        if caught_up.rows or caught_up.files:
            what = (
                f" ({caught_up.rows} signing log row(s) and {caught_up.files} certificate "
                "file(s) caught up from the ledger)"
            )
        self._failure = None
        self._say("info", f"Records can be written again{what}: signing resumed.")

    async def _background(self, work: Callable[[], None], what: str) -> None:
        try:
            await asyncio.to_thread(work)
        except OSError as exc:
            self._fail(f"{what}: {exc}", permanent=False)

    def _say(self, level: str, text: str) -> None:
        if self._console is not None:
            self._console.log(Level(level), text)

    # -- worker-thread parts -------------------------------------------------------------------
    def _open_sync(self) -> None:
        self.ledger.open()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        for marker_path in sorted(self.logs_dir.glob(".running-*")):
            if marker_path.name.endswith(".tmp"):
                marker_path.unlink()
                continue
            self._recover_marker(marker_path)
        stamp = free_stamp(self.logs_dir, self.certs_dir, self._started)
        self.stamp = stamp
        self.run_id = self.ledger.start_run(
            server=f"{socket.gethostname()} pid {os.getpid()}",
            data_dir=str(self.root.resolve()),
            stamp=stamp,
            started_at=utc_timestamp(self._started),
        )
        files = RunFiles(self.root, stamp, max_bytes=self._log_max_bytes, now=self._now)
        files.create()
        self.files = files
        self._marker = Marker(self.ledger.ledger_id, self.run_id)
        files.write_marker(self._marker)

    def _abandon_open(self) -> None:
        if self.files is not None:
            self.files.close()
        self.ledger.close()

    def _recover_marker(self, marker_path: Path) -> None:
        stamp = marker_path.name[len(".running-") :]
        data = marker_path.read_bytes()
        if not data:  # a run of the journal-based file store (before the ledger)
            recover_legacy_run(self.logs_dir, self.certs_dir, stamp, marker_path)
            self.recovered.append(RecoveredRun(stamp, 0, 0, False, legacy=True))
            return
        marker = Marker.parse(data)
        if marker is None:
            raise OSError(f"crash marker {marker_path} is not readable ({data[:60]!r})")
        if marker.ledger_id != self.ledger.ledger_id:
            self._say(
                "warning",
                f"Run {stamp} did not stop cleanly, but it wrote to another ledger (id "
                f"{marker.ledger_id}); start the server with that ledger to recover its files.",
            )
            return
        done: Recovered = recover_run(self.root, stamp, marker, self.ledger)
        self.ledger.end_run(
            marker.run_id, stopped_at=utc_timestamp(), note="did not stop cleanly; recovered"
        )
        marker_path.unlink()
        self.recovered.append(RecoveredRun(stamp, done.rows, done.files, done.cut))

    def _ledger_commit_sync(
        self,
        ops: Sequence[LedgerOp],
        durable: Callable[[list[LedgerResult]], None],
        files_failed: Callable[[str], None],
    ) -> Future[str | None]:
        """Commit ``ops`` (raises LedgerWriteError: nothing stored), release the waiters, hand
        the batch to the files thread (its future: a files failure's text, or None)."""
        results = self.ledger.commit(
            ops, run_id=self.run_id, allow_reprovision=self.allow_reprovision
        )
        self.commits += 1
        self.largest_batch = max(self.largest_batch, len(ops))
        durable(results)
        assert self._files_thread is not None
        return self._files_thread.submit(self._files_sync, results, files_failed)

    def _files_sync(
        self, results: list[LedgerResult], failed: Callable[[str], None] | None = None
    ) -> str | None:
        """Write a committed batch's signing log rows and certificate files (derived data).

        Returns the text of a file write failure (the records are in the ledger by then). After
        a failure no batch's files are written until :meth:`_resume_sync` caught them up: row
        *n* of the signing log must stay the run's *n*-th signing-log event.
        """
        if self._files_broken:
            return None  # reported already; the catch-up writes them from the ledger
        try:
            error = self._write_files_sync(results, failed)
        except Exception as exc:  # a bug: the store stops, the ledger has every record
            self._files_broken = True
            error = f"{type(exc).__name__}: {exc}"
        if error is not None and failed is not None:
            failed(error)
        return error

    def _write_files_sync(
        self, results: list[LedgerResult], failed: Callable[[str], None] | None
    ) -> str | None:
        files = self.files
        assert files is not None
        events = []
        issuances = []
        for result in results:
            if isinstance(result, IssueResult):
                if result.event is not None and result.event.kind in TSV_EVENT_KINDS:
                    events.append(result.event)
                if result.action == "issued" and result.issuance is not None:
                    issuances.append(result.issuance)
        try:
            files.append_rows(events)
            for issuance in issuances:
                files.write_certs(issuance)
            if files.unsynced >= CHECKPOINT_FILES:
                self._start_checkpoint(failed)
        except OSError as exc:
            self._files_broken = True
            return str(exc)
        self.ledger.upkeep()  # e.g. SQLite's WAL copied back, off the commit path
        return None

    def _start_checkpoint(self, failed: Callable[[str], None] | None) -> None:
        """A checkpoint under load (files thread): the files written so far are synced in the
        sync thread while this thread goes on writing; the crash marker then names what was
        written before the sync began. One at a time: while one runs, the count goes on and
        the next starts after it."""
        files = self.files
        assert files is not None
        if not files.syncs_in_background or self._sync_thread is None:
            self._checkpoint_sync()
            return
        if self._sync_done is not None and not self._sync_done.done():
            return
        marker = self._written_marker()
        files.unsynced = 0
        self._sync_done = self._sync_thread.submit(self._background_checkpoint, marker, failed)

    def _background_checkpoint(self, marker: Marker, failed: Callable[[str], None] | None) -> None:
        files = self.files
        assert files is not None
        try:
            files.sync_written()
            files.write_marker(marker)
        except Exception as exc:  # the files are caught up (and synced) by the resume
            self._files_broken = True  # (anything but OSError is a bug: reported the same)
            text = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            if failed is not None:
                failed(f"files not synced: {text}")
            return
        self._marker = marker

    def _checkpoint_sync(self) -> None:
        files = self.files
        assert files is not None
        files.sync()
        self._marker = self._written_marker()
        files.write_marker(self._marker)

    def _written_marker(self) -> Marker:
        """The crash marker naming the last event and issuance whose files are written."""
        files = self.files
        assert files is not None
        return Marker(self._marker.ledger_id, self.run_id, files.last_event, files.last_issuance)

    def _resume_sync(self) -> Recovered:
        files = self.files
        assert files is not None
        self.ledger.probe()
        done = catch_up(files, self.ledger, self.run_id)
        files.sync()
        self._files_broken = False  # the files thread is idle (drained before a resume)
        return done

    def _close_sync(self) -> None:
        files = self.files
        assert files is not None
        problems: list[str] = []
        try:
            if self._failure is not None:
                try:
                    self._resume_sync()
                    self._failure = None
                except (LedgerError, OSError) as exc:
                    problems.append(str(exc))
            else:
                try:
                    files.sync()
                except OSError as exc:
                    problems.append(f"files not synced: {exc}")
            try:
                self.ledger.end_run(self.run_id, stopped_at=utc_timestamp())
            except LedgerError as exc:
                problems.append(f"end of run not recorded: {exc}")
            if not problems:
                try:
                    files.remove_marker()
                except OSError as exc:
                    problems.append(f"crash marker not removed: {exc}")
        finally:
            files.close()
            self.ledger.close()
        if problems:
            raise RecordStoreError(
                "records not closed cleanly (" + "; ".join(problems) + "); the ledger has "
                "every record and the next start restores the signing log and certificate "
                "files from it"
            )
