"""The ``hid`` signer back-end: real signer modules on USB CryptoAuth kits, through hidapi.

Kits enumerate as HID devices with VID:PID 03EB:2312 (options ``vid``/``pid`` change it); each
one is a module, its location the hidapi device path. A module is opened with the kit-hid HAL
(kit protocol) under an ``atcaprov.device.Device`` and driven by the same
:class:`~provserver.signers.chip.ChipSignerModule` code as the ``sim`` back-end. ``hid_module``
replaces the ``hid`` package (tests pass a fake with ``enumerate`` and ``device``); ``hidapi``
(``--hidapi``) picks which of the hidapi wheel's modules to use on Linux: ``hid`` (its libusb
back-end, the default) or ``hidraw`` (the kernel's hidraw devices). Both were run against a real
USB HID device (docs/hil.md): the libusb one hands back an empty read before every reply and
reports usage page 0, so nothing here filters on usage page and an empty read means "not yet".

:class:`HidModuleCreator` is how ``provserver signer create`` makes a signer module of the first
kit whose chip is blank (config zone unlocked), or of the one at ``--hid-path``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
from dataclasses import dataclass
from typing import Any

from atcaprov.device import LOCK_ZONE_CONFIG, LOCK_ZONE_DATA, Device
from atcaprov.errors import AtcaprovError, CommError
from atcaprov.hal.kit_hid import DEFAULT_PID, DEFAULT_VID, KitHidHal, enumerate_kits

from .base import BackendOption, SignerBackend, SignerUnavailableError, register_backend
from .chip import ChipSignerModule
from .create import (
    CreatedModule,
    ModuleCreator,
    SignerSetupError,
    SignerSpec,
    check_through_backend,
    chip_module_options,
)
from .module_layout import CERT_MAX, IssueSignerCert, create_module

DEFAULT_TIMEOUT_S = 3.0
HIDAPI_MODULES = ("hid", "hidraw")
_HIDAPI_HELP = (
    "hid: hidapi module to use, hid (libusb back-end, default) or hidraw (Linux hidraw devices)."
)
HIDAPI_OPTION = BackendOption(
    "--hidapi",
    "hidapi",
    {"serve": _HIDAPI_HELP, "list": _HIDAPI_HELP, "create": _HIDAPI_HELP},
    metavar="hid|hidraw",
    selects=False,
)


def path_to_location(path: bytes) -> str:
    """A hidapi path (bytes) as a location string (reversible)."""
    return os.fsdecode(path)


def location_to_path(location: str) -> bytes:
    return os.fsencode(location)


def _hid_module(name: str | None = None) -> Any:
    name = name or HIDAPI_MODULES[0]
    if name not in HIDAPI_MODULES:
        raise SignerUnavailableError(
            f"hid back-end: --hidapi {name!r} is not one of {', '.join(HIDAPI_MODULES)}"
        )
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise SignerUnavailableError(
            f"hid back-end: hidapi ({name}) is not usable here: {exc}"
        ) from exc


def find_blank_kit(
    *, hid_path: str | None, vid: int, pid: int, timeout: float, hid_module: Any
) -> str:
    """The hidapi path of the first kit whose chip has an unlocked config zone (or check
    ``hid_path`` is one)."""
    if hid_path is not None:
        paths = [os.fsencode(hid_path)]
    else:
        try:
            paths = [kit.path for kit in enumerate_kits(vid, pid, hid_module=hid_module)]
        except (OSError, CommError) as exc:
            raise SignerSetupError(f"hid: cannot list kits {vid:04X}:{pid:04X}: {exc}") from exc
        if not paths:
            raise SignerSetupError(f"hid: no kit {vid:04X}:{pid:04X} found")
    seen: list[str] = []
    for path in paths:
        where = os.fsdecode(path)
        try:
            hal = KitHidHal(
                path=path, vid=vid, pid=pid, timeout=timeout, device_factory=hid_module.device
            )
        except (OSError, AtcaprovError) as exc:
            seen.append(f"{where}: cannot open ({exc})")
            continue
        with Device(hal) as device:
            try:
                locked = device.is_locked(LOCK_ZONE_CONFIG) or device.is_locked(LOCK_ZONE_DATA)
            except (OSError, AtcaprovError) as exc:
                seen.append(f"{where}: no answer ({exc})")
                continue
        if not locked:
            return where
        seen.append(f"{where}: locked (already a module or provisioned)")
    raise SignerSetupError("hid: no blank chip (unlocked config zone): " + "; ".join(seen))


def _hid_package(hid_module: Any, name: str | None = None) -> Any:
    if hid_module is not None:
        return hid_module
    try:
        return _hid_module(name)
    except SignerUnavailableError as exc:
        raise SignerSetupError(str(exc)) from exc


@dataclass(frozen=True)
class HidModuleCreator(ModuleCreator):
    """Makes the first blank chip on a USB kit (or the one at ``hid_path``) a signer module.

    Options: ``hid_path``, ``vid``, ``pid``, ``timeout``, ``hidapi``, ``hid_module`` (as
    :class:`HidBackend`).
    """

    hid_path: str | None = None
    vid: int = DEFAULT_VID
    pid: int = DEFAULT_PID
    timeout: float = DEFAULT_TIMEOUT_S
    hidapi: str | None = None
    hid_module: Any = None

    cli_options = (
        BackendOption(
            "--hid-path",
            "hid_path",
            {"create": "hid: hidapi path of the kit (default: first blank chip found)."},
        ),
        HIDAPI_OPTION,
    )
    cert_max = CERT_MAX
    asks_password = True

    def create(self, spec: SignerSpec, issuer: IssueSignerCert, now: dt.datetime) -> CreatedModule:
        vid, pid, timeout = self.vid, self.pid, self.timeout
        hid = _hid_package(self.hid_module, self.hidapi)
        location = find_blank_kit(
            hid_path=self.hid_path, vid=vid, pid=pid, timeout=timeout, hid_module=hid
        )
        hal = KitHidHal(
            path=os.fsencode(location), vid=vid, pid=pid, timeout=timeout, device_factory=hid.device
        )
        with Device(hal) as device:
            identity = create_module(device, **chip_module_options(spec, issuer, now))
        protected, _ = check_through_backend(
            HidBackend(vid=vid, pid=pid, timeout=timeout, hid_module=hid),
            location,
            identity,
            spec.password,
        )
        return CreatedModule("hid", location, identity, protected)


@register_backend("hid")
class HidBackend(SignerBackend):
    """Signer modules on USB HID kits.

    Options: ``vid``, ``pid`` (default 03EB:2312), ``timeout`` (kit reply timeout, seconds),
    ``hidapi`` (``hid`` or ``hidraw``), ``hid_module`` (replacement for the ``hid`` package, for
    tests).
    """

    used_by_default = True
    creator = HidModuleCreator
    cli_options = (HIDAPI_OPTION,)

    def __init__(
        self,
        *,
        vid: int = DEFAULT_VID,
        pid: int = DEFAULT_PID,
        timeout: float = DEFAULT_TIMEOUT_S,
        hidapi: str | None = None,
        hid_module: Any = None,
    ) -> None:
        self.vid, self.pid, self.timeout = vid, pid, timeout
        self._hid = hid_module if hid_module is not None else _hid_module(hidapi)

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
