"""Fault injection for testing a line's error handling without hardware: the chip link and the
server link.

``FaultHal(inner)`` passes everything to ``inner`` until a fault is armed with :meth:`FaultHal.arm`
(``after`` delays it by that many commands, ``times`` repeats it on that many consecutive
commands; wakes instead of commands for ``"wake"``):

* ``"unplug"``: the board disappears before the command reaches the chip. The chip loses its
  power (``power_off``, see below) and so its volatile state (TempKey...); this and every later
  call raise :class:`~atcaprov.errors.CommError`, as a real transport does when the USB device
  is gone;
* ``"unplug_after"``: the same, but the chip executes the command first (power lost before
  the answer came back);
* ``"timeout"``: the command never reaches the chip; :class:`~atcaprov.errors.CommTimeoutError`;
* ``"lost"``: the chip executes the command, its response is lost (``CommTimeoutError``);
* ``"crc"``: the chip executes the command, its response comes back with a corrupted CRC
  (``times=n`` corrupts the next n responses: with ``n`` above the device's resend budget,
  every retry of the command fails too);
* ``"wake"``: the next wake token(s) get no answer;
* an ``int``: the command does not reach the chip and is answered with that status byte
  (``0x00`` acknowledges a command the chip never ran).

``power_off`` is what "unplug" calls to cut the chip's power: by default the inner driver's own
``power_off`` if it has one (the ``emulator`` driver does); a test against a virtual kit board
passes the board's ``unplug``. Registered as the ``fault`` driver
(``open_hal("fault", inner=other_hal)``).

``ServerCutHooks(hooks)`` wraps a client's :class:`~atcaprov.hooks.ProvisioningHooks` and cuts
the server connection of the next certificate request at one point
(:data:`SERVER_CUTS`): refused at connect, closed right after the request was sent, closed in
the middle of the reply header or body, a receive timeout, a connection reset.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import CommError, CommTimeoutError
from ..packet import build_status
from ..protocol import HEADER_SIZE
from ..return_codes import ReturnCode
from ..stages import ProvStage, ProvStatus
from .base import Hal, register_hal

if TYPE_CHECKING:
    from ..device import Device
    from ..hooks import ProvisioningHooks

Fault = str | int

COMMAND_FAULTS = ("unplug", "unplug_after", "timeout", "lost", "crc")
"""Named faults that hit a command (``int`` status bytes hit a command too)."""
FAULTS = (*COMMAND_FAULTS, "wake")
"""Every named fault :meth:`FaultHal.arm` takes."""
SERVER_CUTS = ("refused", "after_send", "mid_header", "mid_body", "timeout", "reset")
"""Where :class:`ServerCutHooks` can cut the server connection."""

_MID_HEADER = HEADER_SIZE // 2
_MID_BODY_EXTRA = 8  # body bytes delivered before a "mid_body" cut


@register_hal("fault")
class FaultHal(Hal):
    """Wraps another HAL and fails on request (see the module docstring)."""

    def __init__(self, inner: Hal, *, power_off: Callable[[], None] | None = None) -> None:
        self.inner = inner
        self._power_off = power_off if power_off is not None else getattr(inner, "power_off", None)
        self._fault: Fault | None = None
        self._after = 0
        self._times = 0
        self.unplugged = False
        self.commands = 0
        self.wakes = 0
        self.fired: list[tuple[int, Fault]] = []
        """(command or wake index, fault) of every fault that fired: what a test reports."""

    @property
    def armed(self) -> Fault | None:
        """The fault still waiting to fire (or still repeating), or None."""
        return self._fault

    def arm(self, fault: Fault, *, after: int = 0, times: int = 1) -> None:
        """Fail the command that comes ``after`` commands from now (and ``times - 1`` more), as
        ``fault`` says; for ``"wake"``, the wake ``after`` wakes from now (and ``times - 1``
        more)."""
        if isinstance(fault, str) and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}: use one of {', '.join(FAULTS)} or a status")
        if isinstance(fault, int) and not 0 <= fault <= 0xFF:
            raise ValueError(f"status byte {fault!r} out of range 0..0xFF")
        if after < 0 or times < 1:
            raise ValueError(f"after must be >= 0 and times >= 1, got {after} and {times}")
        self._fault, self._after, self._times = fault, after, times

    def disarm(self) -> None:
        self._fault = None

    def _check_unplugged(self) -> None:
        if self.unplugged:
            raise CommError("board removed: the kit no longer answers")

    def _unplug(self) -> None:
        self.unplugged = True
        self._fault = None
        if self._power_off is not None:
            self._power_off()

    def _take(self, wake: bool) -> Fault | None:
        """The fault due now for a wake (``wake``) or a command, counting it down."""
        fault = self._fault
        if fault is None or (fault == "wake") != wake:
            return None
        if self._after > 0:
            self._after -= 1
            return None
        self._times -= 1
        if self._times <= 0:
            self._fault = None
        self.fired.append((self.wakes - 1 if wake else self.commands - 1, fault))
        return fault

    def wake(self) -> bytes:
        self._check_unplugged()
        self.wakes += 1
        if self._take(wake=True) is not None:
            return b""  # no answer to the wake token
        return self.inner.wake()

    def idle(self) -> None:
        self._check_unplugged()
        self.inner.idle()

    def sleep(self) -> None:
        self._check_unplugged()
        self.inner.sleep()

    def transact(self, packet: bytes, exec_time_ms: float) -> bytes:
        self._check_unplugged()
        self.commands += 1
        fault = self._take(wake=False)
        if fault is None:
            return self.inner.transact(packet, exec_time_ms)
        if fault == "unplug":
            self._unplug()
            raise CommError("board removed: the kit no longer answers")
        if fault == "timeout":
            raise CommTimeoutError("no answer from the kit within the timeout (injected)")
        if isinstance(fault, int):
            return build_status(fault)
        response = self.inner.transact(packet, exec_time_ms)
        if fault == "lost":
            raise CommTimeoutError("the chip's answer was lost (injected, after it executed)")
        if fault == "unplug_after":
            self._unplug()
            raise CommError("board removed after the command reached the chip")
        return response[:-1] + bytes((response[-1] ^ 0xFF,))  # "crc"

    def close(self) -> None:
        self.inner.close()


class ServerCutHooks:
    """Hooks that pass everything to ``inner`` but cut the server connection of the next
    request at ``cut`` (one of :data:`SERVER_CUTS`; None = no cut until :meth:`arm`).

    The cut happens once; the request after it goes through. Attributes the wrapper does not
    have (``station_id``...) are the inner hooks' own.
    """

    def __init__(self, inner: ProvisioningHooks, cut: str | None = None) -> None:
        self.inner = inner
        self._cut: str | None = None
        self._delivered = 0
        self.cuts_done = 0
        if cut is not None:
            self.arm(cut)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def arm(self, cut: str) -> None:
        if cut not in SERVER_CUTS:
            raise ValueError(f"unknown server cut {cut!r}: use one of {', '.join(SERVER_CUTS)}")
        self._cut = cut

    def _done(self) -> None:
        self._cut = None
        self.cuts_done += 1

    def certreq_start(self) -> None:
        self._delivered = 0
        if self._cut == "refused":
            self._done()
            raise ConnectionRefusedError(errno.ECONNREFUSED, "connection refused (injected)")
        self.inner.certreq_start()

    def certreq_send(self, data: bytes) -> None:
        self.inner.certreq_send(data)

    def certreq_recv(self, n: int) -> bytes:
        cut = self._cut
        if cut is None or cut == "refused":
            return self.inner.certreq_recv(n)
        if cut == "timeout":
            self._done()
            raise TimeoutError("no reply from the server in time (injected)")
        if cut == "reset":
            self._done()
            raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer (injected)")
        limit = {"after_send": 0, "mid_header": _MID_HEADER,
                 "mid_body": HEADER_SIZE + _MID_BODY_EXTRA}[cut]
        room = limit - self._delivered
        if room <= 0:
            self._done()
            return b""  # the server closed the connection
        data = self.inner.certreq_recv(min(n, room))
        self._delivered += len(data)
        return data

    def certreq_done(self) -> None:
        self.inner.certreq_done()

    def request_error(self, code: ReturnCode, message: str) -> None:
        self.inner.request_error(code, message)

    def notify(self, stage: ProvStage, status: ProvStatus) -> None:
        self.inner.notify(stage, status)

    def write_data_zone(self, device: Device) -> None:
        self.inner.write_data_zone(device)
