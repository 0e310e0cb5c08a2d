"""The station's run: read the cert info, connect, then per board wait, prompt, provision.

:class:`Station` follows app note 8971A section 3.3.1 step by step and prints its lines::

    Reading provisioning config file atcaprov_cert_info_0.c...ok
    Connecting to localhost:11235...ok
    Press ESC to quit.
    Waiting for board to be connected...ok
        Device SN: 01234038D92CA571EE ATECC508A (blank)
        Press ENTER to provision...
    Writing config zone.......done
    ...
    Provisioning successful! Please remove board...
    Board removed. Waiting for board to be connected...ok

The part's model (read with Info when the board was opened: ATECC508A, ATECC608A, ATECC608B)
and state are shown next to its serial number before ENTER (``(blank)``, ``(config
locked: will resume)``, ``(already provisioned)``), read when the board was opened. A part that
is already provisioned is never handed to the flow: it is reported as such, and can be checked
with ``V`` (:func:`atcaprov.verify`). After a failed stage the station says what failed (the
server's message as written for an error reply), whether the board was removed during that
stage, and what the part now holds (from
:attr:`atcaprov.provisioning.ProvisioningError.part_state`); it never retries a board by itself.
Ctrl-C / SIGTERM during a stage name the stage and the part's state.

With ``verify_only`` (``--verify``) the station does not connect to the server: it verifies
each board's part and reports the checks. Every finished board is written to the station log
(:mod:`.station_log`); at exit a shift summary is printed. :meth:`Station.run` returns an
:class:`ExitCode`. The per-board pieces (:meth:`Station.show_part`, :meth:`Station.needs_enter`,
:meth:`Station.run_board`) are what gang mode's workers (:mod:`.gang`) run for each board.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from atcaprov import __version__
from atcaprov.certinfo import CertInfo, load_cert_info
from atcaprov.certreq import NotReadyError, ServerTooOldError, ready_request
from atcaprov.config import ConfigError, load_config_file
from atcaprov.config_models import ConfigModelError, check_config_model, default_config
from atcaprov.errors import AtcaprovError, CommError
from atcaprov.protocol import MAX_STATION_ID_BYTES
from atcaprov.provisioning import (
    AlreadyProvisionedError,
    PartState,
    ProvisioningError,
    ServerNotReadyError,
    check_arguments,
    provision,
)
from atcaprov.return_codes import ReturnCode, ReturnCodeError
from atcaprov.stages import ProvStage
from atcaprov.terminal import ENTER, ESC
from atcaprov.validation import first_config_difference, verify

from .boards import Board, BoardError, BoardFinder, read_part
from .console import Keys, OperatorQuit
from .failover import FailoverHooks, ServerPool
from .output import BoardResult, Output, format_duration, summary_lines
from .server_link import (
    LinkHooks,
    ServerLink,
    ServerUnreachableError,
    connect_with_retry,
)
from .station_log import StationLog, StationLogError

BOARD_POLL_S = 0.1

# What the operator reads next to the serial number, by the part's state when it was opened.
STATE_LABELS: dict[PartState, str] = {
    PartState.UNLOCKED: "blank",
    PartState.CONFIG_LOCKED: "config locked: will resume",
    PartState.PROVISIONED: "already provisioned",
}
CONFIG_OTHER_LABEL = "config locked with another config: cannot be provisioned"
UNKNOWN_STATE_TEXT = "unknown (interrupted while locking; check it with provclient-cdc --verify)"

# The last line of a board, by result (the seed's two first).
FINAL_LINES = {
    "ok": "Provisioning successful! Please remove board...",
    "failed": "Provisioning failed! Please remove board...",
    "already_provisioned": "Part already provisioned, left untouched. Please remove board...",
    "verified": "Verification successful! Please remove board...",
    "verify_failed": "Verification failed! Please remove board...",
}


class ExitCode(IntEnum):
    """Process exit codes of ``provclient-cdc`` (documented in --help and docs/client.md)."""

    OK = 0  # every board provisioned / verified (or none attempted before a --count of 0)
    BAD_INPUT = 2  # bad arguments, unreadable cert-info/config/TLS files, no station log
    SERVER_UNREACHABLE = 3  # server not reachable at start (after the retries)
    BOARD_FAILED = 4  # a board failed or failed verification (already provisioned counts)
    OPERATOR_QUIT = 5  # ESC (or end of input) before --count boards were done
    NO_BOARD = 6  # --wait-timeout passed without a board
    INTERRUPTED = 130  # Ctrl-C / SIGTERM


def default_station_id() -> str:
    """The host name, cut to the protocol's 64 bytes."""
    name = socket.gethostname() or "station"
    return name.encode("utf-8")[:MAX_STATION_ID_BYTES].decode("utf-8", "ignore")


@dataclass
class StationOptions:
    """What the command line decided."""

    certinfo: Path
    host: str = "localhost"
    port: int = 11235
    config: Path | None = None
    board: str | None = None
    lock_slots: tuple[int, ...] = ()
    validate: bool = True
    data_lock_crc: bool = True  # --no-data-lock-crc: the data lock without the summary CRC
    station_id: str | None = None
    yes: bool = False
    count: int | None = None
    connect_retries: int = 12
    retry_interval: float = 5.0
    wait_timeout: float | None = None
    kit_timeout: float = 3.0
    io_timeout: float = 30.0
    verify_only: bool = False  # --verify: check parts, provision nothing, no server
    log_dir: Path | None = None  # station log folder; None: no station log


@dataclass
class StationStats:
    """Totals of a run."""

    results: list[BoardResult] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.ok)


class _NoBoard(AtcaprovError):
    """--wait-timeout passed while waiting for a board."""


class Station:
    """One operator station: runs until ESC, ``count`` boards, or a fatal error."""

    def __init__(
        self,
        options: StationOptions,
        output: Output,
        keys: Keys,
        *,
        link: ServerLink,
        finder: BoardFinder | None = None,
        fallbacks: Sequence[ServerLink] = (),
    ) -> None:
        self.options = options
        self.output = output
        self.keys = keys
        self.pool = ServerPool([link, *fallbacks], output)  # several servers: failover.py
        self.finder = finder or BoardFinder(options.board, kit_timeout=options.kit_timeout)
        self.hooks: LinkHooks = FailoverHooks(self.pool, output, options.station_id)
        self.stats = StationStats()
        self.cert_info: CertInfo | None = None
        self.config: bytes | None = None
        self._reported: set[str] = set()
        self.station_log = StationLog(options.log_dir) if options.log_dir is not None else None
        self._interrupted: BoardResult | None = None  # the board a Ctrl-C stopped mid-stage
        self._board_seen = False  # a board was opened in this run
        self._shift_started: float | None = None  # when the board loop started

    @property
    def link(self) -> ServerLink:
        """The server in use (the first of the list until the station moves on)."""
        return self.hooks.link

    # ---- start -----------------------------------------------------------------------------
    def run(self) -> ExitCode:
        try:
            if not self._read_files() or not self._check_station_log():
                return ExitCode.BAD_INPUT
            if not self.options.verify_only and self.pool.several:
                if not self._choose_server_at_start():
                    return ExitCode.SERVER_UNREACHABLE
            elif not self.options.verify_only:
                try:
                    connect_with_retry(
                        self.link,
                        self.output,
                        self.keys,
                        retries=self.options.connect_retries,
                        interval=self.options.retry_interval,
                    )
                except ServerUnreachableError as exc:
                    self.output.line(
                        f"Cannot reach the provisioning server at {self.link.address}:"
                        f" {exc.reason}. Is provserver running there?"
                    )
                    return ExitCode.SERVER_UNREACHABLE
                if not self._server_usable_at_start():
                    return ExitCode.SERVER_UNREACHABLE
            self.output.line("Press ESC to quit.")
            self._shift_started = time.monotonic()
            return self._loop()
        except OperatorQuit:
            self.output.line("Quit.")
            return ExitCode.BOARD_FAILED if self.stats.failed else ExitCode.OPERATOR_QUIT
        except _NoBoard as exc:
            self.output.end("timed out")
            self.output.line(str(exc))
            return ExitCode.BOARD_FAILED if self.stats.failed else ExitCode.NO_BOARD
        except KeyboardInterrupt:
            self._report_interrupt()
            return ExitCode.INTERRUPTED
        finally:
            self.pool.close()
            self._print_summary()

    def _read_files(self) -> bool:
        path = self.options.certinfo
        self.output.begin(f"Reading provisioning config file {path}...")
        try:
            self.cert_info = load_cert_info(path)
        except (AtcaprovError, OSError, UnicodeDecodeError) as exc:
            self.output.end("failed")
            self.output.detail(f"Error: {_reason(exc)}")
            return False
        self.output.end("ok")
        if self.options.config is not None:
            self.output.begin(f"Reading device config file {self.options.config}...")
            try:
                self.config = load_config_file(self.options.config)
            except (AtcaprovError, OSError, UnicodeDecodeError) as exc:
                self.output.end("failed")
                self.output.detail(f"Error: {_reason(exc)}")
                return False
            self.output.end("ok")
        try:  # before any board: a config or lock-slot list no part could take
            check_arguments(self.cert_info, self.config, self.options.lock_slots)
        except ConfigError as exc:
            self.output.line(f"Cannot provision with these options: {exc}")
            return False
        return True

    # ---- readiness: nothing irreversible before the server is known ready ------------------
    def _server_usable_at_start(self) -> bool:
        """Ask the server once, right after connecting. An answer "not ready" (signer locked,
        unknown, no profile...) is shown and the station goes on: every board is asked again
        before anything is written. A server that cannot answer (TLS mismatch, protocol too
        old, connection lost) stops the station: False."""
        assert self.cert_info is not None
        address = self.link.address
        try:
            self.hooks.check_ready(ready_request(self.cert_info, self.options.station_id))
        except ServerTooOldError as exc:
            self.output.line(f"Cannot use the provisioning server at {address}: {exc.message}")
            return False
        except NotReadyError as exc:
            self.output.detail(f"Server not ready: {exc.message}")
        except (ReturnCodeError, OSError) as exc:  # link and protocol errors
            reason = exc.message if isinstance(exc, ReturnCodeError) else _reason(exc)
            self.output.line(f"Cannot use the provisioning server at {address}: {reason}")
            return False
        return True

    def _choose_server_at_start(self) -> bool:
        """Several servers: connect to each in order (``Connecting to HOST:PORT...ok``) and use
        the first that answers ready; if none is ready, the first reachable one (every board
        asks again, and moves on, before anything is written). None reachable: count down and
        go round again, ``connect_retries`` times; then False."""
        assert self.cert_info is not None
        request = ready_request(self.cert_info, self.options.station_id)
        rounds = 0
        while True:
            reachable: int | None = None
            reasons: list[str] = []
            for i, link in enumerate(self.pool.links):
                self.output.begin(f"Connecting to {link.address}...")
                try:
                    link.connect()
                except ServerUnreachableError as exc:
                    self.output.end(f"failed ({exc.reason})")
                    reasons.append(f"{link.address}: {exc.reason}")
                    continue
                self.output.end("ok")
                self.pool.index = i
                self.hooks.link = link
                try:  # this server alone (not the failover of FailoverHooks)
                    LinkHooks.check_ready(self.hooks, request)
                except ServerTooOldError as exc:
                    self.output.line(
                        f"Cannot use the provisioning server at {link.address}: {exc.message}"
                    )
                    reasons.append(f"{link.address}: {exc.message}")
                    continue
                except NotReadyError as exc:
                    self.output.detail(f"Server not ready: {exc.message}")
                    reachable = i if reachable is None else reachable
                    continue
                except (ReturnCodeError, OSError) as exc:
                    reason = exc.message if isinstance(exc, ReturnCodeError) else _reason(exc)
                    self.output.line(
                        f"Cannot use the provisioning server at {link.address}: {reason}"
                    )
                    reasons.append(f"{link.address}: {reason}")
                    continue
                self._use_server(i, "ready")
                return True
            if reachable is not None:
                self._use_server(reachable, "reachable, not ready")
                return True
            rounds += 1
            if rounds > self.options.connect_retries:
                self.output.line(
                    f"Cannot reach any provisioning server ({'; '.join(reasons)})."
                    " Is provserver running there?"
                )
                return False
            self._wait_before_round(reasons)

    def _use_server(self, index: int, how: str) -> None:
        for i, link in enumerate(self.pool.links):
            if i != index:
                link.close()  # reconnected when the station moves on to it
        self.pool.index = index
        self.hooks.link = self.pool.current
        names = ", ".join(link.address for link in self.pool.links)
        self.output.detail(f"Using server {self.link.address} ({how}; servers in order: {names}).")

    def _wait_before_round(self, reasons: list[str]) -> None:
        interval = self.options.retry_interval
        self.output.line(f"No server reachable, trying again in {interval:g} s...")
        deadline = time.monotonic() + interval
        while (left := deadline - time.monotonic()) > 0:
            if self.keys.poll(min(left, 0.25)) == ESC:
                raise OperatorQuit("ESC pressed while waiting for a server")

    def _report_not_ready(self, result: BoardResult, exc: ServerNotReadyError) -> None:
        """The check before the first write or lock said no: nothing was written or locked."""
        self._fill_error(result, exc)
        self.output.detail(f"Server not ready: {exc.message}")
        self.output.detail(f"Part state: {exc.part_state.value}")

    # ---- the board loop --------------------------------------------------------------------
    def _loop(self) -> ExitCode:
        count = self.options.count
        wait_text = "Waiting for board to be connected..."
        while count is None or len(self.stats.results) < count:
            board = self._wait_for_board(wait_text)
            try:
                self.show_part(board)
                if (
                    not self.options.yes
                    and self.needs_enter(board)
                    and not self._prompt_enter(board)
                ):
                    wait_text = "Board removed. Waiting for board to be connected..."
                    continue
                result = self.run_board(board)
                if result is None:  # ConfigError: arguments unusable for any board
                    return ExitCode.BAD_INPUT
                self._record(result)
                self.hooks.settle_report()  # the outcome report's acknowledgement, if left
                last = count is not None and len(self.stats.results) >= count
                if result.result != "removed":
                    self.output.line(FINAL_LINES.get(result.result, FINAL_LINES["failed"]))
                    if last:
                        break
                    self._wait_removed(board)
            finally:
                board.close()
            wait_text = "Board removed. Waiting for board to be connected..."
        return ExitCode.BOARD_FAILED if self.stats.failed else ExitCode.OK

    # ---- one opened board: the pieces the board loop (and gang mode's workers) use ---------
    def show_part(self, board: Board) -> None:
        """``    Device SN: ... (blank)``: the part's serial number and state."""
        self.output.detail(
            f"Device SN: {board.serial_hex} {board.device.model.name}{self._state_label(board)}"
        )

    def _already_done(self, board: Board) -> bool:
        return board.part_state is PartState.PROVISIONED and not self._pending_slot_locks(board)

    def needs_enter(self, board: Board) -> bool:
        """Whether the operator confirms this part (not for a provisioned part, which is only
        reported, unless verifying)."""
        return not (self._already_done(board) and not self.options.verify_only)

    def run_board(self, board: Board) -> BoardResult | None:
        """Verify the part (``--verify``), report it already provisioned, or provision it;
        the result carries the chip figures of this run. None: the options cannot provision
        any part (ConfigError, already said). Not recorded yet (:meth:`_record`)."""
        result: BoardResult | None
        if self.options.verify_only:
            result = self._verify_board(board)
        elif self._already_done(board):
            result = self._already_provisioned(board)
        else:
            result = self._provision(board)
        if result is not None:
            result.chip_floor_ms = board.device.chip_floor_ms
            result.commands = sum(board.device.opcode_counts.values())
        return result

    def _wait_for_board(self, text: str) -> Board:
        self.output.begin(text)
        deadline = (
            time.monotonic() + self.options.wait_timeout
            if self.options.wait_timeout is not None
            else None
        )
        while True:
            try:
                board = self.finder.try_open()
            except BoardError as exc:
                board = None
                message = str(exc)
                if message not in self._reported:  # say it once, keep waiting
                    self._reported.add(message)
                    self.output.end("")
                    self.output.detail(f"Board not usable: {message}")
                    self.output.begin("Waiting for board to be connected...")
            if board is not None:
                self._reported.clear()
                self._board_seen = True
                self.output.end("ok")
                return board
            self._report_unopenable()
            if deadline is not None and time.monotonic() >= deadline:
                raise _NoBoard(
                    f"No board within {self.options.wait_timeout:g} s ({self.finder.describe()})."
                )
            if self.keys.poll(BOARD_POLL_S) == ESC:
                self.output.end("")
                raise OperatorQuit("ESC pressed while waiting for a board")

    def _prompt_enter(self, board: Board) -> bool:
        """``Press ENTER to provision...`` (``to verify...`` under --verify): True on ENTER,
        False if the board was removed."""
        verb = "verify" if self.options.verify_only else "provision"
        self.output.detail(f"Press ENTER to {verb}...")
        while True:
            key = self.keys.poll(0.1)
            if key == ENTER:
                return True
            if key == ESC:
                raise OperatorQuit("ESC pressed at the ENTER prompt")
            if board.gone(0.1):
                self.output.detail("Board removed before provisioning.")
                return False

    def _wait_removed(self, board: Board) -> None:
        deadline = (
            time.monotonic() + self.options.wait_timeout
            if self.options.wait_timeout is not None
            else None
        )
        while not board.gone(0.2):
            if self.keys.poll(0.05) == ESC:
                raise OperatorQuit("ESC pressed while waiting for the board to be removed")
            if deadline is not None and time.monotonic() >= deadline:
                self.output.begin("Waiting for board to be removed...")
                raise _NoBoard(
                    f"Board not removed within {self.options.wait_timeout:g} s ({board.url})."
                )

    # ---- one board -------------------------------------------------------------------------
    def _provision(self, board: Board) -> BoardResult | None:
        assert self.cert_info is not None
        result = self._new_result(board)
        if self._config_refused(board, result):
            return result
        self.hooks.reset()
        if not self.pool.several and not self.link.alive():
            self._reconnect_between_boards()  # several: the readiness check moves on
        board.device.reset_stats()  # chip_floor_ms / commands: this run only
        started = time.monotonic()
        try:
            done = provision(
                board.device,
                self.hooks,
                self.cert_info,
                config=self.config,
                lock_slots=self.options.lock_slots,
                validate=self.options.validate,
                data_lock_crc=self.options.data_lock_crc,
            )
        except ConfigError as exc:
            self.output.line(f"Cannot provision with these options: {exc}")
            return None
        except ServerNotReadyError as exc:
            result.elapsed_s = time.monotonic() - started
            self._report_not_ready(result, exc)
            return result
        except AlreadyProvisionedError:  # the state read at opening said otherwise (swapped?)
            return self._already_provisioned(board)
        except ProvisioningError as exc:
            result.elapsed_s = time.monotonic() - started
            self._fill_error(result, exc)
            self._report_failure(board, result, exc)
            return result
        except CommError as exc:  # before the first stage (reading the config zone)
            result.elapsed_s = time.monotonic() - started
            result.error_code, result.error_message = "COMM_ERROR", str(exc)
            removed = board.gone(0.05)
            result.result = "removed" if removed else "failed"
            self.output.detail(f"Error: cannot read the part: {exc}")
            if removed:
                self.output.detail(
                    "Board removed before provisioning started; nothing was written."
                )
            return result
        except KeyboardInterrupt:
            result.elapsed_s = time.monotonic() - started
            self._interrupted_result(board, result)
            raise
        result.elapsed_s = time.monotonic() - started
        result.result = "ok"
        result.stage = self.hooks.last_stage
        result.part_state = PartState.PROVISIONED.name
        result.part_state_text = PartState.PROVISIONED.value
        result.skipped = list(done.skipped)
        return result

    def _config_refused(self, board: Board, result: BoardResult) -> bool:
        """A ``--config`` made for a chip model whose config map differs from this part's:
        refused before any chip command (the part stays as it was)."""
        if self.config is None:
            return False
        try:
            check_config_model(self.config, board.device.model)
        except ConfigModelError as exc:
            state = board.part_state or PartState.UNKNOWN
            result.result = "failed"
            result.error_code = ReturnCode.CONFIG_MISMATCH.name
            result.error_code_value = int(ReturnCode.CONFIG_MISMATCH)
            result.error_message = str(exc)
            result.part_state, result.part_state_text = state.name, state.value
            self.output.detail(f"Error: {exc}")
            self.output.detail(f"Part state: {state.value}")
            return True
        return False

    def _reconnect_between_boards(self) -> None:
        """The server closed the connection since the last board: reconnect (with countdown)."""
        try:
            connect_with_retry(
                self.link,
                self.output,
                self.keys,
                retries=self.options.connect_retries,
                interval=self.options.retry_interval,
                verb="Reconnecting",
            )
        except ServerUnreachableError:
            # Shown on the "Reconnecting...failed (reason)" line; provision()'s readiness check
            # tries once more and reports it before any chip command that writes or locks.
            return

    def _fill_error(self, result: BoardResult, exc: ProvisioningError) -> None:
        result.result = "failed"
        result.stage = exc.stage
        result.error_code = exc.code.name
        result.error_code_value = int(exc.code)
        result.error_message = exc.message
        result.part_state = exc.part_state.name
        result.part_state_text = exc.part_state.value
        if self.hooks.server_error is not None:
            result.server_message = self.hooks.server_error[1]

    def _report_failure(self, board: Board, result: BoardResult, exc: ProvisioningError) -> None:
        stage = exc.stage.label if exc.stage is not None else "provisioning"
        if self.hooks.server_error is not None:
            code, message = self.hooks.server_error
            self.output.detail(f"Server error: {message} ({code.name})")
        else:
            self.output.detail(f"Error: {exc.message} ({exc.code.name})")
        if isinstance(exc.__cause__, CommError) and board.gone(0.05):
            result.result = "removed"
            self.output.detail(f'Board removed during "{stage}".')
        self.output.detail(f"Part state: {exc.part_state.value}")

    def _offer_verify(self, board: Board, result: BoardResult) -> None:
        """``Press V to verify it, ENTER to go on...``; V verifies into ``result``."""
        self.output.detail("Press V to verify it, ENTER to go on...")
        while True:
            key = self.keys.poll(0.1)
            if key == ESC:
                raise OperatorQuit("ESC pressed at the verify prompt")
            if key == ENTER:
                return
            if key in ("v", "V"):
                break
            if board.gone(0.1):
                return
        started = time.monotonic()
        result.verify, result.verify_ok = self._verify_part(board)
        result.elapsed_s = time.monotonic() - started

    def _verify_part(self, board: Board) -> tuple[list[str], bool]:
        """``Verifying part...ok`` and one line per check; the lines and the verdict."""
        assert self.cert_info is not None
        self.output.begin("Verifying part...")
        try:
            report = verify(board.device, self.cert_info, expected_config=self.config)
        except AtcaprovError as exc:
            self.output.end("failed")
            self.output.detail(f"Error: {exc}")
            return [f"FAIL verify: {exc}"], False
        self.output.end("ok" if report.ok else "FAILED")
        lines = report.lines()
        for text in lines:
            self.output.detail(text)
        return lines, report.ok

    # ---- what the operator sees: part state, records, interrupts, summary --------------------
    def _pending_slot_locks(self, board: Board) -> list[int]:
        """Slots of ``--lock-slots`` a data-locked part does not have locked yet (a run stopped
        between the data lock and the slot locks): the flow finishes them."""
        if self.options.verify_only or board.part_state is not PartState.PROVISIONED:
            return []
        return [s for s in self.options.lock_slots if (board.slot_locked_bits >> s) & 1]

    def _state_label(self, board: Board) -> str:
        """`` (blank)``, `` (config locked: will resume)``, `` (already provisioned)``: from the
        lock bytes read at opening; a config-locked part is compared with the wanted config
        (one config-zone read) to say whether it will resume."""
        state = board.part_state
        if state is None:
            return ""
        pending = self._pending_slot_locks(board)
        if pending:
            slots = ", ".join(str(slot) for slot in pending)
            return f" (data locked: will finish slot locks {slots})"
        if state is PartState.CONFIG_LOCKED:
            if self.options.verify_only:
                return " (config locked)"
            try:
                current = board.device.read_config_zone()
            except AtcaprovError:
                return " (config locked)"
            wanted = self.config if self.config is not None else default_config(board.device.model)
            if first_config_difference(current, wanted, include_slot_locks=True) is not None:
                return f" ({CONFIG_OTHER_LABEL})"
        return f" ({STATE_LABELS.get(state, state.value)})"

    def _check_station_log(self) -> bool:
        """Before any board: the station log folder and today's file can be written."""
        if self.station_log is None:
            return True
        try:
            path = self.station_log.check()
            columns = self.station_log.columns_of(path)
        except StationLogError as exc:
            self.output.line(f"Error: {exc}")
            return False
        if "device_type" not in columns:
            self.output.line(
                f"Note: the station log {path} was started by an older client (no device_type"
                " column); today's rows keep its layout, tomorrow's file has the column."
            )
        return True

    def _report_unopenable(self) -> None:
        """Until a first board was opened, say at once why a port (``--board``, or a kit port
        found by scanning) cannot be opened, once per port and reason; afterwards its absence
        is a board being swapped."""
        if self.finder.open_error is None or self._board_seen:
            return
        url, reason = self.finder.open_error
        message = f"Cannot open board {url}: {reason}"
        if message in self._reported:
            return
        self._reported.add(message)
        self.output.end("")
        self.output.detail(message)
        self.output.begin("Waiting for board to be connected...")

    def _new_result(self, board: Board) -> BoardResult:
        """The result of ``board`` before anything is done: its serial number and chip model
        (read with Info when the board was opened; None if it was not)."""
        device = board.device
        return BoardResult(
            index=len(self.stats.results) + 1,
            board=board.url,
            serial_number=board.serial_hex,
            device_type=device.model.name if device.model_detected else None,
            station_id=self.options.station_id or "",
        )

    def _already_provisioned(self, board: Board) -> BoardResult:
        """A part whose data zone is locked: nothing is sent but the verification (V)."""
        result = self._new_result(board)
        board.device.reset_stats()
        result.result = "already_provisioned"
        result.error_code = ReturnCode.ALREADY_PROVISIONED.name
        result.error_code_value = int(ReturnCode.ALREADY_PROVISIONED)
        result.error_message = (
            f"part {board.serial_hex} is already provisioned (data zone"
            " locked); it was left untouched"
        )
        result.part_state = PartState.PROVISIONED.name
        result.part_state_text = PartState.PROVISIONED.value
        self.output.detail(
            "This part is already provisioned (data zone locked); it was left untouched."
        )
        if not self.options.yes:
            self._offer_verify(board, result)
        return result

    def _verify_board(self, board: Board) -> BoardResult:
        """``--verify``: the checks of :func:`atcaprov.verify`, nothing written."""
        result = self._new_result(board)
        board.device.reset_stats()
        started = time.monotonic()
        result.verify, result.verify_ok = self._verify_part(board)
        result.elapsed_s = time.monotonic() - started
        result.result = "verified" if result.verify_ok else "verify_failed"
        if board.part_state is not None:
            result.part_state = board.part_state.name
            result.part_state_text = board.part_state.value
        if not result.verify_ok and board.gone(0.05):
            result.result = "removed"
            self.output.detail("Board removed during verification.")
        return result

    def _record(self, result: BoardResult) -> None:
        """A finished board: totals, its JSON line, its station-log row."""
        self.stats.results.append(result)
        self.output.result(result)
        if self.station_log is None:
            return
        try:
            self.station_log.write(result)
        except StationLogError as exc:
            self.output.detail(f"Station log not written: {exc}")

    def _interrupted_result(self, board: Board, result: BoardResult) -> BoardResult:
        """The board a Ctrl-C / SIGTERM stopped: the stage it was in and the part's state."""
        stage = self.hooks.last_stage
        self._interrupted = result
        result.result = "interrupted"
        result.stage = stage
        result.error_code = "INTERRUPTED"
        when = "after" if self.hooks.last_stage_over else "during"
        result.error_message = (
            "interrupted" if stage is None else f'interrupted {when} "{stage.label}"'
        )
        state = _state_after(stage, board.part_state)
        if state is None:  # stopped while locking: ask the chip
            try:
                _, state = read_part(board.device)
            except (AtcaprovError, KeyboardInterrupt):
                state = None
        result.part_state = state.name if state is not None else "UNKNOWN"
        result.part_state_text = state.value if state is not None else UNKNOWN_STATE_TEXT
        result.chip_floor_ms = board.device.chip_floor_ms
        result.commands = sum(board.device.opcode_counts.values())
        self._interrupted = result  # reported on screen even if a second Ctrl-C stops _record
        self._record(result)
        return result

    def _report_interrupt(self) -> None:
        """``    Interrupted during "<stage>".`` (``after`` once the stage had ended) and the part
        state, then ``Interrupted.``"""
        if self.output.open_text:
            self.output.end("interrupted")
        result, self._interrupted = self._interrupted, None
        if result is not None and result.stage is not None:
            # 'Interrupted during "<stage>".', or 'after' when it had ended
            text = result.error_message or f'interrupted during "{result.stage.label}"'
            self.output.detail(f"I{text[1:]}.")
            self.output.detail(f"Part state: {result.part_state_text}")
        elif result is not None:
            self.output.detail("Interrupted before the first stage: nothing was written.")
        self.output.line("Interrupted.")

    def _print_summary(self) -> None:
        """The shift summary, once the board loop has started."""
        if self._shift_started is None:
            return
        duration = time.monotonic() - self._shift_started
        self._shift_started = None
        results = self.stats.results
        boards = f"{len(results)} board{'' if len(results) == 1 else 's'}"
        header = (
            f"Shift summary: {boards} in {format_duration(duration)}"
            f" (provclient-cdc {__version__}, station {self.options.station_id or '-'})"
        )
        for text in summary_lines(results, duration_s=duration, header=header):
            self.output.line(text)
        if self.station_log is not None:
            self.output.detail(f"Station log:          {self.station_log.today}")

    @property
    def results(self) -> Sequence[BoardResult]:
        return self.stats.results


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


def _state_after(stage: ProvStage | None, before: PartState | None) -> PartState | None:
    """What a part holds when a run stopped in ``stage`` (the last one started): None while it
    cannot be known without asking the chip (stopped inside a lock stage)."""
    if stage is None or stage <= ProvStage.CONFIG_WRITE:
        return before
    if stage is ProvStage.CONFIG_LOCK:
        return PartState.CONFIG_LOCKED if before is PartState.CONFIG_LOCKED else None
    if stage < ProvStage.DATA_LOCK:
        return PartState.CONFIG_LOCKED
    if stage is ProvStage.DATA_LOCK:
        return None
    return PartState.PROVISIONED
