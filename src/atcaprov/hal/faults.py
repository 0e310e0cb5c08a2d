"""A HAL wrapper that injects faults, for testing a line's error handling without hardware.

``FaultHal(inner)`` passes everything to ``inner`` until a fault is armed with :meth:`arm`:

* ``"unplug"``: the board disappears; this and every later call raise
  :class:`~atcaprov.errors.CommError` (as a real transport does when the USB device is gone);
* ``"crc"``: the next response comes back with a corrupted CRC (once);
* ``"timeout"``: the next call raises :class:`~atcaprov.errors.CommTimeoutError` (once);
* an ``int``: the next command is answered with that chip status byte (e.g. 0x0F), once.

``after`` delays the fault by that many commands. Registered as the ``fault`` driver
(``open_hal("fault", inner=other_hal)``).
"""

from __future__ import annotations

from ..errors import CommError, CommTimeoutError
from ..packet import build_status
from .base import Hal, register_hal

Fault = str | int


@register_hal("fault")
class FaultHal(Hal):
    """Wraps another HAL and fails on request."""

    def __init__(self, inner: Hal) -> None:
        self.inner = inner
        self._fault: Fault | None = None
        self._after = 0
        self.unplugged = False
        self.commands = 0

    def arm(self, fault: Fault, *, after: int = 0) -> None:
        """Fail the command that comes ``after`` commands from now, as ``fault`` says."""
        if isinstance(fault, str) and fault not in ("unplug", "crc", "timeout"):
            raise ValueError(f"unknown fault {fault!r}: use 'unplug', 'crc', 'timeout' or a status")
        self._fault, self._after = fault, after

    def _check_unplugged(self) -> None:
        if self.unplugged:
            raise CommError("board removed: the kit no longer answers")

    def _take_fault(self) -> Fault | None:
        if self._fault is None:
            return None
        if self._after > 0:
            self._after -= 1
            return None
        fault, self._fault = self._fault, None
        if fault == "unplug":
            self.unplugged = True
        return fault

    def wake(self) -> bytes:
        self._check_unplugged()
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
        fault = self._take_fault()
        if fault == "unplug":
            raise CommError("board removed: the kit no longer answers")
        if fault == "timeout":
            raise CommTimeoutError("no answer from the kit within the timeout")
        if isinstance(fault, int):
            return build_status(fault)
        response = self.inner.transact(packet, exec_time_ms)
        if fault == "crc":
            response = response[:-1] + bytes((response[-1] ^ 0xFF,))
        return response

    def close(self) -> None:
        self.inner.close()
