"""The station log: one tab-separated row per board, appended to a file per day.

Every board the client finishes (provisioned, failed, removed mid-run, already provisioned,
verified, interrupted) leaves a row in ``<folder>/station-YYYY-MM-DD.tsv`` (the local date of
the row), written as soon as the board is done and flushed to disk, so that a shift's record
survives a crash or a pulled plug. A new file starts with a header row::

    time  station  board  serial_number  result  stage  error_code  error  part_state
    elapsed_s  version  device_type

``time`` is local time with its UTC offset (``2024-05-01T08:15:02+02:00``), ``version`` the
client's version, ``device_type`` the chip model read when the board was opened
(``ATECC608B``; empty if it was not read). ``device_type`` came last, after the columns of the
earlier layout, so that a script reading columns by position still finds them in place.

Rows follow the header of the file they go into: a day's file written by an older client (no
``device_type`` column: :data:`LEGACY_COLUMNS`) keeps its layout for the rest of that day, so
every row of a file lines up with its header; the next day's file has the new layout. Columns
a file's header names that this client does not know are left empty.

Values come partly from outside (server error text, kit text): they go
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
from collections.abc import Callable, Mapping, Sequence
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
    "device_type",  # added last: a reader that counts columns finds the others where they were
)
# The layout of the files written before the device type was logged (atcaprov 0.x clients).
LEGACY_COLUMNS = tuple(c for c in COLUMNS if c != "device_type")
HEADER_READ_LIMIT = 4096  # a header longer than this is not one of ours
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


def result_values(result: BoardResult, when: datetime) -> dict[str, str]:
    """The cells of one board by column name (every name of :data:`COLUMNS`)."""
    error = result.server_message or result.error_message
    values: dict[str, object] = {
        "time": when.isoformat(timespec="seconds"),
        "station": result.station_id,
        "board": result.board,
        "serial_number": result.serial_number,
        "result": result.result,
        "stage": result.stage.name if result.stage is not None else "",
        "error_code": result.error_code,
        "error": error,
        "part_state": result.part_state,
        "elapsed_s": f"{result.elapsed_s:.3f}",
        "version": __version__,
        "device_type": result.device_type,
    }
    return {name: log_field(value) for name, value in values.items()}


def result_row(result: BoardResult, when: datetime, columns: Sequence[str] = COLUMNS) -> list[str]:
    """The row of one board in ``columns`` order (default :data:`COLUMNS`; a column this
    client does not know is empty)."""
    values = result_values(result, when)
    return [values.get(name, "") for name in columns]


def parse_header(head: bytes) -> tuple[str, ...] | None:
    """The column names of a file that starts with ``head``; None if it has no header row of
    ours (empty, no complete first line, or a first line that does not start with ``time``)."""
    line, newline, _ = head.partition(b"\n")
    if not newline:
        return None
    try:
        names = tuple(line.decode("utf-8").rstrip("\r").split("\t"))
    except UnicodeDecodeError:
        return None
    if names[0] != "time" or not all(names):
        return None
    return names


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
        self._append(path, lambda columns: b"")
        return path

    def columns_of(self, path: Path) -> tuple[str, ...]:
        """The columns rows of ``path`` are written in: its header's (:data:`COLUMNS` for a
        new file or one without a header of ours). Raises :class:`StationLogError`."""
        try:
            with path.open("rb") as fh:
                head = fh.read(HEADER_READ_LIMIT)
        except FileNotFoundError:
            return COLUMNS
        except OSError as exc:
            raise StationLogError(
                f"cannot read the station log {path}: {exc.strerror or exc}"
            ) from exc
        return parse_header(head) or COLUMNS

    def write(self, result: BoardResult) -> Path:
        """Append ``result``'s row (with a header first in a new file) in the layout of the
        file's header; returns the file."""
        when = self._clock()
        path = self.path_for(when)

        def row(columns: Sequence[str]) -> bytes:
            return ("\t".join(result_row(result, when, columns)) + "\n").encode("utf-8")

        self._append(path, row)
        return path

    def _append(self, path: Path, row: Callable[[Sequence[str]], bytes]) -> None:
        """Append ``row(columns)``: a new (or empty) file gets the header of :data:`COLUMNS`
        in the same write as its first row, an existing one a row in its header's layout."""
        header = ("\t".join(COLUMNS) + "\n").encode("utf-8")
        flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_BINARY", 0)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            try:  # a new file: the header goes in the same write as the first row
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
                new = True
            except FileExistsError:
                fd = os.open(path, flags)
                new = False
            try:
                if new or os.fstat(fd).st_size == 0:  # (empty: created, then the power went)
                    data = header + row(COLUMNS)
                else:
                    data = row(self.columns_of(path))
                if data:
                    os.write(fd, data)
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StationLogError(f"cannot write the station log {path}: {reason}") from exc


__all__ = [
    "COLUMNS",
    "LEGACY_COLUMNS",
    "StationLog",
    "StationLogError",
    "default_log_dir",
    "log_field",
    "parse_header",
    "result_row",
    "result_values",
]
