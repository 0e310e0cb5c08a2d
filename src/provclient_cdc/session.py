"""The station's run: read the cert info, connect, then per board wait, prompt, provision.

:class:`Station` follows app note 8971A section 3.3.1 step by step and prints its lines::

    Reading provisioning config file atcaprov_cert_info_0.c...ok
    Connecting to localhost:11235...ok
    Press ESC to quit.
    Waiting for board to be connected...ok
        Device SN: 01234038D92CA571EE
        Press ENTER to provision...
    Writing config zone.......done
    ...
    Provisioning successful! Please remove board...
    Board removed. Waiting for board to be connected...ok

After a failed stage it says what failed (the server's message as written for an error reply),
whether the board was removed during that stage, and what the part now holds (from
:attr:`atcaprov.provisioning.ProvisioningError.part_state`); it never retries a board by itself.
A part that is already provisioned can be checked with ``V`` (:func:`atcaprov.verify`).
:meth:`Station.run` returns an :class:`ExitCode`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from atcaprov.certinfo import CertInfo, load_cert_info
from atcaprov.certreq import NotReadyError, ServerTooOldError, ready_request
from atcaprov.config import ConfigError, load_config_file
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
from atcaprov.return_codes import ReturnCodeError
from atcaprov.stages import ProvStage
from atcaprov.terminal import ENTER, ESC
from atcaprov.validation import verify

from .boards import Board, BoardError, BoardFinder
from .console import Keys, OperatorQuit
from .output import BoardResult, Output
from .server_link import (
    LinkHooks,
    ServerLink,
    ServerUnreachableError,
    connect_with_retry,
)

BOARD_POLL_S = 0.1


class ExitCode(IntEnum):
    """Process exit codes of ``provclient-cdc`` (documented in --help and docs/client.md)."""

    OK = 0  # every board provisioned (or none attempted before a --count of 0)
    BAD_INPUT = 2  # bad arguments, unreadable cert-info/config/TLS files
    SERVER_UNREACHABLE = 3  # server not reachable at start (after the retries)
    BOARD_FAILED = 4  # at least one board failed (already provisioned counts as failed)
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
    station_id: str | None = None
    yes: bool = False
    count: int | None = None
    connect_retries: int = 12
    retry_interval: float = 5.0
    wait_timeout: float | None = None
    kit_timeout: float = 3.0
    io_timeout: float = 30.0


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

    def __init__(self, options: StationOptions, output: Output, keys: Keys, *,
                 link: ServerLink, finder: BoardFinder | None = None) -> None:
        self.options = options
        self.output = output
        self.keys = keys
        self.link = link
        self.finder = finder or BoardFinder(options.board, kit_timeout=options.kit_timeout)
        self.hooks = LinkHooks(link, output, options.station_id)
        self.stats = StationStats()
        self.cert_info: CertInfo | None = None
        self.config: bytes | None = None
        self._reported: set[str] = set()
        self._interrupted_in: ProvStage | None = None  # stage a Ctrl-C stopped

    # ---- start -----------------------------------------------------------------------------
    def run(self) -> ExitCode:
        try:
            if not self._read_files():
                return ExitCode.BAD_INPUT
            try:
                connect_with_retry(self.link, self.output, self.keys,
                                   retries=self.options.connect_retries,
                                   interval=self.options.retry_interval)
            except ServerUnreachableError as exc:
                self.output.line(
                    f"Cannot reach the provisioning server at {self.link.address}:"
                    f" {exc.reason}. Is provserver running there?"
                )
                return ExitCode.SERVER_UNREACHABLE
            if not self._server_usable_at_start():
                return ExitCode.SERVER_UNREACHABLE
            self.output.line("Press ESC to quit.")
            return self._loop()
        except OperatorQuit:
            self.output.line("Quit.")
            return ExitCode.BOARD_FAILED if self.stats.failed else ExitCode.OPERATOR_QUIT
        except _NoBoard as exc:
            self.output.end("timed out")
            self.output.line(str(exc))
            return ExitCode.BOARD_FAILED if self.stats.failed else ExitCode.NO_BOARD
        except KeyboardInterrupt:
            if self._interrupted_in is not None:
                self.output.line("")
                self.output.detail(
                    f'Interrupted during "{self._interrupted_in.label}": the part may be left'
                    " with its config zone locked; plug it in again to resume."
                )
            raise
        finally:
            self.link.close()

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
                self.output.detail(f"Device SN: {board.serial_hex}")
                if not self.options.yes and not self._prompt_enter(board):
                    wait_text = "Board removed. Waiting for board to be connected..."
                    continue
                result = self._provision(board)
                if result is None:  # ConfigError: arguments unusable for any board
                    return ExitCode.BAD_INPUT
                result.chip_floor_ms = board.device.chip_floor_ms
                result.commands = sum(board.device.opcode_counts.values())
                self.stats.results.append(result)
                self.output.result(result)
                last = count is not None and len(self.stats.results) >= count
                if result.result != "removed":
                    if result.ok:
                        self.output.line("Provisioning successful! Please remove board...")
                    else:
                        self.output.line("Provisioning failed! Please remove board...")
                    if last:
                        break
                    self._wait_removed(board)
            finally:
                board.close()
            wait_text = "Board removed. Waiting for board to be connected..."
        return ExitCode.BOARD_FAILED if self.stats.failed else ExitCode.OK

    def _wait_for_board(self, text: str) -> Board:
        self.output.begin(text)
        deadline = (time.monotonic() + self.options.wait_timeout
                    if self.options.wait_timeout is not None else None)
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
                self.output.end("ok")
                return board
            if deadline is not None and time.monotonic() >= deadline:
                raise _NoBoard(f"No board within {self.options.wait_timeout:g} s"
                               f" ({self.finder.describe()}).")
            if self.keys.poll(BOARD_POLL_S) == ESC:
                self.output.end("")
                raise OperatorQuit("ESC pressed while waiting for a board")

    def _prompt_enter(self, board: Board) -> bool:
        """``Press ENTER to provision...``: True on ENTER, False if the board was removed."""
        self.output.detail("Press ENTER to provision...")
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
        deadline = (time.monotonic() + self.options.wait_timeout
                    if self.options.wait_timeout is not None else None)
        while not board.gone(0.2):
            if self.keys.poll(0.05) == ESC:
                raise OperatorQuit("ESC pressed while waiting for the board to be removed")
            if deadline is not None and time.monotonic() >= deadline:
                self.output.begin("Waiting for board to be removed...")
                raise _NoBoard(f"Board not removed within {self.options.wait_timeout:g} s"
                               f" ({board.url}).")

    # ---- one board -------------------------------------------------------------------------
    def _provision(self, board: Board) -> BoardResult | None:
        assert self.cert_info is not None
        result = BoardResult(index=len(self.stats.results) + 1, board=board.url,
                             serial_number=board.serial_hex,
                             station_id=self.options.station_id or "")
        self.hooks.reset()
        if not self.link.alive():
            self._reconnect_between_boards()
        board.device.reset_stats()  # chip_floor_ms / commands: this run only
        started = time.monotonic()
        try:
            done = provision(board.device, self.hooks, self.cert_info, config=self.config,
                             lock_slots=self.options.lock_slots, validate=self.options.validate)
        except ConfigError as exc:
            self.output.line(f"Cannot provision with these options: {exc}")
            return None
        except ServerNotReadyError as exc:
            result.elapsed_s = time.monotonic() - started
            self._report_not_ready(result, exc)
            return result
        except AlreadyProvisionedError as exc:
            result.elapsed_s = time.monotonic() - started
            self._fill_error(result, exc)
            result.result = "already_provisioned"
            self.output.detail("This part is already provisioned (data zone locked);"
                               " it was left untouched.")
            if not self.options.yes:
                result.verify = self._offer_verify(board)
            return result
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
                self.output.detail("Board removed before provisioning started; nothing was"
                                   " written.")
            return result
        except KeyboardInterrupt:
            self._interrupted_in = self.hooks.last_stage
            raise
        result.elapsed_s = time.monotonic() - started
        result.result = "ok"
        result.stage = self.hooks.last_stage
        result.part_state = PartState.PROVISIONED.name
        result.part_state_text = PartState.PROVISIONED.value
        result.skipped = list(done.skipped)
        return result

    def _reconnect_between_boards(self) -> None:
        """The server closed the connection since the last board: reconnect (with countdown)."""
        try:
            connect_with_retry(self.link, self.output, self.keys,
                               retries=self.options.connect_retries,
                               interval=self.options.retry_interval, verb="Reconnecting")
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

    def _report_failure(self, board: Board, result: BoardResult,
                        exc: ProvisioningError) -> None:
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

    def _offer_verify(self, board: Board) -> list[str] | None:
        assert self.cert_info is not None
        self.output.detail("Press V to verify it, ENTER to go on...")
        while True:
            key = self.keys.poll(0.1)
            if key == ESC:
                raise OperatorQuit("ESC pressed at the verify prompt")
            if key == ENTER:
                return None
            if key in ("v", "V"):
                break
            if board.gone(0.1):
                return None
        self.output.begin("Verifying part...")
        try:
            report = verify(board.device, self.cert_info, expected_config=self.config)
        except AtcaprovError as exc:
            self.output.end("failed")
            self.output.detail(f"Error: {exc}")
            return [f"FAIL verify: {exc}"]
        self.output.end("ok" if report.ok else "FAILED")
        lines = report.lines()
        for text in lines:
            self.output.detail(text)
        return lines

    @property
    def results(self) -> Sequence[BoardResult]:
        return self.stats.results


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)
