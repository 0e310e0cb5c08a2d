"""Fault injection on the server link, for testing a line's error handling without a server.

``ServerCutHooks(hooks)`` wraps a client's :class:`~atcaprov.hooks.ProvisioningHooks` and cuts
the server connection of the next certificate request at one point (:data:`SERVER_CUTS`):
refused at connect, closed right after the request was sent, closed in the middle of the reply
header or body, a receive timeout, a connection reset. The chip link's faults are
:class:`atcaprov.hal.faults.FaultHal`.
"""

from __future__ import annotations

import errno
from typing import Any

from .device import Device
from .hooks import ProvisioningHooks
from .protocol import HEADER_SIZE
from .return_codes import ReturnCode
from .stages import ProvStage, ProvStatus

SERVER_CUTS = ("refused", "after_send", "mid_header", "mid_body", "timeout", "reset")
"""Where :class:`ServerCutHooks` can cut the server connection."""

_MID_HEADER = HEADER_SIZE // 2
_MID_BODY_EXTRA = 8  # body bytes delivered before a "mid_body" cut


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
        limit = {
            "after_send": 0,
            "mid_header": _MID_HEADER,
            "mid_body": HEADER_SIZE + _MID_BODY_EXTRA,
        }[cut]
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


__all__ = ["SERVER_CUTS", "ServerCutHooks"]
