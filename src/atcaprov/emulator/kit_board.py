"""A virtual USB CryptoAuth kit board: emulated chips served over the kit protocol.

Owns the "board on the bench" (the kit's line logic is :class:`~.kit_firmware.KitFirmware`):
:class:`VirtualKitBoard` keeps chips persisted in a folder (``chip-000.json``...; new blank
chips are of the ``chip_types`` given, in turn, and a saved chip keeps its model), exactly one
plugged at a time, served over TCP (clients use pyserial ``socket://HOST:PORT``), a pty (a
serial device path, optionally behind a stable symlink), or the device side of a real serial
link (``tty=``, e.g. a USB CDC gadget's ``/dev/ttyGS0``, whose host side is a real
``/dev/ttyACM0``: see docs/hil.md). Like a serial port opened exclusively,
the board serves one program at a time: over TCP, a client that connects while another is
served is kept connected but answered ``board in use by another program`` to every line (its
connection is not closed first, so the answer cannot be lost to a reset), until it disconnects;
on a pty, clients lock the device themselves (pyserial ``exclusive=True``, an ``flock``).
Unplug closes the connections (or the pty) and refuses new ones; replug accepts again with the
same chip or the next one that is not provisioned yet. ``auto_swap`` plays the operator: once
the plugged chip's data zone is locked and the host has been silent for that many seconds, the
board unplugs, saves and replugs with the next blank chip. Chip files are saved on every
unplug, after every command that changes persistent memory, and on stop.

All I/O runs in one background thread (a selector loop); the control methods hand their work
to it and wait, so they are safe to call from any thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import select
import selectors
import socket
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .. import kit_protocol as kp
from ..datasheet import ATECC508A
from ..errors import AtcaprovError
from ..packet import Opcode
from .chip import Atecc508a, chip_class
from .kit_firmware import KitFirmware

log = logging.getLogger(__name__)

CHIP_FILE_PATTERN = "chip-{index:03d}.json"
CHIP_FILE_GLOB = "chip-*.json"
CONTROL_TIMEOUT_S = 10.0
MAX_REFUSED_CLIENTS = 8  # refused connections kept open to be told why; more are closed at once
SEND_TIMEOUT_S = 5.0
LOOP_TICK_S = 0.25
# Commands after which the chip's persistent memory may have changed: save the file.
_PERSISTENT_OPCODES = frozenset(
    {
        Opcode.WRITE,
        Opcode.LOCK,
        Opcode.GENKEY,
        Opcode.PRIVWRITE,
        Opcode.UPDATE_EXTRA,
        Opcode.COUNTER,
        Opcode.DERIVE_KEY,
        Opcode.ECDH,  # may write its result into slot N+1
    }
)

_T = TypeVar("_T")


_PR_SET_TIMERSLACK = 29  # linux/prctl.h
TIMER_SLACK_NS = 1


def tighten_timer_slack() -> bool:
    """Make this thread's sleeps end on time (Linux: the thread's timer slack, 50 us by
    default, down to :data:`TIMER_SLACK_NS`). With the timing model on, a chip's answer comes
    after a sleep to its execution time: the default slack made it about 0.05 ms late on every
    command. False where this cannot be done (not Linux, no C library)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_TIMERSLACK, TIMER_SLACK_NS, 0, 0, 0) == 0)
    except (OSError, AttributeError) as exc:
        log.debug("timer slack left as it is: %s", exc)
        return False


class KitBoardError(AtcaprovError):
    """The virtual board cannot do what was asked (bad folder, port in use, stopped...)."""


# --------------------------------------------------------------------------------------------
# Chips on disk
# --------------------------------------------------------------------------------------------
@dataclass
class ChipEntry:
    index: int
    path: Path
    chip: Atecc508a

    @property
    def provisioned(self) -> bool:
        return self.chip.data_locked

    def describe(self) -> str:
        if self.chip.data_locked:
            state = "provisioned"
        elif self.chip.config_locked:
            state = "config locked"
        else:
            state = "blank"
        return (
            f"{self.path.name} ({self.chip.model.name}, serial"
            f" {self.chip.serial_number.hex().upper()}, {state})"
        )


def load_chips(
    state_dir: Path,
    chips: int,
    *,
    timing_scale: float = 0.0,
    chip_types: Sequence[str] = (ATECC508A.name,),
) -> list[ChipEntry]:
    """Load every ``chip-*.json`` in ``state_dir`` (sorted), adding blank chips up to ``chips``.

    The chip at position n (0-based) of a new blank chip is of ``chip_types[n % len]``
    (``("atecc608b", "atecc508a")`` alternates); loaded chips keep the model of their file.
    """
    try:
        classes = [chip_class(name) for name in chip_types]
    except AtcaprovError as exc:
        raise KitBoardError(str(exc)) from exc
    if not classes:
        raise KitBoardError("chip_types is empty: name at least one chip type")
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KitBoardError(f"cannot use {state_dir} as the chip folder: {exc}") from exc
    entries: list[ChipEntry] = []
    for n, path in enumerate(sorted(state_dir.glob(CHIP_FILE_GLOB))):
        entries.append(ChipEntry(n, path, Atecc508a.load(path, timing_scale=timing_scale)))
    taken = {e.path.name for e in entries}
    number = 0
    while len(entries) < chips:
        name = CHIP_FILE_PATTERN.format(index=number)
        number += 1
        if name in taken:
            continue
        chip = classes[len(entries) % len(classes)](timing_scale=timing_scale)
        path = state_dir / name
        chip.save(path)
        entries.append(ChipEntry(len(entries), path, chip))
    if not entries:
        raise KitBoardError(f"no chip in {state_dir} and chips=0: nothing to plug")
    return entries


# --------------------------------------------------------------------------------------------
# The board
# --------------------------------------------------------------------------------------------
@dataclass
class _Conn:
    name: str
    decoder: kp.KitLineDecoder = field(default_factory=kp.KitLineDecoder)
    sock: socket.socket | None = None
    refused: bool = False  # connected while another client was served: answered "in use"


class VirtualKitBoard:
    """Emulated chips behind a kit, over TCP (``listen=(host, port)``), a pty (``pty=True``) or
    an existing tty device (``tty="/dev/ttyGS0"``: the board serves its device side; unplug and
    replug close and reopen it, the USB link itself is plugged by whoever owns the gadget).

    ``chip_types``: the models of the blank chips the board makes (``chips``), taken in turn.
    ``on_event(text)`` receives one human-readable line per event (ready, plugged, unplugged,
    auto-swap, client connected...). Use as a context manager or call :meth:`start` /
    :meth:`stop`.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        chips: int = 1,
        listen: tuple[str, int] | None = None,
        pty: bool = False,
        tty: str | os.PathLike[str] | None = None,
        link: str | os.PathLike[str] | None = None,
        auto_swap: float | None = None,
        timing_scale: float = 0.0,
        chip_types: Sequence[str] = (ATECC508A.name,),
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        if sum((pty, listen is not None, tty is not None)) > 1:
            raise KitBoardError("choose either listen=(host, port), pty=True or tty=PATH, one only")
        if tty is not None and link is not None:
            raise KitBoardError("link= only applies to a pty board, not to tty=")
        self._tty_device = Path(tty) if tty is not None else None
        pty = pty or tty is not None  # a tty device is served as the master side of a pty
        if not pty and listen is None:
            listen = ("127.0.0.1", 0)
        if link is not None and not pty:
            raise KitBoardError("link= only applies to a pty board")
        if auto_swap is not None and auto_swap < 0:
            raise KitBoardError(f"auto_swap must be >= 0 seconds, got {auto_swap}")
        if chips < 0:
            raise KitBoardError(f"chips must be >= 0, got {chips}")
        self.state_dir = Path(state_dir)
        self._listen_addr = listen
        self._use_pty = pty
        self.link = Path(link) if link is not None else None
        self.auto_swap = auto_swap
        self._on_event = on_event
        self._entries = load_chips(
            self.state_dir, chips, timing_scale=timing_scale, chip_types=chip_types
        )
        self._current: ChipEntry | None = None
        self._plugged = False
        self.firmware = KitFirmware(self._plugged_chip, on_command=self._after_command)
        self._last_activity = time.monotonic()
        self._sel: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._port: int | None = None
        self._conns: dict[int, _Conn] = {}
        self._pty_master: int | None = None
        self._pty_slave: int | None = None
        self.pty_path: str | None = None
        self._control: queue.Queue[Callable[[], None]] = queue.Queue()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._exhausted = False
        self.url: str = ""

    # ---- events ----------------------------------------------------------------------------
    def _event(self, text: str) -> None:
        log.info("board: %s", text)
        if self._on_event is not None:
            self._on_event(text)

    # ---- public state ----------------------------------------------------------------------
    @property
    def chips(self) -> list[ChipEntry]:
        return list(self._entries)

    @property
    def plugged(self) -> bool:
        return self._plugged

    @property
    def current_chip(self) -> Atecc508a | None:
        """The chip on the plugged board, None while unplugged."""
        return self._current.chip if self._plugged and self._current is not None else None

    @property
    def current_entry(self) -> ChipEntry | None:
        """The chip (with its file) last plugged, also while unplugged."""
        return self._current

    @property
    def exhausted(self) -> bool:
        """True after a replug found no blank chip left."""
        return self._exhausted

    @property
    def port(self) -> int | None:
        return self._port

    def status(self) -> str:
        """One line: plugged or not, which chip, where."""
        where = self.url or "not started"
        if self._plugged and self._current is not None:
            return f"plugged: {self._current.describe()} at {where}"
        last = f"; last chip {self._current.describe()}" if self._current else ""
        return f"unplugged{last}"

    def _plugged_chip(self) -> Atecc508a | None:
        return self.current_chip

    # ---- life cycle ------------------------------------------------------------------------
    def __enter__(self) -> VirtualKitBoard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        """Plug the first chip that is not provisioned (else the first one), start serving and
        return the URL (``socket://HOST:PORT``) or path (pty, or the link) clients should use."""
        if self._running:
            raise KitBoardError("board already started")
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        first = next((e for e in self._entries if not e.provisioned), self._entries[0])
        try:
            self._plug(first, announce=False)
        except BaseException:
            self._teardown()
            raise
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="virtual-kit-board", daemon=True)
        self._thread.start()
        self._event(f"Board ready: {self.url}")  # first line: what clients wait for
        self._event(f"Plugged {first.describe()} at {self.url}")
        return self.url

    def stop(self) -> None:
        """Unplug (saving the chip), stop serving. Idempotent."""
        if not self._running:
            return
        try:
            self._call(self._shutdown_in_loop)
        finally:
            self._running = False
            if self._thread is not None:
                self._thread.join(timeout=CONTROL_TIMEOUT_S)
            self._teardown()

    def unplug(self) -> None:
        """Close connections / the pty, refuse new ones, save the chip."""
        self._call(self._unplug)

    def replug(self, next_chip: bool = False) -> ChipEntry | None:
        """Accept connections again with the same chip, or with the next one that is not
        provisioned (``next_chip=True``). Returns the plugged chip, or None if no blank chip
        is left (the board then stays unplugged)."""
        return self._call(lambda: self._replug(next_chip))

    def save(self) -> None:
        """Save the current chip's file now."""
        self._call(self._save_current)

    # ---- control plumbing ------------------------------------------------------------------
    def _call(self, fn: Callable[[], _T]) -> _T:
        if not self._running:
            raise KitBoardError("board is not running")
        if self._thread is None or not self._thread.is_alive():
            return fn()  # loop gone (it logged why): nothing runs concurrently any more
        if threading.current_thread() is self._thread:
            return fn()
        done = threading.Event()
        box: dict[str, Any] = {}

        def job() -> None:
            try:
                box["result"] = fn()
            except BaseException as exc:  # handed to the caller's thread below
                box["error"] = exc
            finally:
                done.set()

        self._control.put(job)
        assert self._wake_w is not None
        with contextlib.suppress(OSError):  # a full wake pipe already means "wake up"
            self._wake_w.send(b"x")
        if not done.wait(CONTROL_TIMEOUT_S):
            raise KitBoardError(f"board loop did not answer within {CONTROL_TIMEOUT_S} s")
        if "error" in box:
            raise box["error"]
        result: _T = box.get("result")  # type: ignore[assignment]
        return result

    # ---- plug / unplug (loop thread, or before the loop starts) -----------------------------
    def _plug(self, entry: ChipEntry, *, announce: bool = True) -> None:
        self._current = entry
        self.firmware.reset()
        if self._use_pty:
            self._open_pty()
        else:
            self._open_listener()
        self._plugged = True
        self._last_activity = time.monotonic()
        if announce:
            self._event(f"Plugged {entry.describe()} at {self.url}")

    def _unplug(self) -> None:
        if not self._plugged:
            return
        self._plugged = False
        for fd in list(self._conns):
            self._close_conn(fd, "board unplugged")
        self._close_listener()
        self._close_pty()
        if self._current is not None:
            self._current.chip.power_off()  # power lost: volatile state gone
            self._save_current()
            self._event(f"Unplugged {self._current.describe()}; saved")

    def _replug(self, next_chip: bool) -> ChipEntry | None:
        if self._plugged:
            self._unplug()
        entry = self._current
        if next_chip or entry is None:
            entry = self._next_blank()
            if entry is None:
                self._exhausted = True
                self._event("No blank chip left: board stays unplugged")
                return None
        self._exhausted = False
        self._plug(entry)
        return entry

    def _next_blank(self) -> ChipEntry | None:
        start = self._current.index + 1 if self._current is not None else 0
        count = len(self._entries)
        for k in range(count):
            entry = self._entries[(start + k) % count]
            if not entry.provisioned and entry is not self._current:
                return entry
        return None

    def _save_current(self) -> None:
        if self._current is not None:
            self._current.chip.save(self._current.path)

    def _after_command(self, opcode: int) -> None:
        if opcode in _PERSISTENT_OPCODES:
            self._save_current()

    # ---- transports ------------------------------------------------------------------------
    def _open_listener(self) -> None:
        assert self._sel is not None and self._listen_addr is not None
        host = self._listen_addr[0]
        port = self._port if self._port is not None else self._listen_addr[1]
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise KitBoardError(f"cannot listen on {host}:{port}: {exc}") from exc
        sock.listen(4)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        self._listener = sock
        self._sel.register(sock, selectors.EVENT_READ, ("listen", None))
        shown = f"[{host}]" if ":" in host else host
        self.url = f"socket://{shown}:{self._port}"

    def _close_listener(self) -> None:
        if self._listener is not None:
            assert self._sel is not None
            self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def _open_pty(self) -> None:
        assert self._sel is not None
        if self._tty_device is not None:
            self._open_tty(self._tty_device)
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing, no CR/LF translation
        os.set_blocking(master, False)
        self._pty_master, self._pty_slave = master, slave
        self.pty_path = os.ttyname(slave)
        self._conns[master] = _Conn(name=f"pty {self.pty_path}")
        self._sel.register(master, selectors.EVENT_READ, ("pty", master))
        if self.link is not None:
            self._remove_link()
            self.link.symlink_to(self.pty_path)
            self.url = str(self.link)
        else:
            self.url = self.pty_path

    def _open_tty(self, device: Path) -> None:
        """Serve the device side of a real serial link (raw, non-blocking), like a pty master."""
        assert self._sel is not None
        try:
            fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            raise KitBoardError(f"cannot open {device}: {exc}") from exc
        try:
            tty.setraw(fd)  # no echo, no line editing, no CR/LF translation
        except (OSError, termios.error) as exc:
            os.close(fd)
            raise KitBoardError(f"cannot set {device} raw: {exc}") from exc
        self._pty_master, self._pty_slave = fd, None
        self.pty_path = str(device)
        self._conns[fd] = _Conn(name=f"tty {device}")
        self._sel.register(fd, selectors.EVENT_READ, ("pty", fd))
        self.url = str(device)

    def _remove_link(self) -> None:
        if self.link is not None and self.link.is_symlink():
            self.link.unlink()

    def _close_pty(self) -> None:
        if self._pty_master is None:
            return
        assert self._sel is not None
        master = self._pty_master
        if master in self._conns:
            del self._conns[master]
            self._sel.unregister(master)
        os.close(master)
        if self._pty_slave is not None:
            os.close(self._pty_slave)
        self._pty_master = self._pty_slave = None
        self._remove_link()

    def _close_conn(self, fd: int, why: str) -> None:
        conn = self._conns.get(fd)
        if conn is None or conn.sock is None:
            return  # the pty "connection" goes with the pty (_close_pty)
        del self._conns[fd]
        assert self._sel is not None
        self._sel.unregister(conn.sock)
        conn.sock.close()
        self._event(f"Client {conn.name} disconnected ({why})")

    def _accept(self) -> None:
        assert self._listener is not None and self._sel is not None
        try:
            sock, addr = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(True)
        sock.settimeout(SEND_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        name = f"{addr[0]}:{addr[1]}"
        served = self._served_client()
        refused = served is not None
        if refused and sum(c.refused for c in self._conns.values()) >= MAX_REFUSED_CLIENTS:
            sock.close()
            self._event(f"Client {name} closed at once: board in use, too many waiting")
            return
        self._conns[sock.fileno()] = _Conn(name=name, sock=sock, refused=refused)
        self._sel.register(sock, selectors.EVENT_READ, ("client", sock.fileno()))
        if served is not None:
            self._event(f"Client {name} refused: {kp.BOARD_IN_USE} ({served.name})")
        else:
            self._event(f"Client {name} connected")

    def _served_client(self) -> _Conn | None:
        """The TCP client being served, if it is still connected.

        A client that closed just before the next one connected may not have been seen to go
        yet (both events can come in one select round): its end of stream is read here first,
        so a program that closes and reopens the board is never refused by its own ghost.
        """
        for fd, conn in list(self._conns.items()):
            if conn.sock is None or conn.refused:
                continue
            try:
                readable, _, _ = select.select([conn.sock], [], [], 0)
                if readable and not conn.sock.recv(1, socket.MSG_PEEK):
                    self._close_conn(fd, "closed by host")
                    continue
            except OSError as exc:
                self._close_conn(fd, f"read error: {exc}")
                continue
            return conn
        return None

    def _serve_lines(self, conn: _Conn, data: bytes, send: Callable[[bytes], None]) -> None:
        self._last_activity = time.monotonic()
        replies: list[bytes] = []
        try:
            for line in conn.decoder.feed(data):
                replies.append(self.firmware.handle_line(line))
        except kp.KitFrameTooLongError as exc:
            log.debug("kit: %s", exc)
            replies.append(kp.format_kit_reply(kp.KitStatus.INVALID_SIZE))
        except kp.KitFrameError as exc:
            log.debug("kit: %s", exc)
            replies.append(kp.format_kit_reply(kp.KitStatus.COMMAND_NOT_VALID))
        if replies:
            send(b"".join(replies))
        # Silence is counted from the last answer: a command's execution time (timing model)
        # is the board being busy, not the host being quiet.
        self._last_activity = time.monotonic()

    def _on_client(self, fd: int) -> None:
        conn = self._conns.get(fd)
        if conn is None or conn.sock is None:
            return
        sock = conn.sock
        try:
            data = sock.recv(4096)
        except OSError as exc:
            self._close_conn(fd, f"read error: {exc}")
            return
        if not data:
            self._close_conn(fd, "closed by host")
            return
        try:
            if conn.refused:
                self._refuse_lines(conn, data, sock.sendall)
            else:
                self._serve_lines(conn, data, sock.sendall)
        except OSError as exc:
            self._close_conn(fd, f"write error: {exc}")

    def _refuse_lines(self, conn: _Conn, data: bytes, send: Callable[[bytes], None]) -> None:
        """A client connected while another is served: every line gets "board in use"."""
        try:
            count = len(conn.decoder.feed(data))
        except kp.KitFrameError:
            count = 1
        if count:
            send(kp.format_board_in_use() * count)

    def _on_pty(self, fd: int) -> None:
        conn = self._conns.get(fd)
        if conn is None:
            return
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: no process has the slave open; keep serving
            log.debug("pty read: %s", exc)
            return
        if data:
            self._serve_lines(conn, data, lambda out: self._pty_write(fd, out))

    def _pty_write(self, fd: int, data: bytes) -> None:
        deadline = time.monotonic() + SEND_TIMEOUT_S
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._event(f"pty host is not reading; dropped {len(view)} reply bytes")
                    return
                select.select([], [fd], [], remaining)

    # ---- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        assert self._sel is not None
        if any(e.chip.timing_scale > 0 for e in self._entries):
            tighten_timer_slack()
        while self._running:
            try:
                events = self._sel.select(timeout=self._next_tick())
            except OSError as exc:
                log.error("board selector failed: %s", exc)
                break
            try:
                for key, _mask in events:
                    self._dispatch(*key.data)
                self._run_control()
                self._check_auto_swap()
            except (AtcaprovError, OSError) as exc:
                # One bad event (a chip file that cannot be saved, a port that cannot be
                # re-bound) must not take the whole board down.
                log.error("board: %s", exc)
                self._event(f"Error: {exc}")

    def _dispatch(self, kind: str, fd: int | None) -> None:
        if kind == "wake":
            self._drain_wake()
        elif kind == "listen":
            self._accept()
        elif kind == "client" and fd is not None:
            self._on_client(fd)
        elif kind == "pty" and fd is not None:
            self._on_pty(fd)

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(512):
                pass

    def _run_control(self) -> None:
        while True:
            try:
                job = self._control.get_nowait()
            except queue.Empty:
                return
            job()

    def _next_tick(self) -> float:
        """Select timeout: the loop tick, or sooner when an auto-swap falls due."""
        if self.auto_swap is None or not self._plugged or self._current is None:
            return LOOP_TICK_S
        if not self._current.chip.data_locked:
            return LOOP_TICK_S
        due = self.auto_swap - (time.monotonic() - self._last_activity)
        return min(LOOP_TICK_S, max(due, 0.001))

    def _check_auto_swap(self) -> None:
        if self.auto_swap is None or not self._plugged or self._current is None:
            return
        if not self._current.chip.data_locked:
            return
        silent = time.monotonic() - self._last_activity
        if silent < self.auto_swap:
            return
        self._event(
            f"Auto-swap: {self._current.path.name} is provisioned and the host has been silent"
            f" for {silent:.1f} s"
        )
        self._replug(next_chip=True)

    def _shutdown_in_loop(self) -> None:
        try:
            self._unplug()
        finally:
            self._running = False

    def _teardown(self) -> None:
        for fd in list(self._conns):
            self._close_conn(fd, "board stopped")
        self._close_listener()
        self._close_pty()
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._wake_r = self._wake_w = None
