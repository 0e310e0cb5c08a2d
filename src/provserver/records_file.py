"""File back-end of the record store: a TSV signing log and a certs folder, with group commit.

Layout under the data folder (app note 8971A section 2.3), for a run started at ``<stamp>``
(``YYYYmmdd-HHMMSS``, ``-N`` added if taken)::

    logs/signing-<stamp>.tsv        signing log: header row + one row per answered request
    logs/.running-<stamp>           present while the run is open (crash marker)
    certs/certs-<stamp>.pem         this run's certificate journal (append-only PEM bundle)
    certs/<DEVICE_SN>/<time>-device.pem
    certs/<DEVICE_SN>/<time>-signer.pem

Durability and group commit: requests waiting at the same moment form one batch. The batch's
certificates are appended to the journal and its rows to the TSV, each with one write, then the
journal and the TSV are fsync'd: **two fsyncs per batch**, whatever its size, and only then do
the waiting ``log_signing`` calls return. So a returned call means the row and the full
certificates are on disk. The per-device PEM files are then written from the batch (temporary
file + rename, so a file is complete or absent), without an fsync each: they are copies of
journal entries. The signer certificate is the same for many devices: its copies in a run are
hard links to the run's first copy of it (complete from the start, one file on disk instead of
one per device; creating a file costs the file system far more than adding a name). Where the
file system refuses hard links, or that first copy was changed or removed meanwhile, the copy
is written as its own file. Once the store has been idle for ``checkpoint_after`` seconds it
fsyncs the copies (and their folders) in small chunks, between batches; ``close()`` fsyncs
what is left and removes the crash marker. If the server dies first, the next ``open()``
finds the marker and recovers that run: it cuts a torn last row or journal entry, rewrites
every per-device file that is missing or differs from its journal entry (temp + fsync +
rename, as a file of its own), fsyncs the others, then removes the marker.

One worker-thread call per batch does all its file I/O (``asyncio.to_thread``), one batch at a
time, so the event loop never blocks on the disk and batches never interleave; it releases the
batch's waiters as soon as the two fsyncs are done, before it writes the copies. After an I/O
failure the store refuses every later record (``RecordStoreError``): the server must stop
handing out certificates it cannot record.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .records import (
    TSV_COLUMNS,
    RecordStore,
    RecordStoreError,
    SigningRecord,
    check_refusal_args,
    check_signing_args,
)

ENTRY_PREFIX = b"#atcaprov-cert "
PEM_END = b"-----END CERTIFICATE-----\n"
_RELPATH = re.compile(r"[0-9A-F]{2,64}/[0-9A-Za-z]{1,40}(?:-[0-9]{1,4})?-(?:device|signer)\.pem")
DEFAULT_MAX_BATCH = 512
DEFAULT_CHECKPOINT_AFTER = 1.0
CHECKPOINT_CHUNK = 32
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")
_CREATE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
)


@dataclass
class _Job:
    record: SigningRecord
    device_pem: str | None = None
    signer_pem: str | None = None


def _fsync_dir(path: str | Path) -> None:
    """Make a folder's entries (created / renamed files) durable; no-op where unsupported."""
    if os.name == "nt":  # Windows cannot open a folder for fsync; NTFS journals metadata
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file_atomic(path: Path, data: bytes, *, sync: bool) -> None:
    """Write ``path`` via a temporary file and a rename: complete or absent."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        if sync:
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_new_file(path: str, tmp: str, data: bytes) -> None:
    """:func:`_write_file_atomic` without fsync, in plain system calls (the hot path)."""
    fd = os.open(tmp, _CREATE_FLAGS, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _make_folder(path: str) -> None:
    """Create folder ``path`` (its parent exists); an existing folder is fine."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def _file_stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _fsync_file(path: str | Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def tsv_rows(records: list[SigningRecord], *, header: bool = False) -> bytes:
    """UTF-8 TSV text (``excel-tab`` dialect, CRLF) of sanitised rows, optionally the header."""
    buf = io.StringIO()
    writer = csv.writer(buf, dialect="excel-tab")
    if header:
        writer.writerow(TSV_COLUMNS)
    for record in records:
        writer.writerow(record.row())
    return buf.getvalue().encode("utf-8")


def parse_journal(data: bytes) -> tuple[list[tuple[str, bytes]], int]:
    """The complete entries of a journal (relative path, PEM bytes) and where they end.

    Parsing stops at the first incomplete or malformed entry (a torn tail after a crash).
    """
    entries: list[tuple[str, bytes]] = []
    good_end = 0
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0 or not data.startswith(ENTRY_PREFIX, pos):
            break
        relpath = data[pos + len(ENTRY_PREFIX) : nl].decode("ascii", "replace")
        if not _RELPATH.fullmatch(relpath):
            break
        end = data.find(PEM_END, nl + 1)
        if end < 0:
            break
        end += len(PEM_END)
        entries.append((relpath, data[nl + 1 : end]))
        pos = good_end = end
    return entries, good_end


class FileRecordStore(RecordStore):
    """Records in files under ``data_dir`` (see the module docstring for layout and guarantees).

    ``started`` names this run's files (default: now, UTC); ``max_batch`` caps how many waiting
    records one commit takes; ``checkpoint_after`` is the idle time (seconds) after which the
    certificate copies are fsync'd in the background (None: only at close); ``link_copies``
    makes the signer-certificate copies of a run hard links to its first one (see the module
    docstring; False: a separate file each). ``commits`` and ``largest_batch`` count what
    happened.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        started: datetime | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        checkpoint_after: float | None = DEFAULT_CHECKPOINT_AFTER,
        link_copies: bool = True,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.root = Path(data_dir)
        self.logs_dir = self.root / "logs"
        self.certs_dir = self.root / "certs"
        self._started = started or datetime.now(timezone.utc)
        self._max_batch = max_batch
        self._checkpoint_after = checkpoint_after
        self.stamp = ""
        self.tsv_path = Path()
        self.journal_path = Path()
        self.marker_path = Path()
        self.recovered: list[str] = []  # stamps of crashed runs repaired by open()
        self.commits = 0
        self.largest_batch = 0
        self._state = "new"
        self._failure: str | None = None
        self._pending: list[tuple[_Job, asyncio.Future[None]]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._tsv: io.BufferedWriter | None = None
        self._journal: io.BufferedWriter | None = None
        self._names: set[str] = set()
        self._folders: set[str] = set()  # device folders known to exist (made or found)
        self._link_copies = link_copies
        # signer certificate PEM -> (path, stamp) of this run's copy new copies link to
        self._copies: dict[bytes, tuple[str, tuple[int, int, int, int]]] = {}
        self._certs = str(self.certs_dir)
        self._unsynced: list[str] = []  # certificate copies written since the last sync

    # ---------------------------------------------------------------- async interface
    async def open(self) -> None:
        if self._state != "new":
            raise RecordStoreError(f"record store already {self._state}")
        try:
            await asyncio.to_thread(self._open_sync)
        except OSError as exc:
            self._close_handles()
            raise RecordStoreError(f"cannot open the record store in {self.root}: {exc}") from exc
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._commit_loop(), name="record-store-commit")
        self._state = "open"

    async def log_signing(
        self, record: SigningRecord, device_cert_pem: str, signer_cert_pem: str
    ) -> None:
        device, signer = check_signing_args(record, device_cert_pem, signer_cert_pem)
        await self._submit(_Job(record, device, signer))

    async def log_refusal(self, record: SigningRecord) -> None:
        check_refusal_args(record)
        await self._submit(_Job(record))

    async def close(self) -> None:
        if self._state != "open":
            return
        self._state = "closing"
        assert self._wakeup is not None and self._task is not None
        self._wakeup.set()
        await self._task
        try:
            await asyncio.to_thread(self._close_sync)
        except OSError as exc:
            raise RecordStoreError(f"cannot close the record store cleanly: {exc}") from exc
        finally:
            self._close_handles()
            self._state = "closed"

    def problem(self) -> str | None:
        if self._state != "open":
            return f"record store is {self._state}, not open"
        if self._failure is not None:
            return f"record store failed earlier: {self._failure}"
        return None

    async def _submit(self, job: _Job) -> None:
        if self._state != "open":
            raise RecordStoreError(f"record store is {self._state}, not open")
        if self._failure is not None:
            raise RecordStoreError(f"record store failed earlier: {self._failure}")
        assert self._wakeup is not None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((job, fut))
        self._wakeup.set()
        await fut

    async def _commit_loop(self) -> None:
        assert self._wakeup is not None
        while True:
            if self._unsynced and self._checkpoint_after is not None and self._failure is None:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), self._checkpoint_after)
                except asyncio.TimeoutError:  # idle: sync copies, a chunk at a time
                    while self._unsynced and self._failure is None and not self._wakeup.is_set():
                        await self._checkpoint()
                    continue
            else:
                await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: len(batch)]
                await self._commit(batch)
            if self._state != "open":
                return

    async def _commit(self, batch: list[tuple[_Job, asyncio.Future[None]]]) -> None:
        """One batch in one worker-thread call: log rows and journal (fsync'd), then copies.

        The waiters are released from the worker thread (through the loop) right after the two
        fsyncs, before the per-device copies are written, so they do not wait for those.
        """
        if self._failure is not None:
            self._release(batch, RecordStoreError(f"record store failed earlier: {self._failure}"))
            return
        loop = asyncio.get_running_loop()

        def durable() -> None:  # worker thread: the batch is on disk
            loop.call_soon_threadsafe(self._release, batch, None)

        try:
            copy_error = await asyncio.to_thread(
                self._write_batch_sync, [job for job, _ in batch], durable
            )
        except Exception as exc:  # every waiter gets a typed error; the store stops
            self._failure = f"{type(exc).__name__}: {exc}"
            error = RecordStoreError(f"record not saved: {self._failure}")
            error.__cause__ = exc
            self._release(batch, error)
            return
        if copy_error is not None:  # journal holds them; the next open() recovers the copies
            self._failure = f"certificate files not written: {copy_error}"

    @staticmethod
    def _release(
        batch: list[tuple[_Job, asyncio.Future[None]]], error: RecordStoreError | None
    ) -> None:
        for _, fut in batch:
            if fut.done():  # the waiting caller was cancelled; the record is stored anyway
                continue
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

    async def _checkpoint(self) -> None:
        try:
            await asyncio.to_thread(self._checkpoint_sync, CHECKPOINT_CHUNK)
        except OSError as exc:  # the marker stays: the next open() recovers the copies
            self._failure = f"certificate files not synced: {exc}"

    # ---------------------------------------------------------------- worker-thread parts
    def _open_sync(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        for marker in sorted(self.logs_dir.glob(".running-*")):
            stamp = marker.name[len(".running-") :]
            self._recover_sync(stamp, marker)
            self.recovered.append(stamp)
        base = self._started.strftime("%Y%m%d-%H%M%S")
        stamp = base
        for n in range(1, 1000):
            if not any(
                p.exists()
                for p in (
                    self.logs_dir / f"signing-{stamp}.tsv",
                    self.certs_dir / f"certs-{stamp}.pem",
                    self.logs_dir / f".running-{stamp}",
                )
            ):
                break
            stamp = f"{base}-{n}"
        else:
            raise OSError(f"no free signing log name for {base} in {self.logs_dir}")
        self.stamp = stamp
        self.marker_path = self.logs_dir / f".running-{stamp}"
        self.tsv_path = self.logs_dir / f"signing-{stamp}.tsv"
        self.journal_path = self.certs_dir / f"certs-{stamp}.pem"
        self.marker_path.write_bytes(b"")
        self._tsv = open(self.tsv_path, "xb")  # noqa: SIM115 - held open for the whole run
        self._tsv.write(tsv_rows([], header=True))
        self._tsv.flush()
        os.fsync(self._tsv.fileno())
        self._journal = open(self.journal_path, "xb")  # noqa: SIM115
        _fsync_dir(self.logs_dir)
        _fsync_dir(self.certs_dir)

    def _assign_path(self, folder: str, stamp: str, kind: str, *, new_folder: bool) -> str:
        """A free name in ``folder`` (``new_folder``: it does not exist yet, nothing is in it)."""
        for n in range(1000):
            name = f"{stamp}-{kind}.pem" if n == 0 else f"{stamp}-{n}-{kind}.pem"
            relpath = f"{folder}/{name}"
            if relpath not in self._names and (
                new_folder or not os.path.lexists(os.path.join(self._certs, folder, name))
            ):
                self._names.add(relpath)
                return relpath
        raise OSError(f"no free certificate file name for {folder}/{stamp}")

    def _write_batch_sync(self, jobs: list[_Job], durable: Callable[[], None]) -> str | None:
        """Commit ``jobs`` (rows + journal, fsync'd), call ``durable``, then write the copies.

        An exception means the batch is not recorded. A failure while writing the copies (the
        records are durable by then) is returned as text instead.
        """
        files = self._commit_sync(jobs)
        durable()
        try:
            self._materialize_sync(files)
        except OSError as exc:
            return str(exc)
        return None

    def _commit_sync(self, jobs: list[_Job]) -> list[tuple[str, bytes]]:
        assert self._tsv is not None and self._journal is not None
        files: list[tuple[str, bytes]] = []
        journal: list[bytes] = []
        for job in jobs:
            if job.device_pem is None or job.signer_pem is None:
                continue
            stamp = _NOT_ALNUM.sub("", job.record.time)[:40] or "cert"
            folder = job.record.device_sn.upper()
            new_folder = folder not in self._folders and not os.path.lexists(
                os.path.join(self._certs, folder)
            )
            for kind, pem in (("device", job.device_pem), ("signer", job.signer_pem)):
                relpath = self._assign_path(folder, stamp, kind, new_folder=new_folder)
                data = pem.encode("ascii")
                files.append((relpath, data))
                journal += (ENTRY_PREFIX, relpath.encode("ascii"), b"\n", data)
        if files:
            self._journal.write(b"".join(journal))
            self._journal.flush()
            os.fsync(self._journal.fileno())
        self._tsv.write(tsv_rows([job.record for job in jobs]))
        self._tsv.flush()
        os.fsync(self._tsv.fileno())
        self.commits += 1
        self.largest_batch = max(self.largest_batch, len(jobs))
        return files

    def _materialize_sync(self, files: list[tuple[str, bytes]]) -> None:
        for relpath, pem in files:
            folder, _, name = relpath.partition("/")
            folder_path = os.path.join(self._certs, folder)
            if folder not in self._folders:
                _make_folder(folder_path)
                self._folders.add(folder)
            path = os.path.join(folder_path, name)
            shared = self._link_copies and name.endswith("-signer.pem")
            if not (shared and self._link_copy(pem, path)):
                tmp = os.path.join(folder_path, f".{name}.tmp")
                try:
                    _write_new_file(path, tmp, pem)
                except FileNotFoundError:  # the folder was removed meanwhile: make it again
                    _make_folder(folder_path)
                    _write_new_file(path, tmp, pem)
                if shared:
                    self._copies[pem] = (path, _file_stamp(os.stat(path)))
            self._unsynced.append(path)

    def _link_copy(self, pem: bytes, path: str) -> bool:
        """Make ``path`` a hard link to this run's earlier copy of the same certificate.

        False (the caller writes the file) if there is none, if that copy changed or went away
        since it was written, or if the file system refuses hard links.
        """
        source = self._copies.get(pem)
        if source is None:
            return False
        source_path, stamp = source
        try:
            linked = _file_stamp(os.stat(source_path)) == stamp
            if linked:
                os.link(source_path, path)
        except OSError:  # gone, or no hard links here: the caller writes its own copy
            linked = False
        if not linked:
            del self._copies[pem]
        return linked

    def _checkpoint_sync(self, limit: int | None) -> None:
        """Fsync up to ``limit`` certificate copies (all if None) and their folders."""
        chunk = self._unsynced if limit is None else self._unsynced[:limit]
        folders: set[str] = set()
        for path in chunk:
            _fsync_file(path)
            folders.add(os.path.dirname(path))
        for folder in sorted(folders):
            _fsync_dir(folder)
        if folders:
            _fsync_dir(self.certs_dir)  # new device folders
        del self._unsynced[: len(chunk)]

    def _close_sync(self) -> None:
        if self._failure is not None:
            return  # keep the marker: the next open() repairs this run from its journal
        self._checkpoint_sync(None)
        self.marker_path.unlink()
        _fsync_dir(self.logs_dir)

    def _recover_sync(self, stamp: str, marker: Path) -> None:
        recover_legacy_run(self.logs_dir, self.certs_dir, stamp, marker)

    def _close_handles(self) -> None:
        for handle in (self._tsv, self._journal):
            if handle is not None:
                handle.close()
        self._tsv = self._journal = None


def recover_legacy_run(logs_dir: Path, certs_dir: Path, stamp: str, marker: Path) -> None:
    """Repair the files of a run that did not close (see the module docstring), remove its
    marker. Also used by the ledger store for runs of this store found in a data folder."""
    tsv = logs_dir / f"signing-{stamp}.tsv"
    if tsv.exists():
        data = tsv.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            with open(tsv, "r+b") as fh:
                fh.truncate(keep)
        _fsync_file(tsv)
    journal = certs_dir / f"certs-{stamp}.pem"
    if journal.exists():
        entries, good_end = parse_journal(journal.read_bytes())
        if good_end != journal.stat().st_size:
            with open(journal, "r+b") as fh:
                fh.truncate(good_end)
        _fsync_file(journal)
        folders: set[Path] = set()
        for relpath, pem in entries:
            path = certs_dir / relpath
            path.parent.mkdir(exist_ok=True)
            if path.exists() and path.read_bytes() == pem:
                _fsync_file(path)
            else:
                _write_file_atomic(path, pem, sync=True)
            folders.add(path.parent)
            (path.parent / f".{path.name}.tmp").unlink(missing_ok=True)
        for folder in sorted(folders):
            _fsync_dir(folder)
        _fsync_dir(certs_dir)
    marker.unlink()
    _fsync_dir(logs_dir)
