"""The station log: one tab-separated row per board, appended to a file per day.

Every board the client finishes (provisioned, failed, removed mid-run, already provisioned,
verified, interrupted) leaves a row in ``<folder>/station-YYYY-MM-DD.tsv`` (the local date of
the row), written as soon as the board is done and flushed to disk, so that a shift's record
survives a crash or a pulled plug. A new file starts with a header row::

    time  station  board  serial_number  result  stage  error_code  error  part_state
    elapsed_s  version

``time`` is local time with its UTC offset (``2024-05-01T08:15:02+02:00``), ``version`` the
client's version. Values come partly from outside (server error text, kit text): they go
through :func:`atcaprov.text.printable` (tabs, newlines and escape sequences are shown escaped,
so a row stays one row) and a value that a spreadsheet would take for a formula gets a leading
apostrophe.

Default folder, per user (``--log-dir`` changes it):

* Linux and other POSIX: ``$XDG_DATA_HOME/atcaprov/provclient-cdc`` (``~/.local/share/...``);
* macOS: ``~/Library/Application Support/atcaprov/provclient-cdc``;
* Windows: ``%LOCALAPPDATA%\\atcaprov\\provclient-cdc``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from atcaprov import __version__
from atcaprov.errors import AtcaprovError
from atcaprov.text import printable

from .output import BoardResult

APP_FOLDER = "atcaprov"
CLIENT_FOLDER = "provclient-cdc"
COLUMNS = (
    "time",
    "station",
    "board",
    "serial_number",
    "result",
    "stage",
    "error_code",
    "error",
    "part_state",
    "elapsed_s",
    "version",
)
MAX_FIELD_CHARS = 1024
_FORMULA_START = ("=", "+", "-", "@")


class StationLogError(AtcaprovError):
    """The station log folder or today's file cannot be created or written."""


def default_log_dir(
    *, platform: str | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """The per-user folder of the station logs for ``platform`` (default: this one)."""
    plat = sys.platform if platform is None else platform
    env = os.environ if environ is None else environ
    if plat.startswith("win"):
        base = env.get("LOCALAPPDATA") or str(
            Path(env.get("USERPROFILE") or Path.home()) / "AppData" / "Local"
        )
        return Path(base) / APP_FOLDER / CLIENT_FOLDER
    home = Path(env.get("HOME") or Path.home())
    if plat == "darwin":
        return home / "Library" / "Application Support" / APP_FOLDER / CLIENT_FOLDER
    xdg = env.get("XDG_DATA_HOME")
    base_dir = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base_dir / APP_FOLDER / CLIENT_FOLDER


def log_field(value: object) -> str:
    """One TSV cell: escaped control characters, no formula start, at most 1024 characters."""
    text = "" if value is None else printable(str(value))
    if text.startswith(_FORMULA_START):
        text = "'" + text
    if len(text) > MAX_FIELD_CHARS:
        text = text[: MAX_FIELD_CHARS - 1] + "…"
    return text


def result_row(result: BoardResult, when: datetime) -> list[str]:
    """The row of one board, in :data:`COLUMNS` order."""
    error = result.server_message or result.error_message
    values: list[object] = [
        when.isoformat(timespec="seconds"),
        result.station_id,
        result.board,
        result.serial_number,
        result.result,
        result.stage.name if result.stage is not None else "",
        result.error_code,
        error,
        result.part_state,
        f"{result.elapsed_s:.3f}",
        __version__,
    ]
    return [log_field(v) for v in values]


class StationLog:
    """Appends board rows to ``folder/station-YYYY-MM-DD.tsv`` (one file per local day)."""

    def __init__(
        self, folder: Path, *, clock: Callable[[], datetime] = lambda: datetime.now().astimezone()
    ) -> None:
        self.folder = folder
        self._clock = clock

    def path_for(self, when: datetime) -> Path:
        return self.folder / f"station-{when:%Y-%m-%d}.tsv"

    @property
    def today(self) -> Path:
        return self.path_for(self._clock())

    def check(self) -> Path:
        """Create the folder and today's file if needed and make sure it can be appended to
        (called at start, before any board); returns today's file."""
        path = self.today
        self._append(path, b"")
        return path

    def write(self, result: BoardResult) -> Path:
        """Append ``result``'s row (with a header first in a new file); returns the file."""
        when = self._clock()
        path = self.path_for(when)
        row = "\t".join(result_row(result, when)) + "\n"
        self._append(path, row.encode("utf-8"))
        return path

    def _append(self, path: Path, data: bytes) -> None:
        header = ("\t".join(COLUMNS) + "\n").encode("utf-8")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            try:  # a new file: the header goes in the same write as the first row
                fd = os.open(
                    path,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_BINARY", 0),
                    0o644,
                )
                data = header + data
            except FileExistsError:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_BINARY", 0))
            try:
                if data:
                    os.write(fd, data)
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StationLogError(f"cannot write the station log {path}: {reason}") from exc


__all__ = ["COLUMNS", "StationLog", "StationLogError", "default_log_dir", "log_field", "result_row"]
