"""Fault injection on the chip link, for testing a line's error handling without hardware.

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

The server link's faults are :class:`atcaprov.server_faults.ServerCutHooks`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import CommError, CommTimeoutError
from ..packet import build_status
from .base import Hal, register_hal

Fault = str | int

COMMAND_FAULTS = ("unplug", "unplug_after", "timeout", "lost", "crc")
"""Named faults that hit a command (``int`` status bytes hit a command too)."""
FAULTS = (*COMMAND_FAULTS, "wake")
"""Every named fault :meth:`FaultHal.arm` takes."""


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
