"""The host end of a USB CryptoAuth kit, shared by the CDC and HID drivers.

Owns the kit conversation (discover the device with ``board:device(NN)``, select it in the
chosen dialect, then wake / idle / sleep / talk) on top of two primitives a transport supplies:
write some bytes, read some bytes with a timeout. Message formats and reply parsing come from
the sans-IO :mod:`atcaprov.kit_protocol`; the transports (:mod:`.kit_cdc`, :mod:`.kit_hid`)
stay thin adapters. Kit text only reaches an error message or a log line through
:func:`~atcaprov.kit_protocol.kit_text` (control characters escaped, length bounded).
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Callable

from .. import kit_protocol as kp
from ..errors import AtcaStatus, CommError, CommTimeoutError, NoDevicesError
from .base import Hal

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 3.0  # the Windows CDC driver of CryptoAuthLib gives up after 3 s


class KitTransportError(CommError):
    """The link to the kit failed (port closed, kit unplugged, write refused)."""

    atca_status = AtcaStatus.COMM_FAIL


class KitHal(Hal):
    """A chip behind a kit. Subclasses open the transport, then call :meth:`_connect`.

    ``dialect`` is ``"2016"`` (``s:`` messages), ``"current"`` (``d:`` messages, select with the
    device type's first letter) or ``"auto"``: select in the 2016 form first and fall back to the
    current form when the kit refuses it (non-zero status) or does not answer.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        dialect: str | kp.KitDialect = "auto",
        device_index: int = 0,
        max_line: int = kp.MAX_LINE_DEFAULT,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if not 0 <= device_index <= kp.KIT_DEVICE_INDEX_MAX:
            raise ValueError(f"device_index must be 0..255, got {device_index}")
        self.timeout = float(timeout)
        self.device_index = device_index
        self._requested_dialect: kp.KitDialect | None = (
            None if dialect == "auto" else kp.KitDialect.from_name(dialect)
        )
        self._decoder = kp.KitLineDecoder(max_line)
        self._stale_input = False  # a request timed out: its reply may still arrive
        self._dialect: kp.KitDialect | None = None
        self._device: kp.DeviceInfo | None = None

    # -- what a transport provides ----------------------------------------------------------
    @abstractmethod
    def _write(self, data: bytes) -> None:
        """Send ``data`` to the kit (raise :class:`KitTransportError` on failure)."""

    @abstractmethod
    def _read_some(self, timeout: float) -> bytes:
        """Return the bytes available within ``timeout`` seconds (b"" if none arrived)."""

    def _drain(self) -> None:
        """Throw away input that is already waiting (a late reply to a timed-out request)."""
        for _ in range(64):  # bounded: a kit that keeps talking is not our kit
            if not self._read_some(0.001):
                return

    # -- discovery --------------------------------------------------------------------------
    @property
    def dialect(self) -> kp.KitDialect:
        if self._dialect is None:
            raise CommError("kit not connected yet: no dialect chosen")
        return self._dialect

    @property
    def device_info(self) -> kp.DeviceInfo:
        if self._device is None:
            raise CommError("kit not connected yet: no device discovered")
        return self._device

    @property
    def device_type(self) -> str:
        """Device type the kit reported, e.g. ``"ECC508A"``."""
        return self.device_info.device_type

    @property
    def interface(self) -> str:
        """Bus the kit reported, e.g. ``"TWI"``."""
        return self.device_info.interface

    @property
    def address(self) -> int:
        """Bus address the kit reported (8-bit form), e.g. ``0xC0``."""
        return self.device_info.address

    def _connect(self) -> None:
        reply = self.request(kp.format_discover(self.device_index), "discover")
        info = kp.parse_device_reply(reply)
        if info is None:
            raise NoDevicesError(
                f"kit reports no device at index {self.device_index:02X}"
                f" (reply {kp.kit_text(reply)})"
            )
        self._device = info
        order = (
            [self._requested_dialect]
            if self._requested_dialect is not None
            else [kp.KitDialect.LEGACY, kp.KitDialect.CURRENT]
        )
        failures: list[str] = []
        for dialect in order:
            line = kp.format_select(info.address, dialect, info.device_type)
            try:
                kp.check_reply(self.request(line, "select"), f"select {kp.kit_text(line)}")
            except (kp.KitProtocolError, CommTimeoutError) as exc:
                failures.append(f"{dialect.value}: {exc}")
                log.debug("kit select in dialect %s failed: %s", dialect.value, exc)
                continue
            self._dialect = dialect
            return
        raise NoDevicesError(
            f"kit found {info.device_type} {info.interface}({info.address:02X}) but refused to"
            f" select it: {'; '.join(failures)}"
        )

    # -- line exchange ----------------------------------------------------------------------
    def request(self, line: bytes, what: str) -> bytes:
        """Send one kit line and return the kit's reply line (without ``'\\n'``)."""
        self._send_line(line)
        return self._read_line(what, line)

    def _send_line(self, line: bytes) -> None:
        self._decoder.reset()
        if self._stale_input:  # a late answer to an earlier, timed-out request is stale
            self._drain()
            self._decoder.reset()
            self._stale_input = False
        self._write(line)

    def _read_line(self, what: str, sent: bytes) -> bytes:
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pending = self._decoder.pending
                self._decoder.reset()
                self._stale_input = True
                raise CommTimeoutError(
                    f"no kit reply to {what} {sent!r} within {self.timeout:g} s"
                    f" (received so far: {kp.kit_text(pending)})"
                )
            chunk = self._read_some(remaining)
            if not chunk:
                continue
            try:
                lines = self._decoder.feed(chunk)
            except kp.KitFrameError:
                self._stale_input = True  # the rest of that garbage may still be arriving
                raise
            if lines:
                if len(lines) > 1:
                    log.debug(
                        "kit sent %d lines for one request; extra: %s",
                        len(lines),
                        ", ".join(kp.kit_text(extra) for extra in lines[1:]),
                    )
                return lines[0]

    # -- Hal --------------------------------------------------------------------------------
    def wake(self) -> bytes:
        return kp.check_reply(self.request(kp.format_wake(self.dialect), "wake"), "wake")

    def idle(self) -> None:
        kp.check_reply(self.request(kp.format_idle(self.dialect), "idle"), "idle")

    def sleep(self) -> None:
        kp.check_reply(self.request(kp.format_sleep(self.dialect), "sleep"), "sleep")

    def transact(self, packet: bytes, exec_time_ms: float) -> bytes:
        # The kit waits for the chip itself and answers when done: exec_time_ms is not needed,
        # but a slow chip must still fit in the timeout.
        line = kp.format_talk(packet, self.dialect)
        opcode = packet[1:2].hex().upper() or "?"
        return kp.check_reply(self.request(line, "talk"), f"talk opcode 0x{opcode}")

    def transact_during(
        self, packet: bytes, exec_time_ms: float, work: Callable[[], None]
    ) -> bytes:
        # The work is done once the line is out (the chip executing); the answer waits in the
        # port's buffer meanwhile. The kit-answer timeout runs from after the work.
        if type(self).transact is not KitHal.transact:  # a subclass's transact stays in charge
            return super().transact_during(packet, exec_time_ms, work)
        line = kp.format_talk(packet, self.dialect)
        opcode = packet[1:2].hex().upper() or "?"
        self._send_line(line)
        try:
            work()
        except BaseException:  # (an interrupt: work() keeps its Exceptions) the answer is stale
            self._stale_input = True
            raise
        return kp.check_reply(self._read_line("talk", line), f"talk opcode 0x{opcode}")
