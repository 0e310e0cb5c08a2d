"""An emulated CryptoAuth USB kit that looks like hidapi's ``hid.device`` to the kit-hid HAL.

Owns the kit-over-HID report side of the emulator: :class:`EmulatedKitHidDevice` takes output
reports (report ID 0 + 64 bytes), cuts them into kit lines, answers them with the kit firmware
(:class:`~atcaprov.emulator.kit_firmware.KitFirmware`) over an emulated chip, and hands the
reply lines back through ``read`` as input reports. provserver's ``sim`` signer back-end uses it
so simulated signer modules go through the same kit-protocol-over-HID code path as real ones;
tests use it as the ``hid.device`` behind the kit-hid driver.

``present`` is asked before every report: when it turns False (the module file was removed) the
device behaves as an unplugged one, raising OSError as hidapi does. ``silent`` makes the kit
swallow requests without answering, as a hung chip or kit would (reads time out).
``pad_reports`` and ``report_id_in_reads`` shape the input reports like a real kit / transport
does (zero-padded 64-byte reports; the report ID kept in front, as Windows ``ReadFile`` does).
``empty_read_before_reply`` makes the first ``read`` after a request return an empty report,
as hidapi's libusb back-end does on Linux before every real reply (seen on a real USB HID
device, docs/hil.md): a driver must take an empty read as "nothing yet" and keep reading.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .. import kit_protocol as kp
from .chip import Atecc508a
from .kit_firmware import KitFirmware

REPORT_SIZE = 65  # report ID + 64 payload bytes
LINES_KEPT = 256  # kit lines kept in ``lines_seen`` (a long-running sim module stays flat)
PAYLOAD = 64
REPORT_ID = 0
_IDLE_POLL_S = 0.005


class EmulatedKitHidDevice:
    """A stand-in for ``hid.device()`` wrapping one emulated chip behind a kit interpreter.

    ``chip_loader(path)`` returns the chip when ``open_path`` is called (e.g. loading a saved
    part); ``present(path)`` says whether the device at that path is (still) plugged in.

    Input report shape: by default ``read`` hands back only the reply bytes (up to 64 per
    report). ``pad_reports=True`` starts every reply on a fresh report and zero-pads its last one
    to 64 bytes, as the kit firmware sends them; ``report_id_in_reads=True`` puts the report ID
    (0) in front of every input report, as transports that keep it do.
    """

    def __init__(
        self,
        chip_loader: Callable[[bytes], Atecc508a],
        *,
        present: Callable[[bytes], bool] = lambda path: True,
        pad_reports: bool = False,
        report_id_in_reads: bool = False,
        empty_read_before_reply: bool = False,
    ) -> None:
        self._loader = chip_loader
        self.empty_read_before_reply = empty_read_before_reply
        self._empty_read_due = False
        self._present = present
        self.pad_reports = pad_reports
        self.report_id_in_reads = report_id_in_reads
        self.path = b""
        self.chip: Atecc508a | None = None
        self.silent = False
        self._decoder = kp.KitLineDecoder()
        # The same kit firmware as the virtual CDC board answers the lines.
        self._firmware = KitFirmware(lambda: self.chip)
        self._out = bytearray()
        # what the host sent (tests and diagnostics): the first LINES_KEPT lines of the session
        # and the latest ones, at most 2 * LINES_KEPT in all
        self.lines_seen: list[bytes] = []

    # -- hidapi's hid.device surface ------------------------------------------------------------
    def open_path(self, path: bytes) -> None:
        if not self._present(path):
            raise OSError(f"open failed: no device at {path!r}")
        self.path = path
        self.chip = self._loader(path)

    def open(self, vid: int, pid: int, serial_number: str | None = None) -> None:
        raise OSError("the emulated kit opens by path only")

    def write(self, report: Sequence[int] | bytes) -> int:
        self._check_plugged()
        data = bytes(report)
        if len(data) < 2 or data[0] != 0:
            raise ValueError(f"output report must start with report ID 0, got {data[:4]!r}")
        self._empty_read_due = self.empty_read_before_reply
        for line in self._decoder.feed(data[1 : 1 + PAYLOAD]):
            self._keep(line)
            reply = self._answer(line)
            if not self.silent:
                if self.pad_reports:
                    reply = reply.ljust(-(-len(reply) // PAYLOAD) * PAYLOAD, b"\x00")
                self._out += reply
        return len(data)

    def read(self, max_length: int, timeout_ms: int = 0) -> list[int]:
        self._check_plugged()
        if self._empty_read_due:
            self._empty_read_due = False
            return []
        if not self._out:
            # Nothing to send: wait a little, as a blocking hidapi read would (bounded).
            time.sleep(min(max(timeout_ms, 0) / 1000.0, _IDLE_POLL_S))
            return []
        prefix = bytes((REPORT_ID,)) if self.report_id_in_reads else b""
        size = min(max_length - len(prefix), PAYLOAD)
        chunk = bytes(self._out[:size])
        del self._out[:size]
        return list(prefix + chunk)

    def close(self) -> None:
        self.chip = None

    # -- plumbing -------------------------------------------------------------------------------
    def _check_plugged(self) -> None:
        if self.chip is None:
            raise ValueError("device is not open")
        if not self._present(self.path):
            raise OSError("device disconnected")

    def _keep(self, line: bytes) -> None:
        seen = self.lines_seen
        seen.append(line)
        if len(seen) > 2 * LINES_KEPT:  # keep the first LINES_KEPT, drop the oldest after them
            del seen[LINES_KEPT : len(seen) - LINES_KEPT // 2]

    def _answer(self, line: bytes) -> bytes:
        return self._firmware.handle_line(line)
