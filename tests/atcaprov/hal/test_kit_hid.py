"""kit-hid driver against the emulator's HID kit (``hid.device`` stand-in over the kit firmware)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from atcaprov import kit_protocol as kp
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.kit_hid_device import EmulatedKitHidDevice
from atcaprov.errors import CommTimeoutError, NoDevicesError
from atcaprov.hal import open_hal
from atcaprov.hal.kit_hal import KitTransportError
from atcaprov.hal.kit_hid import (
    DEFAULT_PID,
    DEFAULT_VID,
    KitHidHal,
    enumerate_kits,
    split_reports,
)


class RecordingHidKit(EmulatedKitHidDevice):
    """The emulator's HID kit (one blank chip at ``/dev/hidraw3``) with the test's hooks.

    Adds what the driver tests look at or break, nothing of the report logic: opening by
    VID:PID (the emulator opens by path only), a record of what was opened / written / read /
    closed, every read bounded, and two faults (``fail_read``, ``short_write``). Input reports
    are full 64-byte reports as a real kit sends them.
    """

    PATH = b"/dev/hidraw3"

    def __init__(
        self, *, with_report_id: bool = False, silent: bool = False, libusb: bool = False
    ) -> None:
        chip = Atecc508a()
        super().__init__(
            lambda _path: chip,
            present=lambda path: path == self.PATH,
            pad_reports=True,
            report_id_in_reads=with_report_id,
            empty_read_before_reply=libusb,
        )
        self.empty_reads = 0
        self.silent = silent
        self.written: list[bytes] = []
        self.opened: tuple[Any, ...] | None = None
        self.closed = False
        self.fail_read = False
        self.short_write = False
        self.reports_read = 0

    def open(self, vid: int, pid: int, serial_number: str | None = None) -> None:
        if (vid, pid) != (DEFAULT_VID, DEFAULT_PID):
            raise OSError("open failed")
        super().open_path(self.PATH)
        self.opened = ("vidpid", vid, pid, serial_number)

    def open_path(self, path: bytes) -> None:
        super().open_path(path)
        self.opened = ("path", path)

    def write(self, report: Sequence[int] | bytes) -> int:
        assert len(report) == 65 and report[0] == 0, report
        self.written.append(bytes(report))
        if self.short_write:
            return -1
        return super().write(report)

    def read(self, max_length: int, timeout_ms: int = 0) -> list[int]:
        assert timeout_ms > 0  # every read is bounded
        if self.fail_read:
            raise OSError("read error")
        report = super().read(max_length, timeout_ms)
        if report:
            self.reports_read += 1
        else:
            self.empty_reads += 1
        return report

    def close(self) -> None:
        self.closed = True
        super().close()


def _hal(fake: RecordingHidKit, **kwargs: Any) -> KitHidHal:
    return KitHidHal(device_factory=lambda: fake, timeout=0.5, **kwargs)


def test_split_reports() -> None:
    reports = split_reports(b"x" * 130)
    assert [len(r) for r in reports] == [65, 65, 65]
    assert all(r[0] == 0 for r in reports)
    assert reports[2][1:3] == b"xx" and reports[2][3:] == bytes(62)
    with pytest.raises(ValueError):
        split_reports(b"")


def test_open_by_vid_pid_discovers_and_selects() -> None:
    fake = RecordingHidKit()
    hal = _hal(fake, serial_number="ABC")
    assert fake.opened == ("vidpid", 0x03EB, 0x2312, "ABC")
    assert (hal.device_type, hal.interface, hal.address) == ("ECC508A", "TWI", 0xC0)
    assert fake.lines_seen[:2] == [b"board:device(00)", b"s:physical:select(C0)"]
    assert hal.dialect is kp.KitDialect.LEGACY
    hal.close()
    assert fake.closed
    hal.close()  # idempotent


def test_open_by_path_current_dialect() -> None:
    fake = RecordingHidKit()
    with _hal(fake, path="/dev/hidraw3", dialect="current") as hal:
        assert fake.opened == ("path", b"/dev/hidraw3")
        assert fake.lines_seen[1] == b"E:physical:select(C0)"
        assert Device(hal).info() == b"\x00\x00\x50\x00"
        assert fake.lines_seen[-3:] == [b"d:w()", b"d:t(0730000000035D)", b"d:i()"]


def test_open_failure_is_no_devices() -> None:
    fake = RecordingHidKit()
    with pytest.raises(NoDevicesError, match="HID path '/dev/nothing'"):
        _hal(fake, path="/dev/nothing")
    with pytest.raises(NoDevicesError, match="HID 1234:5678"):
        _hal(fake, vid=0x1234, pid=0x5678)


def test_open_hal_by_name() -> None:
    fake = RecordingHidKit()
    hal = open_hal("kit-hid", device_factory=lambda: fake, timeout=0.5)
    assert isinstance(hal, KitHidHal)
    hal.close()


def test_multi_report_verify_135_bytes() -> None:
    fake = RecordingHidKit()
    key = ec.generate_private_key(ec.SECP256R1())
    message = b"production line"
    digest = hashlib.sha256(message).digest()
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    nums = key.public_key().public_numbers()
    pub = nums.x.to_bytes(32, "big") + nums.y.to_bytes(32, "big")
    with _hal(fake) as hal:
        dev = Device(hal)
        fake.written.clear()
        assert dev.verify_extern(digest, sig, pub) is True
        # the Verify line: "s:t(" + 270 hex digits + ")\n" = 276 bytes -> 5 reports
        verify_line = next(line for line in fake.lines_seen if line.startswith(b"s:t(8745"))
        assert len(verify_line) == 275
        # wake (1 report), Nonce pass-through line of 84 bytes (2), Verify (5), idle (1)
        assert len(fake.written) == 1 + 2 + 5 + 1
        bad = bytes([sig[0] ^ 1]) + sig[1:]
        assert dev.verify_extern(digest, bad, pub) is False


def test_long_reply_spans_reports() -> None:
    fake = RecordingHidKit()
    with _hal(fake) as hal:
        fake.reports_read = 0
        config = Device(hal).read_config_zone()
        assert fake.chip is not None
        assert config == fake.chip.config_zone
        # wake reply (1 report), four 35-byte Read responses as 75-byte lines (2 reports each),
        # idle reply (1)
        assert fake.reports_read == 1 + 4 * 2 + 1


def test_report_id_in_input_reports() -> None:
    fake = RecordingHidKit(with_report_id=True)
    with _hal(fake, read_has_report_id=True) as hal:
        serial = Device(hal).read_serial_number()
        assert fake.chip is not None
        assert serial == fake.chip.serial_number


def test_silent_kit_times_out() -> None:
    fake = RecordingHidKit(silent=True)
    with pytest.raises(CommTimeoutError, match="no kit reply to discover"):
        KitHidHal(device_factory=lambda: fake, timeout=0.05)
    assert fake.closed


def test_read_error_is_transport_error() -> None:
    fake = RecordingHidKit()
    with _hal(fake) as hal:
        fake.fail_read = True
        with pytest.raises(KitTransportError, match="unplugged"):
            hal.wake()


def test_failed_write_is_transport_error() -> None:
    fake = RecordingHidKit()
    with _hal(fake) as hal:
        fake.short_write = True
        with pytest.raises(KitTransportError, match="-1 of 65 bytes"):
            hal.idle()


def test_enumerate_kits_with_fake_module() -> None:
    class FakeModule:
        @staticmethod
        def enumerate(vid: int, pid: int) -> list[dict[str, Any]]:
            assert (vid, pid) == (DEFAULT_VID, DEFAULT_PID)
            return [
                {
                    "path": b"/dev/hidraw3",
                    "vendor_id": vid,
                    "product_id": pid,
                    "serial_number": "K1",
                    "manufacturer_string": "Atmel",
                    "product_string": "AT88CK101",
                    "interface_number": 0,
                }
            ]

    kits = enumerate_kits(hid_module=FakeModule)
    assert len(kits) == 1
    assert kits[0].path == b"/dev/hidraw3" and kits[0].serial_number == "K1"
    assert kits[0].product == "AT88CK101"


def test_empty_read_before_every_reply_libusb() -> None:
    # hidapi's libusb back-end may hand back an empty read before a reply (docs/hil.md): the
    # driver takes it as "nothing yet" and keeps reading until its deadline
    fake = RecordingHidKit(libusb=True)
    with _hal(fake) as hal:
        fake.reports_read = fake.empty_reads = 0
        config = Device(hal).read_config_zone()
        assert fake.chip is not None and config == fake.chip.config_zone
        assert fake.reports_read == 1 + 4 * 2 + 1
        assert fake.empty_reads >= 6  # one before each of the six replies


def test_empty_read_fake_only_once_per_request() -> None:
    chip = Atecc508a()
    kit = EmulatedKitHidDevice(lambda _p: chip, pad_reports=True, empty_read_before_reply=True)
    kit.open_path(b"x")
    kit.write(b"\x00" + kp.format_discover(0).ljust(64, b"\x00"))
    assert kit.read(64, 10) == []
    reply = bytes(kit.read(64, 10))
    assert reply.rstrip(b"\x00").endswith(b"\n") and len(reply) == 64
    assert kit.read(64, 0) == []  # nothing more: an ordinary empty read
