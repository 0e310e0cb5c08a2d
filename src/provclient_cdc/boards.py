"""Kit boards: which serial ports are kits, opening one, and noticing it was removed.

* :func:`is_kit_port` / :func:`find_kit_ports`: the ports ``serial.tools.list_ports`` lists
  that look like an Atmel/Microchip kit running the kit protocol firmware (USB VID 0x03EB, or a
  description such as "Communication Device Class ASF Example", "XPLAINED", "AT90USB").
* :class:`BoardFinder`: one attempt at a time to open a board, either the ``--board URL``
  (any pyserial URL: ``socket://127.0.0.1:PORT`` for the virtual board, a pty or device path)
  or the first kit port found. Opening discovers the ATECC device through the kit protocol
  (:class:`atcaprov.hal.kit_cdc.KitCdcHal`, port opened exclusively) and reads its serial
  number and its lock bytes (config block 0 and block 2, two Reads in one wake):
  :attr:`Board.part_state` says whether the part is blank, config-locked or provisioned before
  the operator is asked for ENTER. A port that cannot be opened leaves
  :attr:`BoardFinder.open_error` (the port and the system's reason, e.g. ``Connection
  refused``) so that the station can say so. A board another program holds is a
  :class:`BoardInUseError` ("board in use by another program"), said again on every attempt
  until the other program lets go.
* :class:`Board`: an open board. :meth:`Board.gone` checks passively (no bytes are sent, so a
  kit that swaps boards after host silence is not kept busy) whether the link closed: a socket
  at EOF, a pty or USB port that fails to read, or a device path that vanished.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import serial
from serial.tools import list_ports

from atcaprov.config import LOCK_CONFIG_OFFSET, LOCK_VALUE_OFFSET, LOCKED
from atcaprov.datasheet import UnknownChipModelError
from atcaprov.device import ZONE_CONFIG, Device
from atcaprov.errors import AtcaprovError, CommError
from atcaprov.hal.kit_cdc import KitCdcHal
from atcaprov.kit_protocol import BOARD_IN_USE, KitBoardInUseError
from atcaprov.provisioning import PartState

log = logging.getLogger(__name__)

KIT_USB_VID = 0x03EB
KIT_DESCRIPTIONS = ("Communication Device Class ASF Example", "XPLAINED", "AT90USB")
DEFAULT_KIT_TIMEOUT_S = 3.0


class BoardError(AtcaprovError):
    """A board was found but cannot be used (no ATECC device, port busy, ...)."""


class BoardInUseError(BoardError):
    """The board is held by another program (its port is locked, or the kit says so)."""


@dataclass(frozen=True)
class KitPort:
    """A serial port that looks like a kit."""

    url: str
    description: str


def is_kit_port(info: Any) -> bool:
    """True for a ``list_ports`` entry that looks like a CryptoAuth kit."""
    if getattr(info, "vid", None) == KIT_USB_VID:
        return True
    texts = " ".join(
        str(getattr(info, name, "") or "")
        for name in ("description", "product", "manufacturer", "interface")
    ).lower()
    return any(d.lower() in texts for d in KIT_DESCRIPTIONS)


PortLister = Callable[[], Iterable[Any]]


def find_kit_ports(lister: PortLister | None = None) -> list[KitPort]:
    """The kit ports present now, in the order the system lists them."""
    entries = list((lister or list_ports.comports)())
    return [
        KitPort(str(e.device), str(getattr(e, "description", "") or ""))
        for e in entries
        if is_kit_port(e)
    ]


def _is_device_path(url: str) -> bool:
    """A POSIX device or pty path (``/dev/ttyACM0``); not ``COM5`` nor a ``scheme://`` URL."""
    return url.startswith("/")


def part_state_of(lock_bytes: bytes) -> PartState:
    """The part's state from its config bytes 86..87 (LockValue, LockConfig)."""
    lock_value, lock_config = lock_bytes[0], lock_bytes[1]
    if lock_value == LOCKED:
        return PartState.PROVISIONED
    if lock_config == LOCKED:
        return PartState.CONFIG_LOCKED
    return PartState.UNLOCKED


def read_part(device: Device) -> tuple[bytes, PartState]:
    """Serial number and state of the part, read in one wake (config blocks 0 and 2)."""
    serial_number, state, _ = read_part_locks(device)
    return serial_number, state


def read_part_locks(device: Device) -> tuple[bytes, PartState, int]:
    """Serial number, state and SlotLocked bits (bit n is 0 when slot n is locked) of the part,
    read in one wake (config blocks 0 and 2: bytes 86..89 are in one block), after its model
    (Info; ``device.model`` afterwards)."""
    assert LOCK_CONFIG_OFFSET == LOCK_VALUE_OFFSET + 1
    with device.session():
        device.detect_model()
        serial_number = device.read_serial_number()
        locks = device.read_bytes_zone(ZONE_CONFIG, 0, LOCK_VALUE_OFFSET, 4)
    return serial_number, part_state_of(locks), int.from_bytes(locks[2:4], "little")


class Board:
    """An open kit board with its ATECC device: ``device``, ``serial_number``, ``url``,
    ``part_state`` and ``slot_locked_bits`` (as read when it was opened)."""

    def __init__(
        self,
        url: str,
        hal: KitCdcHal,
        port: Any,
        device: Device,
        serial_number: bytes,
        *,
        lister: PortLister | None = None,
        listed: bool = False,
        part_state: PartState | None = None,
        slot_locked_bits: int = 0xFFFF,
    ) -> None:
        self.url = url
        self.hal = hal
        self.port = port
        self.device = device
        self.serial_number = serial_number
        self.part_state = part_state
        self.slot_locked_bits = slot_locked_bits  # SlotLocked as read at opening (0: locked)
        self._lister = lister
        self._listed = listed  # found by scanning: also gone when no longer listed
        self._gone = False

    @property
    def serial_hex(self) -> str:
        return self.serial_number.hex().upper()

    def gone(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the board to go away; True once it has (sticky).

        Reads the port without sending anything: EOF or a read error means removed; bytes that
        arrive unasked are dropped.
        """
        if self._gone:
            return True
        if _is_device_path(self.url) and not os.path.exists(self.url):
            self._gone = True
            return True
        if self._listed:
            ports = {p.url for p in find_kit_ports(self._lister)}
            if self.url not in ports:
                self._gone = True
                return True
        previous = self.port.timeout
        try:
            self.port.timeout = max(timeout, 0.0)
            self.port.read(1)
        except (serial.SerialException, OSError):
            self._gone = True
            return True
        finally:
            try:
                self.port.timeout = previous
            except (serial.SerialException, OSError):
                self._gone = True
        return False

    def close(self) -> None:
        """Close the port (a board already removed is fine)."""
        hal_close_quietly(self.hal)


class BoardFinder:
    """Opens boards: ``url`` (``--board``) or the first kit port the system lists."""

    def __init__(
        self,
        url: str | None = None,
        *,
        kit_timeout: float = DEFAULT_KIT_TIMEOUT_S,
        lister: PortLister | None = None,
        serial_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.url = url
        self.kit_timeout = kit_timeout
        self._lister = lister
        self._serial_factory = serial_factory or serial.serial_for_url
        self._rejected: set[str] = set()  # scanned ports without a usable device, until removed
        # the port and why it could not be opened, at the last try (None: opened, or nothing)
        self.open_error: tuple[str, str] | None = None

    def describe(self) -> str:
        return self.url if self.url is not None else "kit boards on serial ports"

    def try_open(self) -> Board | None:
        """One attempt. None: nothing there yet (:attr:`open_error` says why if a port could not
        be opened). :class:`BoardError`: there, but unusable (reported once per port while it
        stays connected, when scanning)."""
        self.open_error = None
        if self.url is not None:
            return self._open(self.url, listed=False, quiet_absent=True)
        ports = find_kit_ports(self._lister)
        present = {p.url for p in ports}
        self._rejected &= present
        for port in ports:
            if port.url in self._rejected:
                continue
            try:
                board = self._open(port.url, listed=True, quiet_absent=True)
            except BoardInUseError:
                raise  # not remembered as unusable: it is free again once the other program quits
            except BoardError:
                self._rejected.add(port.url)
                raise
            if board is not None:
                return board
        return None

    def _open(self, url: str, *, listed: bool, quiet_absent: bool) -> Board | None:
        opened: list[Any] = []

        def factory(*args: Any, **kwargs: Any) -> Any:
            port = self._serial_factory(*args, **kwargs)
            opened.append(port)
            return port

        try:
            hal = KitCdcHal(url, timeout=self.kit_timeout, serial_factory=factory)
        except KitBoardInUseError as exc:
            raise BoardInUseError(f"board at {url}: {BOARD_IN_USE}") from exc
        except CommError as exc:
            if not opened and quiet_absent:
                self.open_error = (url, open_failure_reason(exc))
                return None  # the port cannot be opened: no board (yet)
            if opened and _link_closed(exc):
                return None  # board went away while we were talking to it
            raise BoardError(f"board at {url}: {exc}") from exc
        device = Device(hal)
        try:
            serial_number, state, slot_locked_bits = read_part_locks(device)
        except UnknownChipModelError as exc:
            hal_close_quietly(hal)
            raise BoardError(f"board at {url}: unsupported device: {exc}") from exc
        except CommError as exc:
            hal_close_quietly(hal)
            if _link_closed(exc):
                return None
            raise BoardError(
                f"board at {url}: cannot read the device serial number: {exc}"
            ) from exc
        return Board(
            url,
            hal,
            opened[0],
            device,
            serial_number,
            lister=self._lister,
            listed=listed,
            part_state=state,
            slot_locked_bits=slot_locked_bits,
        )


def open_failure_reason(exc: BaseException) -> str:
    """Why a port could not be opened, in the system's words (``Connection refused``, ``No such
    file or directory``, ``Permission denied``): the text of the deepest OSError in the chain
    (pyserial wraps the system's error in its own)."""
    reason = str(exc)
    seen: BaseException | None = exc
    for _ in range(8):  # a bounded walk down __cause__ / __context__
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            reason = seen.strerror
        seen = seen.__cause__ or seen.__context__
    return reason


def _link_closed(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(
        w in text
        for w in (
            "disconnected",
            "unplugged",
            "read failed",
            "closed",
            "connection reset",
            "broken pipe",
        )
    )


def hal_close_quietly(hal: KitCdcHal) -> None:
    """Close a HAL whose port may already be gone."""
    try:
        hal.close()
    except CommError as exc:  # the port was already gone: nothing left to release
        log.debug("closing %s: %s", hal, exc)
