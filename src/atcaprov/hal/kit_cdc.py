"""``kit-cdc``: a chip behind a USB kit that shows up as a serial port (CDC / virtual COM).

Thin adapter: the kit conversation is :class:`~atcaprov.hal.kit_hal.KitHal`; this module only
opens a pyserial port from any URL ``serial.serial_for_url`` understands (``COM5``,
``/dev/ttyACM0``, a pty path, ``socket://127.0.0.1:PORT`` for the virtual board) at 115200 8N1
and moves bytes, every read bounded by a timeout. A plain ``socket://HOST:PORT`` (no
pyserial options) is opened as a TCP connection of its own (:class:`_TcpPort`: one ``recv``
per read, where pyserial's handler polls before every read and cannot count what waits).

The port is opened exclusively (pyserial ``exclusive=True``: an advisory ``flock`` on POSIX
serial devices and ptys, Windows COM ports are always exclusive), so two programs cannot talk
to one kit at once: the second gets :class:`~atcaprov.kit_protocol.KitBoardInUseError`
("board in use by another program"). The virtual board gives the same answer to a second
``socket://`` client.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import serial

from .. import kit_protocol as kp
from ..errors import NoDevicesError
from .base import register_hal
from .kit_hal import DEFAULT_TIMEOUT_S, KitHal, KitTransportError

log = logging.getLogger(__name__)

BAUDRATE = 115200
_READ_CHUNK = 4096

SerialFactory = Callable[..., Any]


# errno of a port another program holds: its flock (EWOULDBLOCK/EAGAIN), or TIOCEXCL (EBUSY).
_IN_USE_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY})


def port_in_use(exc: BaseException) -> bool:
    """True when opening a port failed because another program has it open exclusively."""
    if getattr(exc, "errno", None) in _IN_USE_ERRNOS:
        return True
    # Windows: a COM port already open elsewhere fails with "Access is denied" (no errno).
    text = str(exc)
    return os.name == "nt" and ("PermissionError(13" in text or "Access is denied" in text)


def _plain_socket_address(url: str) -> tuple[str, int] | None:
    """(host, port) of a ``socket://HOST:PORT`` URL without options; None for anything else
    (a serial device, or a socket URL with pyserial options such as ``?logging=debug``)."""
    if not url.lower().startswith("socket://"):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.query or parts.path or not parts.hostname or port is None:
        return None
    return parts.hostname, port


class _TcpPort:
    """``socket://HOST:PORT`` (the virtual kit board) as a plain TCP connection.

    pyserial's ``socket://`` handler polls with ``select`` before each ``recv`` and can only
    tell whether a byte waits, not how many: a reply took four system calls and its Python
    around them. Here a read is one ``recv`` of what has arrived (waiting at most the
    timeout), a write one ``sendall``; Nagle's delay is off, as the kit's USB link has none.
    """

    def __init__(self, address: tuple[str, int], timeout: float) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection(address, timeout=timeout)
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            self.sock.close()
            raise
        self._sock_timeout: float | None = timeout

    def _set_timeout(self, value: float) -> None:
        if self._sock_timeout != value:
            self.sock.settimeout(value)
            self._sock_timeout = value

    def write(self, data: bytes, url: str) -> None:
        try:
            self._set_timeout(self.timeout)
            self.sock.sendall(data)
        except OSError as exc:
            raise KitTransportError(f"write to kit port {url!r} failed: {exc}") from exc

    def read_some(self, timeout: float, url: str) -> bytes:
        try:
            self._set_timeout(max(timeout, 0.0))
            data = self.sock.recv(_READ_CHUNK)
        except TimeoutError:
            return b""
        except OSError as exc:
            raise KitTransportError(
                f"read from kit port {url!r} failed (kit unplugged?): {exc}"
            ) from exc
        if not data:
            raise KitTransportError(f"read from kit port {url!r} failed: the kit closed the link")
        return data

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:  # already reset by the board: closing is all that is left
            log.debug("kit socket shutdown: %s", exc)
        self.sock.close()


@register_hal("kit-cdc")
class KitCdcHal(KitHal):
    """Kit protocol over a serial port.

    ``open_hal("kit-cdc", url="socket://127.0.0.1:5000")`` or ``url="/dev/ttyACM0"``. On open it
    discovers the device at ``device_index`` (``board:device(00)``) and selects it; the device
    type and address the kit reported are in :attr:`device_type` / :attr:`address`.
    ``serial_factory`` replaces ``serial.serial_for_url`` (tests).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        baudrate: int = BAUDRATE,
        dialect: str | kp.KitDialect = "auto",
        device_index: int = 0,
        max_line: int = kp.MAX_LINE_DEFAULT,
        serial_factory: SerialFactory | None = None,
    ) -> None:
        super().__init__(
            timeout=timeout, dialect=dialect, device_index=device_index, max_line=max_line
        )
        self.url = url
        self._tcp: _TcpPort | None = None
        self._port: Any = None
        self._port_timeout: float | None = None
        self._waiting_is_a_count = False
        address = _plain_socket_address(url) if serial_factory is None else None
        if address is not None:  # the virtual board: a plain TCP connection, no pyserial
            try:
                self._tcp = _TcpPort(address, self.timeout)
            except OSError as exc:
                raise NoDevicesError(f"cannot open kit port {url!r}: {exc}") from exc
        else:
            self._open_serial(url, baudrate, serial_factory or serial.serial_for_url)
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    def _open_serial(self, url: str, baudrate: int, factory: SerialFactory) -> None:
        try:
            self._port = factory(
                url,
                baudrate=baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=self.timeout,
                write_timeout=self.timeout,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            if port_in_use(exc):
                raise kp.KitBoardInUseError(
                    f"{kp.BOARD_IN_USE}: kit port {url!r} is held by another program ({exc})"
                ) from exc
            raise NoDevicesError(f"cannot open kit port {url!r}: {exc}") from exc
        self._port_timeout = self.timeout
        # pyserial's socket:// port answers in_waiting with 0 or 1 (whether a byte waits, not
        # how many): there the rest of a reply is taken with a zero-timeout read (a timeout
        # change costs nothing on a socket), or a reply would come two bytes per read.
        self._waiting_is_a_count = not url.lower().startswith("socket://")

    def __repr__(self) -> str:
        return f"KitCdcHal(url={self.url!r})"

    def _set_port_timeout(self, value: float) -> None:
        if self._port_timeout != value:
            self._port.timeout = value
            self._port_timeout = value

    def _write(self, data: bytes) -> None:
        if self._tcp is not None:
            self._tcp.write(data, self.url)
            return
        if self._port is None:
            raise KitTransportError(f"kit port {self.url!r} is closed")
        try:
            written = self._port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise KitTransportError(f"write to kit port {self.url!r} failed: {exc}") from exc
        if written is not None and written != len(data):
            raise KitTransportError(
                f"short write to kit port {self.url!r}: {written} of {len(data)} bytes"
            )

    def _read_some(self, timeout: float) -> bytes:
        if self._tcp is not None:
            return self._tcp.read_some(timeout, self.url)
        if self._port is None:
            raise KitTransportError(f"kit port {self.url!r} is closed")
        try:
            # Block for the first byte, then take whatever else already arrived without waiting:
            # pyserial's read(n) would otherwise wait for all n bytes or the timeout.
            # (the usual full-length wait reuses the port's timeout, sparing a reconfiguration:
            # on a real tty every timeout change is a tcsetattr, which halved the round trips
            # through a USB CDC /dev/ttyACM0, docs/hil.md; what already arrived is asked with
            # in_waiting instead of a zero-timeout read)
            self._set_port_timeout(self.timeout if timeout >= 0.9 * self.timeout else timeout)
            first: bytes = self._port.read(1)
            if not first:
                return b""
            rest: bytes
            if self._waiting_is_a_count:
                waiting = int(self._port.in_waiting)
                rest = self._port.read(min(waiting, _READ_CHUNK)) if waiting > 0 else b""
            else:
                self._set_port_timeout(0)
                rest = self._port.read(_READ_CHUNK)
        except (serial.SerialException, OSError) as exc:
            raise KitTransportError(
                f"read from kit port {self.url!r} failed (kit unplugged?): {exc}"
            ) from exc
        return first + rest

    def close(self) -> None:
        tcp, self._tcp = getattr(self, "_tcp", None), None
        if tcp is not None:
            tcp.close()
        port, self._port = getattr(self, "_port", None), None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                raise KitTransportError(f"closing kit port {self.url!r} failed: {exc}") from exc
