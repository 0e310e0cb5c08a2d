"""Retention of the server's log files: the activity log rotates, old log files are removed.

* :class:`RotatingActivityLog` is the console's sink for the activity log: a new
  ``logs/activity-YYYYmmdd-HHMMSS.log`` at the first line of each new (local) day and, with a
  size limit, when the current file has reached it. The last line of a file names the next one,
  the first line of the next names the one before.
* :func:`prune_logs` removes the activity logs and signing logs (``signing-<stamp>.tsv``) not
  written for ``keep_days`` days. It never touches the signing log file a run is writing, or
  will be recovered into after a crash (the one its ``.running-<stamp>`` marker names), the
  activity log being written, the certificates folder or the ledger: **the ledger is never
  pruned** (a signing log removed here can be written again from the ledger with
  ``provserver records export``). The files a run's signing log rotated out of are closed and
  complete: recovery never reads them, so they go with age like any other.
  (The signing log's own rotation lives with the rest of the run's files in
  :mod:`provserver.ledger.files`.)
* :func:`retention_task` runs :func:`prune_logs` at start and then every ``interval`` seconds
  while the server runs, saying on the console what it removed.

Every clock is injected (``now``), so that tests need not wait for days.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

from .console import Console
from .ledger.files import read_marker
from .paths import DataDir

PRUNE_INTERVAL_S = 3600.0
_LOG_NAME = re.compile(r"(?:activity-\d{8}-\d{6}(?:-\d+)?\.log|signing-.+\.tsv)\Z")
_DAY_S = 86400.0


class RotatingActivityLog:
    """A text sink writing ``logs/activity-*.log``, rotated per day and optionally by size.

    ``now`` gives the local time (``datetime.now`` by default). Lines are written whole: the
    rotation happens before a line that starts a new day or would go past ``max_bytes``.
    ``opened`` is called with each new file's path (the first one included); ``started``
    names the first file (default: ``now()``).
    """

    def __init__(
        self,
        data: DataDir,
        *,
        max_bytes: int | None = None,
        now: Callable[[], datetime] = datetime.now,
        opened: Callable[[Path], None] | None = None,
        started: datetime | None = None,
    ) -> None:
        self._data = data
        self._max_bytes = max_bytes
        self._now = now
        self._opened = opened
        self._file: TextIO | None = None
        self._size = 0
        first = now() if started is None else started
        self._day = first.date()
        self.path = self._open(first)
        self.paths = [self.path]  # every file this sink wrote, in order

    def _open(self, when: datetime) -> Path:
        path = self._data.activity_log_path(when)
        self._file = path.open("x", encoding="utf-8")
        self._size = 0
        self._day = when.date()
        if self._opened is not None:
            self._opened(path)
        return path

    def write(self, text: str) -> int:
        if self._file is None:
            raise ValueError("the activity log is closed")
        moment = self._now()
        size = len(text.encode("utf-8"))
        if self._size and (
            moment.date() != self._day
            or (self._max_bytes is not None and self._size + size > self._max_bytes)
        ):
            self._rotate(moment)
        self._file.write(text)
        self._size += size
        return len(text)

    def _rotate(self, moment: datetime) -> None:
        assert self._file is not None
        old = self.path
        new = self._data.activity_log_path(moment)
        self._file.write(f"[continued in {new.name}]\n")
        self._file.close()
        self._file = None
        self.path = self._open(moment)
        self.paths.append(self.path)
        line = f"[continued from {old.name}]\n"
        assert self._file is not None  # reopened by _open
        self._file.write(line)
        self._size += len(line)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None

    @property
    def closed(self) -> bool:
        return self._file is None


def prune_logs(
    logs: Path,
    keep_days: float,
    *,
    now: float | None = None,
    keep: Callable[[Path], bool] = lambda path: False,
) -> list[Path]:
    """Remove activity and signing logs last written more than ``keep_days`` days ago.

    Skipped: files ``keep`` says to keep (the activity log being written), the signing log
    file of each open or crashed run (named by its ``.running-<stamp>`` marker), anything else
    in the folder. Returns the files removed; a file that cannot be removed is left (and not
    listed).
    """
    cutoff = (time.time() if now is None else now) - keep_days * _DAY_S
    removed: list[Path] = []
    try:
        entries = sorted(os.scandir(logs), key=lambda e: e.name)
    except FileNotFoundError:
        return removed
    runs = _open_signing_logs(entries)
    for entry in entries:
        if not _LOG_NAME.match(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if keep(path) or entry.name in runs:
            continue
        with contextlib.suppress(FileNotFoundError):
            if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError:
            continue  # left for the next pass; the console line counts what went
        removed.append(path)
    return removed


def _open_signing_logs(entries: list[os.DirEntry[str]]) -> set[str]:
    """The signing log file names the runs with a crash marker write or recover into.

    A marker that cannot be read (a journal-store run's is empty) protects the run's first
    file, ``signing-<stamp>.tsv``, as does every marker of a run that never rotated.
    """
    names: set[str] = set()
    for entry in entries:
        if not entry.name.startswith(".running-") or entry.name.endswith(".tmp"):
            continue
        stamp = entry.name[len(".running-") :]
        marker = read_marker(Path(entry.path))
        names.add(f"signing-{stamp}.tsv" if marker is None else marker.signing_log(stamp))
    return names


def prune_and_report(
    console: Console,
    logs: Path,
    keep_days: float,
    *,
    now: float | None = None,
    keep: Callable[[Path], bool] = lambda path: False,
) -> list[Path]:
    """:func:`prune_logs`, and one console line naming what was removed (none: no line)."""
    removed = prune_logs(logs, keep_days, now=now, keep=keep)
    if removed:
        names = ", ".join(p.name for p in removed[:5])
        more = f" and {len(removed) - 5} more" if len(removed) > 5 else ""
        console.info(
            f"Removed {len(removed)} log file(s) not written for {keep_days:g} days "
            f"(--keep-days): {names}{more}. The ledger keeps every record."
        )
    return removed


async def retention_task(
    console: Console,
    logs: Path,
    keep_days: float,
    *,
    keep: Callable[[Path], bool] = lambda path: False,
    interval: float = PRUNE_INTERVAL_S,
    now: Callable[[], float] = time.time,
) -> None:
    """Prune at once, then every ``interval`` seconds, until cancelled."""
    while True:
        await asyncio.to_thread(prune_and_report, console, logs, keep_days, now=now(), keep=keep)
        await asyncio.sleep(interval)
