"""``kit-cdc``: a chip behind a USB kit that shows up as a serial port (CDC / virtual COM).

Thin adapter: the kit conversation is :class:`~atcaprov.hal.kit_hal.KitHal`; this module only
opens a pyserial port from any URL ``serial.serial_for_url`` understands (``COM5``,
``/dev/ttyACM0``, a pty path, ``socket://127.0.0.1:PORT`` for the virtual board) at 115200 8N1
and moves bytes, every read bounded by a timeout.

The port is opened exclusively (pyserial ``exclusive=True``: an advisory ``flock`` on POSIX
serial devices and ptys, Windows COM ports are always exclusive), so two programs cannot talk
to one kit at once: the second gets :class:`~atcaprov.kit_protocol.KitBoardInUseError`
("board in use by another program"). The virtual board gives the same answer to a second
``socket://`` client.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import serial

from .. import kit_protocol as kp
from ..errors import NoDevicesError
from .base import register_hal
from .kit_hal import DEFAULT_TIMEOUT_S, KitHal, KitTransportError

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
        factory = serial_factory or serial.serial_for_url
        try:
            self._port: Any = factory(
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
        self._port_timeout: float | None = self.timeout
        # pyserial's socket:// port answers in_waiting with 0 or 1 (whether a byte waits, not
        # how many): there the rest of a reply is taken with a zero-timeout read (a timeout
        # change costs nothing on a socket), or a reply would come two bytes per read.
        self._waiting_is_a_count = not url.lower().startswith("socket://")
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"KitCdcHal(url={self.url!r})"

    def _set_port_timeout(self, value: float) -> None:
        if self._port_timeout != value:
            self._port.timeout = value
            self._port_timeout = value

    def _write(self, data: bytes) -> None:
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
        port, self._port = getattr(self, "_port", None), None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                raise KitTransportError(f"closing kit port {self.url!r} failed: {exc}") from exc
