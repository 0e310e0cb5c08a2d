"""Gang mode: one station driving several boards at once, one worker thread per board.

``provclient-cdc --board A --board B`` (or ``--board A,B``, or ``--board all`` for every kit
found) runs a :class:`Gang`. The start is the single-board one (cert info, config, station
log, server connection and readiness, through a :class:`~.session.Station`); then each board
gets a :class:`BoardWorker`. With ``--board all`` the kit ports are listed again every
:data:`PORT_SCAN_S` while the gang runs (by the thread that reads the keys): a port plugged in
later gets its own row and worker, exactly like a port found at the start. A port keeps its row
and its worker for the whole run (a board unplugged and plugged back on the same port carries on
in its worker, never in a second one); once the gang stops taking parts (ESC, ``--count``) no
board is added.

* **Threads, not processes.** Nearly all of a board's time is spent blocked on I/O (the kit
  link while the chip executes, the server while it signs), which releases the GIL; the host's
  own work per device (packets, one ECDSA verify) is small. Threads share the cert info, the
  station log and the result list without copies or pickling.
* **Each worker is a whole station for its board:** a :class:`BoardStation` (the single-board
  :class:`~.session.Station` code, unchanged: readiness before irreversible steps, resume, part
  state, removal mid-run) with its own :class:`~.boards.BoardFinder`, its own
  :class:`~.server_link.ServerLink` and :class:`~.server_link.LinkHooks`, and its own
  :class:`~.gang_screen.BoardOutput`. Nothing a board does waits for another board: a slow or
  failing board (or one whose server connection drops) holds up only itself.
* **Shared:** the :class:`GangRecorder` (results in order of finishing, ``--count``, JSON lines,
  station log rows, under one lock) and the screen (:mod:`.gang_screen`).

Operator keys (read by the main thread): ENTER starts every board that shows a part ready;
with ``--yes`` each board starts as soon as its part is found. ESC stops taking new parts and
lets running ones finish; a second ESC aborts running ones at their next stage boundary (never
inside a stage, so never half-way through a write or a lock), each reported with its stage and
part state. Ctrl-C / SIGTERM abort the same way. ``--count N`` counts results over all boards.
The shift summary counts every board.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from atcaprov.provisioning import PartState
from atcaprov.stages import ProvStage, ProvStatus
from atcaprov.terminal import ENTER, ESC

from .boards import Board, BoardError, BoardFinder, PortLister, find_kit_ports
from .console import Keys, NoKeys, OperatorQuit
from .failover import FailoverHooks, ServerPool
from .gang_screen import BoardOutput, BoardRow, GangScreen, LiveScreen, PlainScreen
from .output import BoardResult, Output
from .server_link import ServerLink, ServerUnreachableError, connect_with_retry
from .session import (
    BOARD_POLL_S,
    FINAL_LINES,
    ExitCode,
    Station,
    StationOptions,
    StationStats,
)
from .station_log import StationLog, StationLogError

REMOVAL_POLL_S = 0.2
# The part's state in the table's short column.
PART_LABELS: dict[PartState, str] = {
    PartState.UNLOCKED: "blank",
    PartState.CONFIG_LOCKED: "config locked",
    PartState.PROVISIONED: "provisioned",
}
ALL_BOARDS = "all"
PORT_SCAN_S = 1.0  # --board all: how often the kit ports are listed again while the gang runs

LinkFactory = Callable[[], Sequence[ServerLink]]  # the servers in order (failover.py)


class GangAbort(KeyboardInterrupt):
    """The operator aborted running boards (second ESC, Ctrl-C): raised in a worker at its
    next stage start, it takes the single-board flow's interrupt path (the stage and the part
    state are reported and recorded). A KeyboardInterrupt so that the flow, which turns every
    Exception of a stage into a failure, lets it through untouched."""


def board_urls(values: Sequence[str]) -> list[str]:
    """``--board`` values (repeated, comma lists) -> the URLs in order, duplicates dropped;
    ``all`` stays as itself."""
    urls: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part and part not in urls:
                urls.append(part)
    return urls


class GangRecorder:
    """Results of every board (thread-safe): ``--count``, JSON lines, station log rows."""

    def __init__(
        self,
        output: Output,
        station_log: StationLog | None,
        count: int | None,
        stopping: threading.Event,
    ) -> None:
        self.output = output
        self.station_log = station_log
        self.count = count
        self.stopping = stopping
        self.stats = StationStats()
        self._claimed = 0
        self._lock = threading.Lock()

    def claim(self) -> bool:
        """A board may start a part: False once ``--count`` parts were started (then new
        parts are no longer taken)."""
        with self._lock:
            if self.count is not None and self._claimed >= self.count:
                return False
            self._claimed += 1
            if self.count is not None and self._claimed >= self.count:
                self.stopping.set()
            return True

    def record(self, result: BoardResult) -> str | None:
        """Add a finished board; the station log's error text if its row was not written."""
        with self._lock:
            result.index = len(self.stats.results) + 1
            self.stats.results.append(result)
            self.output.result(result)
            if self.station_log is None:
                return None
            try:
                self.station_log.write(result)
            except StationLogError as exc:
                return str(exc)
            return None


class GangHooks(FailoverHooks):
    """:class:`~provclient_cdc.failover.FailoverHooks` that stop the flow at the next stage
    start once ``abort`` is set."""

    def __init__(
        self, pool: ServerPool, output: Output, station_id: str | None, abort: threading.Event
    ) -> None:
        super().__init__(pool, output, station_id)
        self.abort = abort
        self.aborted_before: ProvStage | None = None

    def reset(self) -> None:
        super().reset()
        self.aborted_before = None

    def notify(self, stage: ProvStage, status: ProvStatus) -> None:
        if status is ProvStatus.START and self.abort.is_set():
            self.aborted_before = stage
            raise GangAbort
        super().notify(stage, status)


class BoardStation(Station):
    """The single-board station for one board of a gang: no prompts of its own (the gang reads
    the keys), its results recorded through the gang's :class:`GangRecorder`."""

    def __init__(
        self,
        options: StationOptions,
        output: Output,
        *,
        links: Sequence[ServerLink],
        finder: BoardFinder,
        recorder: GangRecorder,
        abort: threading.Event,
    ) -> None:
        super().__init__(
            replace(options, yes=True, log_dir=None),
            output,
            NoKeys(),
            link=links[0],
            finder=finder,
            fallbacks=links[1:],
        )
        self.gang_hooks = GangHooks(self.pool, output, options.station_id, abort)
        self.hooks = self.gang_hooks
        self.recorder = recorder

    def _record(self, result: BoardResult) -> None:
        stage = self.gang_hooks.aborted_before
        if result.result == "interrupted" and stage is not None:
            result.error_code = "ABORTED"
            result.error_message = f'aborted by the operator before "{stage.label}"'
        error = self.recorder.record(result)
        if error is not None:
            self.output.detail(f"Station log not written: {error}")


class BoardWorker(threading.Thread):
    """One board of the gang: wait for a part, (wait for ENTER,) run it, wait for its removal,
    again, until the gang stops taking parts."""

    def __init__(self, gang: Gang, row: BoardRow, station: BoardStation) -> None:
        super().__init__(name=f"board-{row.number}", daemon=True)
        self.gang = gang
        self.row = row
        self.station = station
        self.ready = False  # a part is shown and waits for ENTER
        self.start_part = threading.Event()
        self.timed_out = False  # no part within --wait-timeout
        self.crashed: BaseException | None = None
        self._reported: set[str] = set()

    @property
    def screen(self) -> GangScreen:
        return self.gang.screen

    def _set(self, **fields: object) -> None:
        self.screen.update(self.row.number, **fields)

    def run(self) -> None:
        try:
            if not self.gang.options.verify_only:
                self._connect()
            while not self.gang.stopping.is_set():
                board = self._wait_for_board()
                if board is None:
                    break
                try:
                    self._one_part(board)
                finally:
                    board.close()
        except GangAbort:
            pass  # recorded by the flow's interrupt path
        except BaseException as exc:  # a bug must not vanish with its thread: say it, stop
            self.crashed = exc
            self.screen.board_line(self.row.number, f"Board stopped: {exc!r}")
        finally:
            self.station.link.close()
            self._set(stage="stopped" if not self.timed_out else "no part", started=None)

    def _connect(self) -> None:
        """This board's own server connection (``Connecting to ...ok``); if it fails, the
        board's first part tries again before anything is written."""
        try:
            connect_with_retry(
                self.station.link, self.station.output, NoKeys(), retries=0, interval=0.0
            )
        except ServerUnreachableError:
            return  # said on the "Connecting...failed (reason)" line

    def _wait_for_board(self) -> Board | None:
        self._set(stage="waiting for a part", serial_number="", part_state="", started=None)
        wait = self.gang.options.wait_timeout
        deadline = time.monotonic() + wait if wait is not None else None
        while not self.gang.stopping.is_set():
            try:
                board = self.station.finder.try_open()
            except BoardError as exc:
                board = None
                self._say_once(f"Board not usable: {exc}")
            if board is not None:
                self._reported.clear()
                return board
            if self.station.finder.open_error is not None and self.row.done == 0:
                url, reason = self.station.finder.open_error
                self._say_once(f"Cannot open board {url}: {reason}")
            if deadline is not None and time.monotonic() >= deadline:
                self.timed_out = True
                self.station.output.line(f"No board within {wait:g} s ({self.row.url}).")
                return None
            self.gang.stopping.wait(BOARD_POLL_S)
        return None

    def _say_once(self, text: str) -> None:
        if text not in self._reported:
            self._reported.add(text)
            self.station.output.detail(text)

    def _one_part(self, board: Board) -> None:
        station = self.station
        state = PART_LABELS.get(board.part_state, "") if board.part_state is not None else ""
        self._set(stage="part found", serial_number=board.serial_hex, part_state=state, result="")
        station.show_part(board)
        if (
            not self.gang.options.yes
            and station.needs_enter(board)
            and not self._wait_for_enter(board)
        ):
            return
        if not self.gang.recorder.claim():
            return
        self._set(stage="started", started=time.monotonic())
        result = station.run_board(board)
        if result is None:  # ConfigError: no part can be provisioned with these options
            self.gang.bad_options.set()
            self.gang.stopping.set()
            return
        station._record(result)
        station.hooks.settle_report()  # the outcome report's acknowledgement, if left
        after = PartState.__members__.get(result.part_state or "")
        self._set(
            result=result.result,
            elapsed_s=result.elapsed_s,
            started=None,
            done=self.row.done + 1,
            part_state=PART_LABELS.get(after, "unknown") if after is not None else state,
            stage=result.stage.label if result.stage is not None else "",
        )
        if result.result == "removed":
            return
        station.output.line(FINAL_LINES.get(result.result, FINAL_LINES["failed"]))
        self._set(stage="remove the part")
        while not board.gone(REMOVAL_POLL_S):
            if self.gang.stopping.is_set():
                return
        station.output.line("Board removed.")

    def _wait_for_enter(self, board: Board) -> bool:
        """``Press ENTER to provision...``; True once ENTER started this board, False if the
        part was removed or the gang stopped taking parts."""
        verb = "verify" if self.gang.options.verify_only else "provision"
        self.station.output.detail(f"Press ENTER to {verb}...")
        self._set(stage="ready: press ENTER")
        self.start_part.clear()
        self.ready = True
        try:
            while not self.start_part.wait(0.05):
                if self.gang.stopping.is_set():
                    return False
                if board.gone(0.05):
                    self.station.output.detail("Board removed before provisioning.")
                    return False
            return True
        finally:
            self.ready = False


class Gang:
    """The gang's run: start (as one station), the workers, the keys, the summary."""

    def __init__(
        self,
        options: StationOptions,
        urls: Sequence[str],
        output: Output,
        keys: Keys,
        *,
        link_factory: LinkFactory,
        finder_factory: Callable[[str], BoardFinder] | None = None,
        lister: PortLister | None = None,
        live: bool = False,
    ) -> None:
        self.options = options
        self.urls = list(urls)
        self.output = output
        self.keys = keys
        self.link_factory = link_factory
        self.finder_factory = finder_factory or (
            lambda url: BoardFinder(url, kit_timeout=options.kit_timeout)
        )
        self.live = live
        self.lister = lister  # the system's port list (serial.tools.list_ports) unless given
        self.watch_ports = self.urls == [ALL_BOARDS]  # --board all: add kits plugged in later
        self.stopping = threading.Event()  # no new parts
        self.abort = threading.Event()  # running parts stop at their next stage
        self.bad_options = threading.Event()
        lead_links = link_factory()
        self.lead = Station(
            replace(options, board=None), output, keys, link=lead_links[0], fallbacks=lead_links[1:]
        )
        self.recorder = GangRecorder(output, self.lead.station_log, options.count, self.stopping)
        self.lead.stats = self.recorder.stats  # the shift summary counts every board
        self.screen: GangScreen = PlainScreen([], output)
        self.workers: list[BoardWorker] = []
        self.quit = False
        self._running = False  # the workers run: station lines go through the screen

    # ---- start -------------------------------------------------------------------------
    def run(self) -> ExitCode:
        lead = self.lead
        try:
            if not lead._read_files() or not lead._check_station_log():
                return ExitCode.BAD_INPUT
            if not self.options.verify_only and not self._connect():
                return ExitCode.SERVER_UNREACHABLE
            lead.link.close()  # each board has its own connection from here
            if self.urls == [ALL_BOARDS] and not self._find_all():
                return ExitCode.NO_BOARD
            self.output.line(
                "Press ESC to quit."
                if self.options.yes
                else "Press ENTER to start every board showing a part ready, ESC to quit."
            )
            lead._shift_started = time.monotonic()
            return self._run_workers()
        except OperatorQuit:
            self.output.line("Quit.")
            return ExitCode.OPERATOR_QUIT
        finally:
            lead.link.close()
            lead._print_summary()

    def _connect(self) -> bool:
        lead = self.lead
        try:
            connect_with_retry(
                lead.link,
                self.output,
                self.keys,
                retries=self.options.connect_retries,
                interval=self.options.retry_interval,
            )
        except ServerUnreachableError as exc:
            self.output.line(
                f"Cannot reach the provisioning server at {lead.link.address}:"
                f" {exc.reason}. Is provserver running there?"
            )
            return False
        return lead._server_usable_at_start()

    def _find_all(self) -> bool:
        """``--board all``: every kit port listed now (waiting for the first one); the ports
        plugged in later are added while the gang runs (:meth:`_scan_ports`)."""
        self.output.begin("Looking for kit boards...")
        wait = self.options.wait_timeout
        deadline = time.monotonic() + wait if wait is not None else None
        while True:
            urls = list(dict.fromkeys(port.url for port in find_kit_ports(self.lister)))
            if urls:
                self.output.end(f"{len(urls)} found")
                self.urls = urls
                return True
            if deadline is not None and time.monotonic() >= deadline:
                self.output.end("none")
                self.output.line(f"No kit board within {wait:g} s.")
                return False
            if self.keys.poll(BOARD_POLL_S) == ESC:
                self.output.end("")
                raise OperatorQuit("ESC pressed while looking for kit boards")

    # ---- the boards --------------------------------------------------------------------
    def _make_workers(self) -> None:
        rows: list[BoardRow] = []
        stream = self.output.human
        self.screen = LiveScreen(rows, stream) if self.live else PlainScreen(rows, self.output)
        for url in self.urls:
            self._add_board(url)

    def _add_board(self, url: str) -> BoardWorker:
        """A row on the screen (``Board N: URL``) and a worker (not started) for ``url``."""
        row = self.screen.add_row(url)
        text = f"Board {row.number}: {row.url}"
        if self._running:
            self.screen.line(text)  # above the live table, or a plain line
        else:
            self.output.line(text)
        station = BoardStation(
            self.options,
            BoardOutput(self.screen, row.number),
            links=self.link_factory(),
            finder=self.finder_factory(row.url),
            recorder=self.recorder,
            abort=self.abort,
        )
        station.cert_info, station.config = self.lead.cert_info, self.lead.config
        worker = BoardWorker(self, row, station)
        self.workers.append(worker)
        return worker

    def _scan_ports(self) -> None:
        """``--board all`` while running: a row and a started worker for every kit port listed
        now that has no row yet; nothing once the gang stopped taking parts."""
        owned = {worker.row.url for worker in self.workers}
        for port in find_kit_ports(self.lister):
            if self.stopping.is_set():
                return
            if port.url not in owned:
                owned.add(port.url)
                self._add_board(port.url).start()

    def _run_workers(self) -> ExitCode:
        self._make_workers()
        self.screen.start()
        self._running = True
        try:
            for worker in self.workers:
                worker.start()
            self._keys_loop()
        except KeyboardInterrupt:
            self.stopping.set()
            self.abort.set()
            self.screen.line("Interrupted: running boards stop at their next stage.")
            self._join()
            self.screen.stop()
            self._report_aborted()
            self.output.line("Interrupted.")
            return ExitCode.INTERRUPTED
        self.screen.stop()
        self._report_aborted()
        if self.quit:
            self.output.line("Quit.")
        return self._exit_code()

    def _keys_loop(self) -> None:
        """ENTER starts the boards showing a part; ESC stops taking parts, ESC again aborts.
        With ``--board all``, the kit ports are listed again every :data:`PORT_SCAN_S`."""
        next_scan = time.monotonic() + PORT_SCAN_S
        while any(worker.is_alive() for worker in self.workers):
            key = self.keys.poll(0.1)
            if key == ENTER:
                for worker in self.workers:
                    if worker.ready:
                        worker.start_part.set()
            elif key == ESC and not self.stopping.is_set():
                self.quit = True
                self.stopping.set()
                self.screen.line(
                    "ESC: no new parts; running boards finish (ESC again aborts them)."
                )
            elif key == ESC and not self.abort.is_set():
                self.quit = True
                self.abort.set()
                self.screen.line("ESC again: running boards stop at their next stage.")
            if self.watch_ports and time.monotonic() >= next_scan:
                next_scan = time.monotonic() + PORT_SCAN_S
                if not self.stopping.is_set():
                    self._scan_ports()

    def _join(self) -> None:
        for worker in self.workers:
            while worker.is_alive():
                worker.join(0.2)

    def _report_aborted(self) -> None:
        """One line per part that an abort stopped: where, and what the part now holds."""
        for result in self.recorder.stats.results:
            if result.result != "interrupted":
                continue
            self.output.line(
                f"{result.board}: {result.error_message or 'interrupted'};"
                f" part state: {result.part_state_text}"
            )

    def _exit_code(self) -> ExitCode:
        if self.bad_options.is_set():
            return ExitCode.BAD_INPUT
        if any(worker.crashed is not None for worker in self.workers):
            return ExitCode.BOARD_FAILED
        if self.recorder.stats.failed:
            return ExitCode.BOARD_FAILED
        if self.quit:
            return ExitCode.OPERATOR_QUIT
        count = self.options.count
        if count is not None and len(self.recorder.stats.results) >= count:
            return ExitCode.OK
        if any(worker.timed_out for worker in self.workers):
            return ExitCode.NO_BOARD
        return ExitCode.OK
