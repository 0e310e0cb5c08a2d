"""The emulated HID kit served through a USB HID gadget's device file (``/dev/hidg0``).

Owns the gadget transport of the emulated signer module: a Linux USB gadget with an HID
function (``f_hid``, see docs/hil.md) shows the host a real USB HID device (``/dev/hidraw0``,
found by hidapi); its device side is a character device that hands over each 64-byte output
report the host sent and takes the 64-byte input reports to send back. :class:`KitHidGadget`
moves reports between that file and an
:class:`~atcaprov.emulator.kit_hid_device.EmulatedKitHidDevice` (the same emulated kit the
``sim`` signer back-end uses), one background thread, every wait bounded: an output report
goes in as hidapi would write it (report ID 0 in front), and the kit's zero-padded replies come
out one 64-byte report at a time. While the gadget is unplugged (its UDC emptied) reads and
writes fail; the server keeps polling and drops replies it cannot send.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import AtcaprovError
from .kit_hid_device import PAYLOAD, REPORT_ID, EmulatedKitHidDevice

log = logging.getLogger(__name__)

POLL_S = 0.25
SEND_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
_ERROR_PAUSE_S = 0.05  # after a failed read (gadget unplugged): do not spin


class KitHidGadgetError(AtcaprovError):
    """The gadget device file cannot be served (missing, not a HID gadget...)."""


class KitHidGadget:
    """Serves ``kit`` (already opened with ``open_path``) on the gadget file ``device``.

    ``fd``: serve this open descriptor instead of opening ``device`` (it must keep report
    boundaries as the gadget file does, e.g. a ``SOCK_SEQPACKET`` socket in tests); it is
    closed on :meth:`stop`. ``on_event(text)`` receives one line per notable event (started,
    reply dropped, stopped). Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        device: str | os.PathLike[str],
        kit: EmulatedKitHidDevice,
        *,
        fd: int | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.device = Path(device)
        self.kit = kit
        self._on_event = on_event
        self._given_fd = fd
        self._fd: int | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self.reports_in = 0
        self.reports_out = 0

    def _event(self, text: str) -> None:
        log.info("hid gadget: %s", text)
        if self._on_event is not None:
            self._on_event(text)

    def __enter__(self) -> KitHidGadget:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._running:
            raise KitHidGadgetError("gadget server already started")
        if self._given_fd is not None:
            self._fd, self._given_fd = self._given_fd, None
            os.set_blocking(self._fd, False)
        else:
            try:
                self._fd = os.open(self.device, os.O_RDWR | os.O_NONBLOCK)
            except OSError as exc:
                raise KitHidGadgetError(f"cannot open {self.device}: {exc}") from exc
        self._wake_r, self._wake_w = os.pipe()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="kit-hid-gadget", daemon=True)
        self._thread.start()
        self._event(f"serving {self.device}")

    def stop(self) -> None:
        """Stop serving and close the file. Idempotent."""
        if not self._running:
            return
        self._running = False
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
        for fd in (self._fd, self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._fd = self._wake_r = self._wake_w = None
        self._event(f"stopped ({self.reports_in} reports in, {self.reports_out} out)")

    # -- the loop -----------------------------------------------------------------------------
    def _loop(self) -> None:
        assert self._fd is not None and self._wake_r is not None
        while self._running:
            try:
                readable, _, _ = select.select([self._fd, self._wake_r], [], [], POLL_S)
            except OSError as exc:
                log.error("hid gadget: select failed: %s", exc)
                return
            if self._fd not in readable:
                continue
            try:
                report = os.read(self._fd, PAYLOAD)
            except BlockingIOError:
                continue
            except OSError as exc:  # unplugged (ESHUTDOWN...): wait for the replug
                log.debug("hid gadget read: %s", exc)
                time.sleep(_ERROR_PAUSE_S)
                continue
            if report:
                self.reports_in += 1
                self._answer(report)

    def _answer(self, report: bytes) -> None:
        try:
            self.kit.write(bytes((REPORT_ID,)) + report.ljust(PAYLOAD, b"\x00"))
        except (OSError, ValueError) as exc:
            self._event(f"kit refused a report: {exc}")
            return
        for _ in range(1024):  # bounded: a reply is a few reports
            reply = bytes(self.kit.read(PAYLOAD, 0))
            if not reply:
                return
            if not self._send(reply.ljust(PAYLOAD, b"\x00")):
                return

    def _send(self, report: bytes) -> bool:
        assert self._fd is not None
        deadline = time.monotonic() + SEND_TIMEOUT_S
        while self._running:
            try:
                os.write(self._fd, report)
                self.reports_out += 1
                return True
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with contextlib.suppress(OSError):
                    select.select([], [self._fd], [], min(remaining, POLL_S))
            except OSError as exc:
                self._event(f"reply dropped: {exc}")
                self._drop_pending()
                return False
        self._event("reply dropped: the host did not read it in time")
        self._drop_pending()
        return False

    def _drop_pending(self) -> None:
        for _ in range(1024):
            if not self.kit.read(PAYLOAD, 0):
                return
