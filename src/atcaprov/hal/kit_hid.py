"""``kit-hid``: a chip behind a USB kit that enumerates as a HID device (hidapi).

Thin adapter under :class:`~atcaprov.hal.kit_hal.KitHal`: a kit line is cut into 64-byte
payloads, each sent as a 65-byte output report whose first byte is the report ID 0 (zero padded);
input reports are concatenated until a ``'\\n'`` arrives (their zero padding is dropped by the
line decoder). hidapi hands input reports over without the report ID; ``read_has_report_id``
covers transports that keep it (Windows ``ReadFile`` as CryptoAuthLib 2016 used it).

The device object comes from ``device_factory`` (``hid.device`` by default), so tests can inject
a fake; :func:`enumerate_kits` lists the attached kits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import kit_protocol as kp
from ..errors import NoDevicesError
from .base import register_hal
from .kit_hal import DEFAULT_TIMEOUT_S, KitHal, KitTransportError

DEFAULT_VID = 0x03EB  # Atmel
DEFAULT_PID = 0x2312  # CryptoAuth kit (AT88CK101 and friends)
REPORT_PAYLOAD = 64
REPORT_ID = 0

DeviceFactory = Callable[[], Any]


def _hid_module() -> Any:
    try:
        import hid
    except ImportError as exc:  # hidapi is a dependency, but its native lib may be missing
        raise NoDevicesError(f"hidapi is not usable on this machine: {exc}") from exc
    return hid


def split_reports(message: bytes, payload: int = REPORT_PAYLOAD) -> list[bytes]:
    """Cut ``message`` into output reports: report ID 0 + ``payload`` bytes, zero padded."""
    if not message:
        raise ValueError("nothing to send")
    return [
        bytes((REPORT_ID,)) + message[i : i + payload].ljust(payload, b"\x00")
        for i in range(0, len(message), payload)
    ]


@dataclass(frozen=True)
class HidKitInfo:
    """One attached kit, as :func:`enumerate_kits` reports it."""

    path: bytes
    vendor_id: int
    product_id: int
    serial_number: str
    manufacturer: str
    product: str
    interface_number: int


def enumerate_kits(
    vid: int = DEFAULT_VID, pid: int = DEFAULT_PID, *, hid_module: Any = None
) -> list[HidKitInfo]:
    """Kits attached over HID with this VID:PID (``hid_module`` replaces ``hid`` in tests)."""
    module = hid_module if hid_module is not None else _hid_module()
    kits = []
    for entry in module.enumerate(vid, pid):
        kits.append(
            HidKitInfo(
                path=entry.get("path", b""),
                vendor_id=int(entry.get("vendor_id", vid)),
                product_id=int(entry.get("product_id", pid)),
                serial_number=entry.get("serial_number") or "",
                manufacturer=entry.get("manufacturer_string") or "",
                product=entry.get("product_string") or "",
                interface_number=int(entry.get("interface_number", -1)),
            )
        )
    return kits


@register_hal("kit-hid")
class KitHidHal(KitHal):
    """Kit protocol over USB HID.

    Picks the kit by ``path`` (from :func:`enumerate_kits`) or by ``vid``/``pid`` and optional
    ``serial_number``; then discovers and selects the device like the CDC driver.
    """

    def __init__(
        self,
        *,
        vid: int = DEFAULT_VID,
        pid: int = DEFAULT_PID,
        path: bytes | str | None = None,
        serial_number: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        dialect: str | kp.KitDialect = "auto",
        device_index: int = 0,
        max_line: int = kp.MAX_LINE_DEFAULT,
        read_has_report_id: bool = False,
        device_factory: DeviceFactory | None = None,
    ) -> None:
        super().__init__(
            timeout=timeout, dialect=dialect, device_index=device_index, max_line=max_line
        )
        self.vid, self.pid = vid, pid
        self.read_has_report_id = read_has_report_id
        if path is not None:
            self._where = f"HID path {path!r}"
        else:
            self._where = f"HID {vid:04X}:{pid:04X}"
            if serial_number:
                self._where += f" serial {serial_number!r}"
        factory = device_factory if device_factory is not None else _hid_module().device
        self._dev: Any = factory()
        try:
            if path is not None:
                self._dev.open_path(path.encode() if isinstance(path, str) else path)
            else:
                self._dev.open(vid, pid, serial_number)
        except (OSError, ValueError) as exc:
            self._dev = None
            raise NoDevicesError(f"cannot open kit at {self._where}: {exc}") from exc
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"KitHidHal({self._where})"

    def _write(self, data: bytes) -> None:
        if self._dev is None:
            raise KitTransportError(f"kit at {self._where} is closed")
        for index, report in enumerate(split_reports(data)):
            try:
                written = self._dev.write(report)
            except (OSError, ValueError) as exc:
                raise KitTransportError(
                    f"HID write of report {index} to {self._where} failed: {exc}"
                ) from exc
            if written != len(report):
                raise KitTransportError(
                    f"HID write of report {index} to {self._where}: {written} of"
                    f" {len(report)} bytes written"
                )

    def _read_some(self, timeout: float) -> bytes:
        if self._dev is None:
            raise KitTransportError(f"kit at {self._where} is closed")
        timeout_ms = max(1, int(timeout * 1000))
        size = REPORT_PAYLOAD + (1 if self.read_has_report_id else 0)
        try:
            report: Sequence[int] = self._dev.read(size, timeout_ms)
        except (OSError, ValueError) as exc:
            raise KitTransportError(
                f"HID read from {self._where} failed (kit unplugged?): {exc}"
            ) from exc
        data = bytes(report)
        if self.read_has_report_id and data:
            data = data[1:]
        return data

    def close(self) -> None:
        dev, self._dev = getattr(self, "_dev", None), None
        if dev is not None:
            try:
                dev.close()
            except OSError as exc:
                raise KitTransportError(f"closing {self._where} failed: {exc}") from exc
