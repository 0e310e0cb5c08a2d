"""The hid back-end with a fake ``hid`` module whose devices are emulated kits."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.kit_hid_device import EmulatedKitHidDevice
from atcaprov.hal.emulator import EmulatorHal
from provserver.signers import (
    SignerIdentity,
    SignerUnavailableError,
    WrongPasswordError,
    open_backend,
)
from provserver.signers.hid import HidBackend
from provserver.signers.module_layout import create_module
from tests.support.certs import TestRoot
from tests.support.keys import cert_public_key, verify_rs

VID, PID = 0x03EB, 0x2312


class FakeHid:
    """Stands in for the ``hid`` package: ``enumerate`` and ``device`` over emulated kits."""

    def __init__(self, *, libusb: bool = False) -> None:
        self.libusb = libusb  # as hidapi's libusb back-end: usage page 0, empty reads
        self.chips: dict[bytes, Atecc508a] = {}
        self.other: list[dict[str, Any]] = [
            {"path": b"/dev/hidraw9", "vendor_id": 0x046D, "product_id": 0xC077}
        ]

    def enumerate(self, vid: int = 0, pid: int = 0) -> list[dict[str, Any]]:
        entries = [
            {
                "path": path,
                "vendor_id": VID,
                "product_id": PID,
                "serial_number": "",
                "manufacturer_string": "Atmel",
                "product_string": "AT88CK101",
                "interface_number": 0,
                "usage_page": 0 if self.libusb else 0xFF00,
                "usage": 0 if self.libusb else 1,
            }
            for path in self.chips
        ] + self.other
        return [e for e in entries if e["vendor_id"] == vid and e["product_id"] == pid]

    def device(self) -> EmulatedKitHidDevice:
        return EmulatedKitHidDevice(
            self.chips.__getitem__,
            present=self.chips.__contains__,
            empty_read_before_reply=self.libusb,
        )


def _module_chip(root: TestRoot, password: str | None) -> tuple[Atecc508a, SignerIdentity]:
    chip = Atecc508a()
    with Device(EmulatorHal(chip)) as device:
        identity = create_module(
            device,
            name="HID Signer",
            issuer=(root.key, root.cert),
            password=password,
            kdf_iterations=1000,
        )
    return chip, identity


def test_scan_open_sign_unplug(root: TestRoot) -> None:
    fake = FakeHid()
    chip_a, ident_a = _module_chip(root, None)
    chip_b, ident_b = _module_chip(root, "pin-b")
    fake.chips = {b"/dev/hidraw1": chip_a, b"/dev/hidraw2": chip_b}
    backend = open_backend("hid", hid_module=fake, timeout=0.5)
    assert backend.scan() == {"/dev/hidraw1", "/dev/hidraw2"}

    module_a = backend.open("/dev/hidraw1")
    assert module_a.identity == ident_a
    assert module_a.backend == "hid" and module_a.location == "/dev/hidraw1"
    digest = hashlib.sha256(b"hid").digest()
    assert verify_rs(cert_public_key(ident_a.signer_cert_der), digest, module_a.sign_digest(digest))

    module_b = backend.open("/dev/hidraw2")
    assert module_b.identity == ident_b and module_b.needs_password
    with pytest.raises(WrongPasswordError):
        module_b.unlock("nope")
    module_b.unlock("pin-b")
    assert verify_rs(cert_public_key(ident_b.signer_cert_der), digest, module_b.sign_digest(digest))

    del fake.chips[b"/dev/hidraw1"]  # kit unplugged
    assert backend.scan() == {"/dev/hidraw2"}
    with pytest.raises(SignerUnavailableError):
        module_a.sign_digest(digest)
    module_a.close()
    module_b.close()
    with pytest.raises(SignerUnavailableError):
        backend.open("/dev/hidraw1")


def test_other_vid_pid(root: TestRoot) -> None:
    fake = FakeHid()
    fake.chips = {b"/dev/hidraw1": _module_chip(root, None)[0]}
    assert HidBackend(hid_module=fake, vid=0x04D8, pid=0x0F30).scan() == set()


def test_libusb_backend_usage_page_zero_and_empty_reads(root: TestRoot) -> None:
    # what hidapi's libusb back-end showed on a real USB HID device (docs/hil.md): a libusb
    # path, usage page 0, an empty read before each reply; the module is found and signs
    fake = FakeHid(libusb=True)
    chip, identity = _module_chip(root, "pin")
    fake.chips = {b"2-1:1.0": chip}
    backend = open_backend("hid", hid_module=fake, timeout=0.5)
    assert backend.scan() == {"2-1:1.0"}
    module = backend.open("2-1:1.0")
    try:
        assert module.identity == identity
        module.unlock("pin")
        digest = hashlib.sha256(b"libusb").digest()
        signature = module.sign_digest(digest)
        assert verify_rs(cert_public_key(identity.signer_cert_der), digest, signature)
    finally:
        module.close()


def test_hidapi_option_picks_the_module() -> None:
    with pytest.raises(SignerUnavailableError, match="not one of hid, hidraw"):
        HidBackend(hidapi="usb")
    hidraw = pytest.importorskip("hidraw")  # the hidapi wheel's hidraw module (Linux)
    backend = HidBackend(hidapi="hidraw")
    assert backend._hid is hidraw
