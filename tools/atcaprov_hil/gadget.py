"""USB gadgets through configfs (``/sys/kernel/config/usb_gadget``), for the HIL guest.

Owns making a gadget (VID:PID, strings, one function in one configuration), plugging it into
a dummy UDC (``dummy_hcd``: the host side of the same kernel then enumerates it) and unplugging
it (the UDC emptied, as a pulled cable). :data:`CDC_KIT` is a kit board (ACM function: the host
sees ``/dev/ttyACM*``, the device side is ``/dev/ttyGS*``); :data:`HID_KIT` a signer module on a
CryptoAuth HID kit (HID function with a vendor report descriptor, 64-byte reports without report
IDs: the host sees ``/dev/hidraw*``, the device side is ``/dev/hidg*``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

GADGETS = Path("/sys/kernel/config/usb_gadget")
UDCS = Path("/sys/class/udc")
# usage page 0xFF00, usage 1, 64-byte IN and OUT reports, no report ID
VENDOR_REPORT_DESCRIPTOR = bytes.fromhex("0600ff0901a101150026ff007508954009018102954009019102c0")


@dataclass(frozen=True)
class GadgetSpec:
    name: str
    vid: int
    pid: int
    serial: str
    manufacturer: str
    product: str
    function: str  # e.g. "acm.usb0", "hid.usb0"
    attributes: dict[str, bytes] = field(default_factory=dict)


CDC_KIT = GadgetSpec(
    "kitcdc", 0x03EB, 0x2404, "HILCDC0001", "Atmel Corp.", "AT88CK101 (HIL gadget)", "acm.usb0"
)
HID_KIT = GadgetSpec(
    "kithid",
    0x03EB,
    0x2312,
    "HILHID0001",
    "Atmel Corp.",
    "CryptoAuth HID (HIL gadget)",
    "hid.usb0",
    {
        "protocol": b"0",
        "subclass": b"0",
        "report_length": b"64",
        "report_desc": VENDOR_REPORT_DESCRIPTOR,
    },
)


def udcs() -> list[str]:
    return sorted(p.name for p in UDCS.iterdir()) if UDCS.is_dir() else []


class Gadget:
    """One configfs gadget bound (plugged) to ``udc`` on demand."""

    def __init__(self, spec: GadgetSpec, udc: str) -> None:
        self.spec = spec
        self.udc = udc
        self.root = GADGETS / spec.name

    def create(self) -> None:
        spec, root = self.spec, self.root
        root.mkdir()
        (root / "idVendor").write_text(f"0x{spec.vid:04x}")
        (root / "idProduct").write_text(f"0x{spec.pid:04x}")
        (root / "bcdUSB").write_text("0x0200")
        strings = root / "strings" / "0x409"
        strings.mkdir(parents=True)
        (strings / "manufacturer").write_text(spec.manufacturer)
        (strings / "product").write_text(spec.product)
        (strings / "serialnumber").write_text(spec.serial)
        config = root / "configs" / "c.1"
        config.mkdir(parents=True)
        function = root / "functions" / spec.function
        function.mkdir(parents=True)
        for name, value in spec.attributes.items():
            (function / name).write_bytes(value)
        os.symlink(function, config / spec.function)

    @property
    def plugged(self) -> bool:
        return (self.root / "UDC").read_text().strip() != ""

    def plug(self) -> None:
        (self.root / "UDC").write_text(self.udc + "\n")

    def unplug(self) -> None:
        (self.root / "UDC").write_text("\n")


def wait_for(predicate: object, timeout: float, what: str, step: float = 0.05) -> None:
    """Poll ``predicate()`` until true, at most ``timeout`` seconds (RuntimeError after)."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        time.sleep(step)
