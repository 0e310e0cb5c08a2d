"""The ``sim`` signer back-end: emulated signer modules, one saved chip file each, in a folder.

A module file is an emulated ATECC508A saved with ``Atecc508a.save`` (JSON) after
:func:`create_sim_module` made it a signer module (module_layout). ``scan`` lists the folder's
files matching ``pattern`` (default ``*.json``; location = the file path), so a file appearing
or disappearing is a hot plug; a removed file also makes the open module stop answering, like an
unplugged kit.

Transport (``transport`` option): ``kit-hid`` (default) talks to the chip exactly as the ``hid``
back-end talks to a real module, through the kit-hid HAL and the kit protocol, with an
:class:`~atcaprov.emulator.kit_hid_device.EmulatedKitHidDevice` in place of ``hid.device``;
``emulator`` uses the in-process emulator HAL (faster, no kit protocol). Either way the module
code is :class:`~provserver.signers.chip.ChipSignerModule` over an ``atcaprov.device.Device``.
Nothing is written back to the files: signing changes no persistent chip state.

A module file is the whole saved chip, secret slots included: **it holds the signer key in
clear**. A module password gates only the emulated Sign (the emulated chip asks for the
CheckMac first); anyone who can read the file has the key. ``signer create`` says so
(:data:`CLEAR_KEY_NOTE`). Emulated modules are for development, tests and demos.

:class:`SimModuleCreator` is how ``provserver signer create`` makes a new module file
``signer-<SN>.json`` in the folder (option ``--modules``).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atcaprov.device import Device
from atcaprov.emulator import Atecc508a, StateFileError
from atcaprov.emulator.kit_hid_device import EmulatedKitHidDevice
from atcaprov.errors import NoDevicesError
from atcaprov.hal.base import Hal
from atcaprov.hal.emulator import EmulatorHal
from atcaprov.hal.kit_hid import KitHidHal

from .base import (
    BackendOption,
    SignerBackend,
    SignerConfigError,
    SignerFormatError,
    SignerIdentity,
    SignerUnavailableError,
    register_backend,
)
from .chip import ChipSignerModule
from .create import (
    CreatedModule,
    ModuleCreator,
    OutputExistsError,
    SignerSetupError,
    SignerSpec,
    check_through_backend,
    chip_module_options,
)
from .module_layout import CERT_MAX, IssueSignerCert, create_module

TRANSPORTS = ("kit-hid", "emulator")
DEFAULT_PATTERN = "*.json"
DEFAULT_TIMEOUT_S = 3.0
_MODULES_HELP = "sim: folder of module files (default DATA_DIR/modules, where the server looks)."
CLEAR_KEY_NOTE = (
    "NOTE: {path} is an emulated (sim) module: the file holds the signer key in clear. A "
    "password gates only the emulated Sign; anyone who can read the file has the key. "
    "For development and tests only."
)


class _PluggedHal(Hal):
    """The emulator HAL, answering only while the module file exists (hot unplug)."""

    def __init__(self, inner: EmulatorHal, path: Path) -> None:
        self._inner, self._path = inner, path

    def _check(self) -> None:
        if not self._path.exists():
            raise NoDevicesError(f"emulated module {self._path} was removed")

    def wake(self) -> bytes:
        self._check()
        return self._inner.wake()

    def idle(self) -> None:
        self._check()
        self._inner.idle()

    def sleep(self) -> None:
        self._check()
        self._inner.sleep()

    def transact(self, packet: bytes, exec_time_ms: float) -> bytes:
        self._check()
        return self._inner.transact(packet, exec_time_ms)

    def close(self) -> None:
        self._inner.close()


def _load_chip(path: Path) -> Atecc508a:
    if not path.is_file():
        raise SignerUnavailableError(f"emulated module {path} is gone")
    try:
        return Atecc508a.load(path)
    except (StateFileError, OSError) as exc:
        raise SignerFormatError(f"{path} is not a saved emulated chip: {exc}") from exc


def create_sim_module(
    path: str | Path,
    *,
    serial: bytes | None = None,
    **options: Any,
) -> SignerIdentity:
    """Make a new emulated chip into a signer module and save it to ``path`` (must not exist).

    ``options`` are :func:`module_layout.create_module`'s (``name``, ``issuer``, ``password``,
    ``signer_id``, ``validity_years``...). The chip is reached through the emulator HAL.
    """
    target = Path(path)
    if target.exists():
        raise SignerConfigError(f"{target} exists: will not overwrite a module")
    chip = Atecc508a(serial)
    with Device(EmulatorHal(chip)) as device:
        identity = create_module(device, **options)
    chip.save(target)  # atomic (temporary file + rename): a scan never sees half a module
    return identity


def new_chip_serial() -> bytes:
    """A random ATECC508A-style serial number: 01 23 xx xx xx xx xx xx EE."""
    return b"\x01\x23" + secrets.token_bytes(6) + b"\xee"


@dataclass(frozen=True)
class SimModuleCreator(ModuleCreator):
    """Makes a new emulated signer module ``signer-<SN>.json`` in the folder ``modules``.

    Options: ``modules`` (folder, made if missing), ``serial`` (the chip's 9-byte serial number,
    default :func:`new_chip_serial`).
    """

    modules: Path
    serial: bytes | None = None

    cli_options = (
        BackendOption(
            "--modules", "modules", {"create": _MODULES_HELP}, kind="path", in_data_dir="modules"
        ),
    )
    cert_max = CERT_MAX
    module_is_file = True

    def create(self, spec: SignerSpec, issuer: IssueSignerCert, now: dt.datetime) -> CreatedModule:
        modules = self.modules
        try:
            modules.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SignerSetupError(
                f"cannot create modules folder {modules}: {exc.strerror}"
            ) from exc
        sn = self.serial if self.serial is not None else new_chip_serial()
        path = modules / f"signer-{sn.hex().upper()}.json"
        if path.exists():
            raise OutputExistsError(f"{path} exists: will not overwrite a module")
        identity = create_sim_module(path, serial=sn, **chip_module_options(spec, issuer, now))
        protected, _ = check_through_backend(
            SimBackend(modules, transport="emulator"), str(path), identity, spec.password
        )
        return CreatedModule(
            "sim",
            str(path),
            identity,
            protected,
            files=(path,),
            notes=(CLEAR_KEY_NOTE.format(path=path),),
        )


@register_backend("sim")
class SimBackend(SignerBackend):
    """Emulated signer modules in the folder ``modules``.

    Options: ``modules`` (folder, required), ``transport`` (``kit-hid`` or ``emulator``),
    ``pattern`` (file glob, default ``*.json``), ``timeout`` (kit reply timeout in seconds).
    """

    cli_options = (
        BackendOption(
            "--modules",
            "modules",
            {"serve": "sim: folder of simulated modules.", "list": _MODULES_HELP},
            kind="path",
            in_data_dir="modules",
        ),
    )
    creator = SimModuleCreator

    def __init__(
        self,
        modules: str | Path,
        *,
        transport: str = "kit-hid",
        pattern: str = DEFAULT_PATTERN,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.folder = Path(modules)
        if not self.folder.is_dir():
            raise SignerConfigError(f"sim back-end: modules folder {self.folder} does not exist")
        if transport not in TRANSPORTS:
            raise SignerConfigError(
                f"sim back-end: transport {transport!r}; expected one of {', '.join(TRANSPORTS)}"
            )
        if timeout <= 0:
            raise SignerConfigError(f"sim back-end: timeout must be positive, got {timeout}")
        self.transport = transport
        self.pattern = pattern
        self.timeout = timeout
        #: The emulated kit of each module opened over kit-hid (diagnostics, tests).
        self.kits: dict[str, EmulatedKitHidDevice] = {}

    def scan(self) -> set[str]:
        try:
            return {str(p) for p in self.folder.glob(self.pattern) if p.is_file()}
        except OSError as exc:
            raise SignerUnavailableError(f"sim back-end: cannot list {self.folder}: {exc}") from exc

    def open(self, location: str) -> ChipSignerModule:
        path = Path(location)
        if path.parent != self.folder:
            raise SignerConfigError(f"sim back-end: {location} is not in {self.folder}")
        chip = _load_chip(path)
        hal: Hal
        if self.transport == "kit-hid":
            kit = EmulatedKitHidDevice(lambda _path: chip, present=lambda _path: path.exists())
            try:
                hal = KitHidHal(
                    path=os.fsencode(path), timeout=self.timeout, device_factory=lambda: kit
                )
            except NoDevicesError as exc:
                raise SignerUnavailableError(f"sim module {location}: {exc}") from exc
            self.kits[location] = kit
        else:
            hal = _PluggedHal(EmulatorHal(chip), path)

        def release() -> None:
            self.kits.pop(location, None)
            hal.close()

        return ChipSignerModule(Device(hal), backend="sim", location=location, on_close=release)
