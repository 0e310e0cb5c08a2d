"""What the operator sees in gang mode: one row per board, or plain lines prefixed with it.

A gang (``provclient-cdc --board A --board B ...``) runs one worker per board
(:mod:`.gang`); each worker prints the single-board flow's lines through its own
:class:`BoardOutput`, which hands every whole line, and every stage change, to the screen:

* :class:`PlainScreen` (not a terminal: a pipe, a file, ``--json``'s stderr when redirected):
  each line as it is finished, prefixed with its board, e.g.
  ``[board 2] Writing config zone.......done``; the lines of several boards interleave, each
  one whole.
* :class:`LiveScreen` (a terminal): a table drawn with ``rich``, one row per board updated in
  place (stage, serial number, part state, result, time, parts done, URL, the board's last
  line),
  and the station's own lines (ESC pressed, server messages, a board added) printed above it.

Rows may be added while the screen runs (:meth:`GangScreen.add_row`): ``--board all`` gives a
kit plugged in during the run its own row.

Every text reaching the screen goes through :func:`atcaprov.text.printable` first (serial
numbers, kit and server text are data), and the table is built from :class:`rich.text.Text`
objects, never from markup, so no outside text can style or move anything.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from atcaprov.stages import ProvStage, ProvStatus
from atcaprov.text import printable

from .output import Output


@dataclass
class BoardRow:
    """What the screen shows for one board."""

    number: int
    url: str
    stage: str = "waiting for a part"
    serial_number: str = ""
    part_state: str = ""  # short: blank, config locked, provisioned
    result: str = ""
    started: float | None = None  # monotonic time the current part started
    elapsed_s: float | None = None  # of the last finished part
    done: int = 0  # parts this board finished (any result)
    message: str = ""  # the board's last line

    @property
    def name(self) -> str:
        return f"board {self.number}"


class GangScreen:
    """Base of the two screens: the rows, and the calls the workers make (thread-safe)."""

    def __init__(self, rows: list[BoardRow]) -> None:
        self.rows = rows
        self._lock = threading.Lock()

    def add_row(self, url: str) -> BoardRow:
        """A new row for the board at ``url``, numbered after the last one (also while the
        board loop runs: ``--board all`` adds the kits plugged in later)."""
        with self._lock:
            row = BoardRow(len(self.rows) + 1, url)
            self.rows.append(row)
            return row

    def start(self) -> None:
        """The board loop begins."""

    def stop(self) -> None:
        """The board loop ended: whatever is drawn stays as it is."""

    def line(self, text: str) -> None:
        """A line of the station (not of one board)."""
        raise NotImplementedError

    def board_line(self, number: int, text: str) -> None:
        """A whole line of board ``number``'s flow."""
        raise NotImplementedError

    def board_stage(self, number: int, stage: ProvStage, status: ProvStatus) -> None:
        """A stage of board ``number`` started, ended or was skipped."""
        if status is ProvStatus.START:
            self.update(number, stage=stage.label)

    def update(self, number: int, **fields: object) -> None:
        """Set fields of board ``number``'s row (see :class:`BoardRow`)."""
        with self._lock:
            row = self.rows[number - 1]
            for key, value in fields.items():
                setattr(row, key, value)


class PlainScreen(GangScreen):
    """Plain lines, each prefixed with its board (``[board 2] ...``), on ``output``."""

    def __init__(self, rows: list[BoardRow], output: Output) -> None:
        super().__init__(rows)
        self.output = output

    def line(self, text: str) -> None:
        self.output.line(text)

    def board_line(self, number: int, text: str) -> None:
        self.output.line(f"[board {number}] {text}")


class LiveScreen(GangScreen):
    """A ``rich`` table on the terminal ``stream``, one row per board, redrawn in place."""

    REFRESH_PER_SECOND = 8

    def __init__(self, rows: list[BoardRow], stream: TextIO) -> None:
        super().__init__(rows)
        self.console = Console(file=stream, force_terminal=True, highlight=False)
        self._live = Live(
            console=self.console,
            get_renderable=self._table,
            refresh_per_second=self.REFRESH_PER_SECOND,
            transient=False,
        )

    def start(self) -> None:
        self._live.start()

    def stop(self) -> None:
        self._live.stop()

    def line(self, text: str) -> None:
        self.console.print(printable(text), markup=False, highlight=False)

    def board_line(self, number: int, text: str) -> None:
        self.update(number, message=printable(text.strip()))

    def _table(self) -> Table:

        table = Table(box=None, pad_edge=False, show_edge=False)
        for column, width in (
            ("Board", 5),
            ("Stage", 24),
            ("Serial number", 18),
            ("Part", 13),
            ("Result", 19),
            ("Time", 7),
            ("Parts", 5),
        ):
            table.add_column(column, no_wrap=True, min_width=width)
        for column in ("URL", "Last line"):
            table.add_column(column, no_wrap=True, overflow="ellipsis", ratio=1)
        now = time.monotonic()
        with self._lock:
            for row in self.rows:
                if row.started is not None:
                    seconds = f"{now - row.started:.1f} s"
                elif row.elapsed_s is not None:
                    seconds = f"{row.elapsed_s:.1f} s"
                else:
                    seconds = ""
                cells = (
                    str(row.number),
                    row.stage,
                    row.serial_number,
                    row.part_state,
                    row.result,
                    seconds,
                    str(row.done),
                    row.url,
                    row.message,
                )
                table.add_row(*(Text(printable(cell)) for cell in cells))
        return table


class _LineSink(io.StringIO):
    """A text stream that hands each finished line (without its newline) to ``on_line``."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        super().__init__()
        self._on_line = on_line
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self._on_line(line)
        return len(text)

    def flush(self) -> None:
        """Lines are handed on when finished; an open step line waits for its word."""


class BoardOutput(Output):
    """One board's operator lines (the single-board flow's text, unchanged) for the screen.

    JSON result lines are not written here: the gang writes them once a result is recorded.
    """

    def __init__(self, screen: GangScreen, number: int) -> None:
        super().__init__(_LineSink(lambda text: screen.board_line(number, text)), None, live=False)
        self.screen = screen
        self.number = number

    def stage(self, stage: ProvStage, status: ProvStatus) -> None:
        self.screen.board_stage(self.number, stage, status)
        super().stage(stage, status)
