"""One server per data folder: an exclusive lock on ``<data dir>/.provserver.lock``.

The lock is taken before anything else in the folder is touched (activity log, ledger, crash
recovery) and held until the server has closed its records. It is an operating-system lock on
an open file (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows), so it goes away with
the process however that ends: a crashed server never leaves a stale lock, and its run is
recovered by the next server that gets the lock. The file holds the pid of the holder, for the
message a second server prints::

    data folder /var/lib/provserver is in use by provserver pid 4242

A child given the lock's descriptor (the commit writer process) holds it until it ends too:
when the pid in the file names no process, the message says that the holder is finishing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from types import TracebackType

from atcaprov.errors import AtcaprovError

LOCK_FILE = ".provserver.lock"
_PID_BYTES = 32


class DataFolderInUseError(AtcaprovError):
    """Another server holds the data folder (``pid``: its process id, 0 if unknown)."""

    def __init__(self, folder: Path, pid: int) -> None:
        self.folder = folder
        self.pid = pid
        who = f"provserver pid {pid}" if pid else "another provserver"
        text = f"data folder {folder} is in use by {who}"
        if pid and _ended(pid):
            # the lock is still held, so a process given it lives on: the commit writer child
            # of a server that was killed, finishing before it ends (a moment)
            text += (
                " (that process has ended; its commit writer still holds the folder and lets "
                "it go when it ends: try again in a moment)"
            )
        super().__init__(text)


class DataFolderLockError(AtcaprovError):
    """The lock file cannot be created or locked (permissions, read-only folder)."""


class DataFolderLock:
    """The exclusive lock of one data folder. ``acquire()`` ... ``release()`` or ``with``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None
        self._created_file = False
        self._created_folder = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def fileno(self) -> int | None:
        """The locked file's descriptor (a child process given it keeps the folder locked
        until it ends too), or None when not held."""
        return self._fd

    def acquire(self) -> None:
        """Take the lock or raise :class:`DataFolderInUseError` at once (never waits)."""
        if self._fd is not None:
            return
        try:
            self._created_folder = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            self._created_file = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise DataFolderLockError(
                f"cannot create the lock file {self.path}: {exc.strerror or exc}"
            ) from exc
        try:
            if not _try_lock(fd):
                pid = _read_pid(fd)
                raise DataFolderInUseError(self.folder, pid)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        # best effort: the pid is only for a second server's message (disk full: no pid text)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            _write_at_start(fd, os.getpid())

    def release(self, *, remove_if_created: bool = False) -> None:
        """Let the folder go. ``remove_if_created`` (a start that failed): the lock file and the
        folder are removed again if this lock created them (the folder only if it is empty),
        so a failed start leaves the folder as it was."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if remove_if_created and self._created_file:
            with contextlib.suppress(OSError):
                self.path.unlink()  # still locked by us: nobody else holds it
            if self._created_folder:
                with contextlib.suppress(OSError):
                    self.folder.rmdir()
        _unlock(fd)
        os.close(fd)

    def __enter__(self) -> DataFolderLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _ended(pid: int) -> bool:
    """True when no process ``pid`` exists (POSIX; elsewhere it is never claimed)."""
    if os.name != "posix":
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's process: it exists
        return False
    return False


def _read_pid(fd: int) -> int:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, _PID_BYTES).decode("ascii", "replace").strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def _write_at_start(fd: int, pid: int) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{pid}\n".encode("ascii"))


if sys.platform == "win32":  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        # lock a byte far past the pid text, so that reading the pid is not blocked
        os.lseek(fd, 1 << 20, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 1 << 20, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:  # closing the file releases it anyway
            return

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
