"""The ``hid`` signer back-end: real signer modules on USB CryptoAuth kits, through hidapi.

Kits enumerate as HID devices with VID:PID 03EB:2312 (options ``vid``/``pid`` change it); each
one is a module, its location the hidapi device path. A module is opened with the kit-hid HAL
(kit protocol) under an ``atcaprov.device.Device`` and driven by the same
:class:`~provserver.signers.chip.ChipSignerModule` code as the ``sim`` back-end. ``hid_module``
replaces the ``hid`` package (tests pass a fake with ``enumerate`` and ``device``).
"""

from __future__ import annotations

import os
from typing import Any

from atcaprov.device import Device
from atcaprov.errors import CommError
from atcaprov.hal.kit_hid import DEFAULT_PID, DEFAULT_VID, KitHidHal, enumerate_kits

from .base import SignerBackend, SignerUnavailableError, register_backend
from .chip import ChipSignerModule

DEFAULT_TIMEOUT_S = 3.0


def path_to_location(path: bytes) -> str:
    """A hidapi path (bytes) as a location string (reversible)."""
    return os.fsdecode(path)


def location_to_path(location: str) -> bytes:
    return os.fsencode(location)


def _hid_module() -> Any:
    try:
        import hid
    except ImportError as exc:
        raise SignerUnavailableError(f"hid back-end: hidapi is not usable here: {exc}") from exc
    return hid


@register_backend("hid")
class HidBackend(SignerBackend):
    """Signer modules on USB HID kits.

    Options: ``vid``, ``pid`` (default 03EB:2312), ``timeout`` (kit reply timeout, seconds),
    ``hid_module`` (replacement for the ``hid`` package, for tests).
    """

    def __init__(
        self,
        *,
        vid: int = DEFAULT_VID,
        pid: int = DEFAULT_PID,
        timeout: float = DEFAULT_TIMEOUT_S,
        hid_module: Any = None,
    ) -> None:
        self.vid, self.pid, self.timeout = vid, pid, timeout
        self._hid = hid_module if hid_module is not None else _hid_module()

    def scan(self) -> set[str]:
        try:
            kits = enumerate_kits(self.vid, self.pid, hid_module=self._hid)
        except (OSError, CommError) as exc:
            raise SignerUnavailableError(f"hid back-end: enumerating kits: {exc}") from exc
        return {path_to_location(kit.path) for kit in kits}

    def open(self, location: str) -> ChipSignerModule:
        try:
            hal = KitHidHal(
                path=location_to_path(location),
                vid=self.vid,
                pid=self.pid,
                timeout=self.timeout,
                device_factory=self._hid.device,
            )
        except CommError as exc:
            raise SignerUnavailableError(f"hid module at {location}: {exc}") from exc
        return ChipSignerModule(Device(hal), backend="hid", location=location, on_close=hal.close)
