"""Operator output of the client: the app note's lines, stage lines, and JSON result lines.

Human text goes to one stream (stdout, or stderr under ``--json``) exactly in the app note's
layout::

    Connecting to localhost:11235...ok
    Waiting for board to be connected...ok
        Device SN: 01234038D92CA571EE
    Writing config zone.......done

A step is printed as ``<text>...`` without a newline and closed with its word (``ok``,
``failed``...), so the operator sees what the client is doing while it waits. Stage lines come
from :func:`atcaprov.stages.stage_prefix` / :class:`~atcaprov.stages.ProvStatus` words.

:class:`BoardResult` is the per-board record; :meth:`Output.result` writes it as one JSON line
(``--json``), see docs/client.md for the fields.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, TextIO

from atcaprov.stages import ProvStage, ProvStatus, stage_prefix

INDENT = "    "


@dataclass
class BoardResult:
    """What happened to one board (one JSON line under ``--json``)."""

    index: int
    board: str
    serial_number: str | None = None
    result: str = "failed"  # ok | failed | already_provisioned | removed | no_device
    stage: ProvStage | None = None
    error_code: str | None = None
    error_code_value: int | None = None
    error_message: str | None = None
    server_message: str | None = None
    part_state: str | None = None
    part_state_text: str | None = None
    elapsed_s: float = 0.0
    station_id: str = ""
    skipped: list[ProvStage] = field(default_factory=list)
    verify: list[str] | None = None
    chip_floor_ms: float = 0.0  # sum of the max execution times of the commands sent
    commands: int = 0

    @property
    def ok(self) -> bool:
        return self.result == "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "board": self.board,
            "serial_number": self.serial_number,
            "result": self.result,
            "stage": self.stage.name if self.stage is not None else None,
            "stage_label": self.stage.label if self.stage is not None else None,
            "error_code": self.error_code,
            "error_code_value": self.error_code_value,
            "error_message": self.error_message,
            "server_message": self.server_message,
            "part_state": self.part_state,
            "part_state_text": self.part_state_text,
            "skipped": [s.name for s in self.skipped],
            "elapsed_s": round(self.elapsed_s, 3),
            "station_id": self.station_id,
            "verify": self.verify,
            "chip_floor_ms": round(self.chip_floor_ms, 3),
            "commands": self.commands,
        }


class Output:
    """Writes operator lines to ``human`` and JSON result lines to ``json_out`` (if given).

    ``live`` (a terminal) enables in-place updates such as the reconnect countdown.
    """

    def __init__(self, human: TextIO, json_out: TextIO | None = None, *,
                 live: bool = False) -> None:
        self.human = human
        self.json_out = json_out
        self.live = live
        self._open_line = ""  # text of the unfinished line (a step waiting for its word)
        self._lock = threading.Lock()

    @property
    def open_text(self) -> str:
        """The unfinished step line (empty if none)."""
        return self._open_line

    # ---- plain lines ---------------------------------------------------------------------
    def _write(self, text: str) -> None:
        self.human.write(text)
        self.human.flush()

    def line(self, text: str = "") -> None:
        """A whole line (closes an unfinished step line first)."""
        with self._lock:
            if self._open_line:
                self._write("\n")
                self._open_line = ""
            self._write(text + "\n")

    def detail(self, text: str) -> None:
        """An indented line under a step, e.g. ``    Device SN: ...``."""
        self.line(INDENT + text)

    # ---- steps: text... then a word ------------------------------------------------------
    def begin(self, text: str) -> None:
        """Start a step line: ``text`` is printed now, the word when :meth:`end` is called."""
        with self._lock:
            if self._open_line:
                self._write("\n")
            self._write(text)
            self._open_line = text

    def end(self, word: str) -> None:
        """Finish the open step line with ``word`` (e.g. ``ok``)."""
        with self._lock:
            self._write(word + "\n")
            self._open_line = ""

    def update(self, text: str) -> None:
        """Replace the open line in place (terminals only; elsewhere nothing is written)."""
        if not self.live:
            return
        with self._lock:
            pad = " " * max(len(self._open_line) - len(text), 0)
            self._write("\r" + text + pad + "\b" * len(pad))
            self._open_line = text

    # ---- stages --------------------------------------------------------------------------
    def stage(self, stage: ProvStage, status: ProvStatus) -> None:
        """One notify call: START opens the stage line, DONE/ERROR closes it, SKIPPED is whole."""
        if status is ProvStatus.START:
            self.begin(stage_prefix(stage))
        elif status is ProvStatus.SKIPPED:
            self.line(stage_prefix(stage) + status.word)
        elif self._open_line == stage_prefix(stage):
            self.end(status.word)
        else:  # a DONE/ERROR without its START (should not happen): still one whole line
            self.line(stage_prefix(stage) + status.word)

    # ---- JSON ----------------------------------------------------------------------------
    def result(self, result: BoardResult) -> None:
        if self.json_out is None:
            return
        self.json_out.write(json.dumps(result.to_json(), sort_keys=False) + "\n")
        self.json_out.flush()


class OutputLogHandler(logging.Handler):
    """Library log records as indented operator lines (``--verbose``), e.g.
    ``    (warning) idle after a failed command also failed: ...``."""

    def __init__(self, output: Output, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except (TypeError, ValueError) as exc:  # a bad format string in a log call
            text = f"{record.msg!r} (unformattable: {exc})"
        self.output.detail(f"({record.levelname.lower()}) {text}")
