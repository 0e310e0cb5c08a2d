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

Every text goes through :func:`atcaprov.text.printable` on its way to the terminal: lines are
built from server messages, kit replies, serial numbers and file names, and none of those may
move the cursor, clear the screen or start a line of its own (``\x1b[2J`` is shown as the
text ``\x1b[2J``).

:class:`BoardResult` is the per-board record; :meth:`Output.result` writes it as one JSON line
(``--json``), see docs/client.md for the fields. :func:`summary_lines` is the shift summary the
client prints when it exits.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from atcaprov.stages import ProvStage, ProvStatus, stage_prefix
from atcaprov.text import printable

INDENT = "    "


@dataclass
class BoardResult:
    """What happened to one board (one JSON line under ``--json``)."""

    index: int
    board: str
    serial_number: str | None = None
    device_type: str | None = None  # chip model read at opening (ATECC608B); None if unknown
    # ok | failed | removed | already_provisioned | interrupted | verified | verify_failed
    result: str = "failed"
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
    verify_ok: bool | None = None  # the verification's verdict, None if not verified

    @property
    def ok(self) -> bool:
        return self.result in ("ok", "verified")

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "board": self.board,
            "serial_number": self.serial_number,
            "device_type": self.device_type,
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

    def __init__(
        self, human: TextIO, json_out: TextIO | None = None, *, live: bool = False
    ) -> None:
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
            self._write(printable(text) + "\n")

    def detail(self, text: str) -> None:
        """An indented line under a step, e.g. ``    Device SN: ...``."""
        self.line(INDENT + text)

    # ---- steps: text... then a word ------------------------------------------------------
    def begin(self, text: str) -> None:
        """Start a step line: ``text`` is printed now, the word when :meth:`end` is called."""
        text = printable(text)
        with self._lock:
            if self._open_line:
                self._write("\n")
            self._write(text)
            self._open_line = text

    def end(self, word: str) -> None:
        """Finish the open step line with ``word`` (e.g. ``ok``)."""
        with self._lock:
            self._write(printable(word) + "\n")
            self._open_line = ""

    def update(self, text: str) -> None:
        """Replace the open line in place (terminals only; elsewhere nothing is written)."""
        if not self.live:
            return
        text = printable(text)
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


# ---- shift summary ---------------------------------------------------------------------------
FAILED_RESULTS = ("failed", "removed", "interrupted")


def _where(result: BoardResult) -> str:
    where = result.stage.label if result.stage is not None else "before the first stage"
    if result.result == "removed":
        return f"{where} (board removed)"
    if result.result == "interrupted":
        return f"{where} (interrupted)"
    return where


def summary_lines(results: Sequence[BoardResult], *, duration_s: float, header: str) -> list[str]:
    """The shift summary: ``header`` (e.g. ``Shift summary: 3 boards in 0:04:10``) and one
    indented line per figure (provisioned, failed by stage, already provisioned, verified,
    mean time per board)."""
    provisioned = [r for r in results if r.result == "ok"]
    failed = [r for r in results if r.result in FAILED_RESULTS]
    already = sum(1 for r in results if r.result == "already_provisioned")
    checked = [r for r in results if r.verify_ok is not None]
    by_stage = Counter(_where(r) for r in failed)
    lines = [header, f"{INDENT}Provisioned:          {len(provisioned)}"]
    detail = ", ".join(f"{where}: {n}" for where, n in sorted(by_stage.items()))
    lines.append(
        f"{INDENT}Failed:               {len(failed)}" + (f" ({detail})" if detail else "")
    )
    lines.append(f"{INDENT}Already provisioned:  {already}")
    passed = sum(1 for r in checked if r.verify_ok)
    lines.append(
        f"{INDENT}Verified:             {len(checked)}"
        + (f" ({passed} passed, {len(checked) - passed} failed)" if checked else "")
    )
    if results:
        timed, doing = provisioned, "provisioning"
        if not timed:
            timed = [r for r in results if r.result in ("verified", "verify_failed")]
            doing = "verifying"
        inside = f"{sum(r.elapsed_s for r in timed) / len(timed):.2f} s {doing}, " if timed else ""
        lines.append(
            f"{INDENT}Mean time per board:  {inside}"
            f"{duration_s / len(results):.1f} s board to board"
        )
    else:
        lines.append(f"{INDENT}Mean time per board:  - (no board)")
    return lines


def format_duration(seconds: float) -> str:
    """``H:MM:SS``."""
    whole = max(int(seconds), 0)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
