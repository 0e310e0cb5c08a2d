"""The app note's files of one server run, written from ledger rows: signing log and certs/.

Layout under the data folder (app note 8971A section 2.3), for a run started at ``<stamp>``::

    logs/signing-<stamp>.tsv                 header + one row per answered certificate request
                                             (signed, reissued, refused), in ledger event order
    logs/signing-<later>.tsv                 the same log continued: a new file (same header) at
                                             the first row of each new local day and, with a
                                             size limit, before a row that would pass it
    logs/.running-<stamp>                    present while the run is open (crash marker; once
                                             the log rotated it also names the file being
                                             written and the last event of the files before)
    certs/<day>/<DEVICE_SN>-<time>-device.pem  each new issuance's device certificate, in a
                                             folder per (UTC) day of issue (``2026-12-01``)
    certs/<day>/<DEVICE_SN>-<time>-signer.pem  ... and its signer certificate (a hard link to
                                             the run's first copy of the same certificate
                                             where the file system allows)

One folder per day, not per device: creating a folder and the first file in it costs the file
system several times what a file in an existing folder costs (on ext4, about 0.3 ms of kernel
time per device against 0.07 ms; ``bench/bench_server.py``), and a day's folder is what a
factory hands over. ``provserver records show SERIAL`` gives one device's whole history.

These are derived data: the ledger holds every row and certificate first (durable before any
certificate leaves), the files are written right after each batch commit with plain system
calls (``os.write``: a failed write is never replayed later, unlike a buffered file object),
each new certificate file by one exclusive create (no look-up first, no temporary file: a
crash can leave it short, and the catch-up recognises a short copy and rewrites it). They are
synced at checkpoints (idle, or every :data:`CHECKPOINT_FILES` files: :meth:`RunFiles.
sync_written` from a thread of its own while the writer goes on) and at close, and each new
certificate file's write-back is started when it is written (no burst of thousands at a
sync); the crash marker records the last checkpoint, and :func:`recover_run` brings a run's
files back in line with the ledger after a crash or after writes failed: it cuts a torn last
row, appends the rows the log lacks (counted: row *n* of the log is the *n*-th signing-log
event of the run) and rewrites every certificate file after the checkpoint that is missing or
differs.

Rotation keeps that count exact without reading the closed files: before the first row of a
new file, the file before is synced and the marker is rewritten to name the new file and the
id of the last event whose row is in the files before it (``tsv_after``). Row *n* of the file
being written is then the run's *n*-th signing-log event after ``tsv_after``; recovery counts
that one file, whatever became of the closed ones (``--keep-days`` may remove them). A crash
between the marker and the new file's first row leaves the file missing or with its header
only: recovery creates it and appends the rows.

Memory stays flat: a run keeps counters and the last ids written, never a list of devices.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from ..records import SigningRecord, der_to_pem
from ..records_file import tsv_rows
from .base import Ledger
from .model import TSV_EVENT_KINDS, Event, Issuance, RecordFilter

CHECKPOINT_FILES = 20_000  # certificate files written between two syncs at most
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")
_MARKER = re.compile(
    rb"atcaprov-run ledger=([0-9a-f]+) run=(\d+)(?: event=(\d+) issuance=(\d+))?"
    rb"(?: tsv=(signing-[0-9-]+\.tsv) after=(\d+))?\n"
)
_CREATE = (
    os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
)
_CREATE_NEW = _CREATE | os.O_EXCL
_APPEND = os.O_WRONLY | os.O_APPEND | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_LINK_CACHE = 16
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def fsync_dir(path: str | Path) -> None:
    """Make a folder's entries durable; no-op where folders cannot be synced (Windows)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pem(der: bytes) -> bytes:
    return der_to_pem(der).encode("ascii")


_signer_pem = functools.lru_cache(maxsize=_LINK_CACHE)(_pem)
"""The PEM of a signer certificate: the same few, again and again (bounded)."""


@dataclass(frozen=True)
class Marker:
    """What the crash marker of a run says."""

    ledger_id: str
    run_id: int
    synced_event: int = 0  # signing-log events up to this id were synced
    synced_issuance: int = 0  # certificate files up to this issuance id were synced
    tsv: str = ""  # the signing log being written, once it rotated ("": signing-<stamp>.tsv)
    tsv_after: int = 0  # the last event whose row is in a file before ``tsv``

    def to_bytes(self) -> bytes:
        rotated = f" tsv={self.tsv} after={self.tsv_after}" if self.tsv else ""
        return (
            f"atcaprov-run ledger={self.ledger_id} run={self.run_id} "
            f"event={self.synced_event} issuance={self.synced_issuance}{rotated}\n"
        ).encode("ascii")

    @classmethod
    def parse(cls, data: bytes) -> Marker | None:
        m = _MARKER.fullmatch(data)
        if m is None:
            return None
        return cls(
            m.group(1).decode("ascii"),
            int(m.group(2)),
            int(m.group(3) or 0),
            int(m.group(4) or 0),
            (m.group(5) or b"").decode("ascii"),
            int(m.group(6) or 0),
        )

    def signing_log(self, stamp: str) -> str:
        """The name of the signing log file this marker's run writes (or recovers into)."""
        return self.tsv or f"signing-{stamp}.tsv"


def read_marker(path: Path) -> Marker | None:
    """The marker in ``path`` (None: empty, a journal-store run's, or unreadable)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return Marker.parse(data)


@dataclass(frozen=True)
class Recovered:
    """What :func:`recover_run` (or a catch-up) restored."""

    stamp: str
    rows: int  # signing-log rows appended
    files: int  # certificate files (re)written
    cut: bool  # a torn last row was cut


class RunFiles:
    """The signing log and certificate files of one run (see the module docstring).

    ``max_bytes``: start a new signing log before a row that would take the current one past
    this size (None: no limit). ``now``: the local clock of the per-day rotation (None: the
    log never rotates, as when a crashed run is recovered). ``tsv`` and ``tsv_after``: the file
    being written and the last event of the files before it, from the crash marker.
    """

    def __init__(
        self,
        data_dir: Path,
        stamp: str,
        *,
        max_bytes: int | None = None,
        now: Callable[[], datetime] | None = None,
        tsv: str = "",
        tsv_after: int = 0,
    ) -> None:
        self.root = Path(data_dir)
        self.logs = self.root / "logs"
        self.certs = self.root / "certs"
        self.stamp = stamp
        self.tsv_path = self.logs / (tsv or f"signing-{stamp}.tsv")
        self.tsv_after = tsv_after  # last event whose row is in a file before tsv_path
        self.marker_path = self.logs / f".running-{stamp}"
        self._certs = str(self.certs)
        self._max_bytes = max_bytes
        self._now = now
        self._day: date | None = None  # local day the current signing log was started
        self._marker: Marker | None = None  # as last written
        self._fd: int | None = None
        self._size = 0  # bytes of complete rows in the log
        self.rows = 0  # rows in the current log file (without the header)
        self.last_event = tsv_after  # id of the last event whose row is in the log
        self.last_issuance = 0  # id of the last issuance whose files are written
        self.unsynced = 0  # certificate files written since the last sync
        self._links: dict[bytes, tuple[str, tuple[int, int, int, int]]] = {}
        self._per_file_sync = not hasattr(os, "sync")
        self._marker_lock = threading.Lock()

    # -- the signing log ---------------------------------------------------------------------
    def create(self) -> None:
        """Create the current signing log file with its header row (synced)."""
        fd = os.open(self.tsv_path, _CREATE | os.O_EXCL, 0o666)
        try:
            header = tsv_rows([], header=True)
            write_all(fd, header)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            self.tsv_path.unlink(missing_ok=True)
            raise
        os.close(fd)
        self._fd = os.open(self.tsv_path, _APPEND)
        self._size = len(header)
        self.rows = 0
        if self._now is not None and self._day is None:
            self._day = self._now().date()

    def reopen(self) -> bool:
        """Open an existing log for appending: cut a torn last row, count the rows.

        Creates the log (header only) if it is missing or empty. Returns True if a torn row was
        cut.
        """
        cut = False
        if not self.tsv_path.exists() or self.tsv_path.stat().st_size == 0:
            self.tsv_path.unlink(missing_ok=True)
            self.create()
            return False
        size, newlines, last_nl = 0, 0, -1
        with open(self.tsv_path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                newlines += chunk.count(b"\n")
                at = chunk.rfind(b"\n")
                if at >= 0:
                    last_nl = size + at
                size += len(chunk)
        keep = last_nl + 1
        if keep != size:
            with open(self.tsv_path, "r+b") as fh:
                fh.truncate(keep)
                os.fsync(fh.fileno())
            cut = True
        if keep == 0:  # not even the header survived
            self.tsv_path.unlink()
            self.create()
            return cut
        self._fd = os.open(self.tsv_path, _APPEND)
        self._size = keep
        self.rows = max(0, newlines - 1)
        if self._now is not None and self._day is None:
            self._day = self._now().date()
        return cut

    def ensure_open(self) -> None:
        """Open the current log again after a rotation that could not finish (disk full).

        The marker naming it is written first: no row goes into a file the marker does not
        name.
        """
        if self._fd is not None:
            return
        if self._marker is not None:
            self.write_marker(self._marker)
        self.reopen()

    def append_rows(self, events: Iterable[Event]) -> int:
        """Append the rows of these signing-log events; returns how many.

        One write when they fit in the current file; otherwise the log rotates between two
        rows (never inside one). On failure the log is cut back to its last complete row where
        possible and OSError is raised: no part of the failed rows stays to be written later.
        """
        listed = list(events)
        if not listed:
            return 0
        self.ensure_open()
        records: list[SigningRecord] = [event.tsv_record() for event in listed]
        data = tsv_rows(records)
        moment = self._now() if self._now is not None else None
        if not self._new_day(moment) and (
            self._max_bytes is None or self._size + len(data) <= self._max_bytes
        ):
            self._write(data, len(listed), listed[-1].id)
            return len(listed)
        for event, record in zip(listed, records, strict=True):
            row = tsv_rows([record])
            if self._rotates(moment, len(row)):
                self._rotate(moment)
            self._write(row, 1, event.id)
        return len(listed)

    def _new_day(self, moment: datetime | None) -> bool:
        return moment is not None and self._day is not None and moment.date() != self._day

    def _rotates(self, moment: datetime | None, size: int) -> bool:
        """Whether a new file starts before a row of ``size`` bytes written at ``moment``."""
        return self._new_day(moment) or (
            self._max_bytes is not None and self.rows > 0 and self._size + size > self._max_bytes
        )

    def _write(self, data: bytes, rows: int, last_event: int) -> None:
        assert self._fd is not None, "signing log not open"
        try:
            write_all(self._fd, data)
        except OSError:
            with contextlib.suppress(OSError):  # else the next recovery cuts the torn row
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)
        self.rows += rows
        self.last_event = last_event

    def _rotate(self, moment: datetime | None) -> None:
        """Close the current file (synced) and start the next: marker first, then the file.

        Once the marker may name the new file, no row goes to the old one any more; if the
        marker or the new file cannot be written, :meth:`ensure_open` finishes the job later.
        """
        assert self._fd is not None
        os.fsync(self._fd)  # the closed file's rows are durable before the marker says so
        when = moment if moment is not None else datetime.now()
        stamp = free_stamp(self.logs, self.certs, when.astimezone(timezone.utc))
        path = self.logs / f"signing-{stamp}.tsv"
        fd, self._fd = self._fd, None
        os.close(fd)
        self.tsv_path, self.tsv_after = path, self.last_event
        self.rows, self._size = 0, 0
        self._day = when.date() if self._now is not None else None
        if self._marker is not None:
            self.write_marker(self._marker)
        self.create()

    # -- certificate files -------------------------------------------------------------------
    def _names(self, issuance: Issuance, kind: str) -> tuple[str, str]:
        return cert_file_names(self._certs, issuance, kind)

    def write_certs(self, issuance: Issuance) -> int:
        """Write the device and signer certificate files of an issuance (if not there yet).

        Returns how many files were written. The file name is the issue time; if that name
        holds another certificate (two issuances of one device in the same microsecond, or a
        file changed by hand) the issuance id is added to the name. A file that holds the
        start of this certificate only (a write a crash cut short: empty, a prefix, or a
        prefix followed by zero bytes) is this issuance's own: it is rewritten whole.
        """
        written = 0
        for kind, der in (("device", issuance.device_cert), ("signer", issuance.signer_cert)):
            data = _signer_pem(der) if kind == "signer" else _pem(der)
            primary, alternate = self._names(issuance, kind)
            if self._create(primary, data, link=kind == "signer"):
                written += 1
                continue
            existing = _head(primary, len(data) + 1)
            if existing == data:
                continue
            if existing is not None and _torn(existing, data):
                self._replace(primary, data)
                written += 1
            elif _head(alternate, len(data) + 1) != data:
                self._replace(alternate, data)
                written += 1
        self.last_issuance = max(self.last_issuance, issuance.id)
        return written

    def _create(self, path: str, data: bytes, *, link: bool) -> bool:
        """Create ``path`` holding ``data`` (a hard link to the run's earlier copy of the same
        certificate where one exists); False if ``path`` exists. One ``open`` with
        ``O_EXCL``, no look-up first and no rename: a crash can leave the file short, which
        :meth:`write_certs` recognises and rewrites when the catch-up comes back to it."""
        if link and self._link(data, path):
            self.unsynced += 1
            return True
        try:
            fd = os.open(path, _CREATE_NEW, 0o666)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, _CREATE_NEW, 0o666)
        except FileExistsError:
            return False
        self._fill(fd, path, data)
        if link:
            self._remember(data, path)
        self.unsynced += 1
        return True

    def _replace(self, path: str, data: bytes) -> None:
        """Put ``data`` at ``path`` through a temporary file and a rename (complete or absent)."""
        folder = os.path.dirname(path)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp")
        try:
            fd = os.open(tmp, _CREATE, 0o666)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, _CREATE, 0o666)
        self._fill(fd, tmp, data)
        os.replace(tmp, path)
        self.unsynced += 1

    def _fill(self, fd: int, path: str, data: bytes) -> None:
        """Write ``data`` to the new file ``fd`` and close it; on failure remove ``path``."""
        try:
            write_all(fd, data)
            if self._per_file_sync:
                os.fsync(fd)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):  # a failing disk: the next recovery cleans up
                os.unlink(path)
            raise
        os.close(fd)

    def _remember(self, data: bytes, path: str) -> None:
        if len(self._links) >= _LINK_CACHE:
            self._links.clear()
        self._links[data] = (path, _file_stamp(os.stat(path)))

    def _link(self, data: bytes, path: str) -> bool:
        """Make ``path`` a hard link to this run's earlier copy of the same certificate; False
        if there is no such copy (or it changed, or links cannot be made here) or if ``path``
        exists."""
        source = self._links.get(data)
        if source is None:
            return False
        try:
            ok = _file_stamp(os.stat(source[0])) == source[1]
            if ok:
                os.link(source[0], path)
        except FileExistsError:
            return False
        except FileNotFoundError:
            folder = os.path.dirname(path)
            if not os.path.isdir(folder):
                os.makedirs(folder, exist_ok=True)
                return self._link(data, path)
            ok = False
        except OSError:  # no hard links here, or the copy changed: write a file instead
            ok = False
        if not ok:
            del self._links[data]
        return ok

    # -- durability ----------------------------------------------------------------------------
    def sync(self) -> None:
        """Make the log and every file written so far durable."""
        if self._fd is not None:
            os.fsync(self._fd)
        if self.unsynced and not self._per_file_sync:
            self.sync_written()
        self.unsynced = 0

    @property
    def syncs_in_background(self) -> bool:
        """Whether :meth:`sync_written` can make the files durable from another thread while
        this one goes on writing (where the system syncs everything at once: ``os.sync``)."""
        return not self._per_file_sync

    def sync_written(self) -> None:
        """Make every file written before this call durable, the signing log included, from
        any thread (``os.sync``: the whole system's written data, this run's open log too).
        Only where :attr:`syncs_in_background`; the writer thread goes on meanwhile."""
        os.sync()
        fsync_dir(self.certs)

    def write_marker(self, marker: Marker) -> None:
        """Write the crash marker (atomically, synced), naming the signing log being written.

        Thread-safe: a background checkpoint (:meth:`sync_written`, then this) and a rotation
        of the log may write it at the same moment; each write names the log file being
        written at the time it is made."""
        with self._marker_lock:
            first = self.tsv_path.name == f"signing-{self.stamp}.tsv"
            marker = dataclasses.replace(
                marker,
                tsv="" if first else self.tsv_path.name,
                tsv_after=0 if first else self.tsv_after,
            )
            self._marker = marker
            tmp = self.marker_path.with_name(self.marker_path.name + ".tmp")
            fd = os.open(tmp, _CREATE, 0o666)
            try:
                write_all(fd, marker.to_bytes())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.marker_path)
            fsync_dir(self.logs)

    def remove_marker(self) -> None:
        self.marker_path.unlink(missing_ok=True)
        fsync_dir(self.logs)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def cert_file_names(certs: str, issuance: Issuance, kind: str) -> tuple[str, str]:
    """The file an issuance's ``kind`` ("device"/"signer") certificate goes to, and the name
    used instead when that one holds another certificate: ``certs/<day>/<SN>-<time>-<kind>.pem``
    (``<day>`` the UTC day of issue, ``<time>`` its timestamp's digits)."""
    stamp = _NOT_ALNUM.sub("", issuance.issued_at)[:40] or "cert"
    day = issuance.issued_at[:10]
    if not _DAY.fullmatch(day):
        day = "undated"
    sn = _NOT_ALNUM.sub("", issuance.device_sn.upper())[:64] or "unknown"
    folder = os.path.join(certs, day)
    return (
        os.path.join(folder, f"{sn}-{stamp}-{kind}.pem"),
        os.path.join(folder, f"{sn}-{stamp}-{issuance.id}-{kind}.pem"),
    )


def free_stamp(logs: Path, certs: Path, when: datetime) -> str:
    """``YYYYmmdd-HHMMSS`` of ``when`` for a new signing log, ``-N`` added while that stamp's
    signing log, run marker or journal-store certificate file exists."""
    base = when.strftime("%Y%m%d-%H%M%S")
    stamp = base
    for n in range(1, 1000):
        taken = (
            logs / f"signing-{stamp}.tsv",
            logs / f".running-{stamp}",
            certs / f"certs-{stamp}.pem",
        )
        if not any(p.exists() for p in taken):
            return stamp
        stamp = f"{base}-{n}"
    raise OSError(f"no free signing log name for {base} in {logs}")


def _head(path: str, size: int) -> bytes | None:
    """Up to ``size`` first bytes of ``path``; None if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError:
        return None


def _torn(existing: bytes, data: bytes) -> bool:
    """``existing`` is what a cut-short write of ``data`` leaves: a prefix of it, possibly
    followed by zero bytes (a file whose size reached the disk before its data)."""
    kept = existing.rstrip(b"\0")
    return len(existing) <= len(data) and data.startswith(kept)


def _file_stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def catch_up(files: RunFiles, ledger: Ledger, run_id: int) -> Recovered:
    """Bring ``files`` (open) in line with the ledger's rows of ``run_id``.

    Appends the signing-log rows after the ``files.rows`` first ones of the current file (the
    events up to ``files.tsv_after`` are in the files before it); writes the certificate
    files missing for the issuances after ``files.last_issuance``. Raises OSError /
    LedgerError if that cannot be done now.
    """
    rows = 0
    batch: list[Event] = []
    files.ensure_open()
    skip = files.rows
    files.last_event = files.tsv_after
    for event in ledger.iter_events(
        RecordFilter(kinds=TSV_EVENT_KINDS), run_id=run_id, after_id=files.tsv_after
    ):
        if skip:
            skip -= 1
            files.last_event = event.id
            continue
        batch.append(event)
        if len(batch) >= 500:
            rows += files.append_rows(batch)
            batch = []
    rows += files.append_rows(batch)
    written = 0
    for issuance in ledger.iter_issuances(run_id=run_id, after_id=files.last_issuance):
        written += files.write_certs(issuance)
    return Recovered(files.stamp, rows, written, False)


def recover_run(data_dir: Path, stamp: str, marker: Marker, ledger: Ledger) -> Recovered:
    """Repair the files of a run that did not close; the marker stays (the caller removes it)."""
    files = RunFiles(data_dir, stamp, tsv=marker.tsv, tsv_after=marker.tsv_after)
    try:
        cut = files.reopen()
        files.last_issuance = marker.synced_issuance
        done = catch_up(files, ledger, marker.run_id)
        files.sync()
        for tmp in files.certs.glob("*/.*.tmp"):
            tmp.unlink(missing_ok=True)
    finally:
        files.close()
    return Recovered(stamp, done.rows, done.files, cut)
