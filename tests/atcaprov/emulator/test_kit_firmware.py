"""The kit firmware (sans-IO): kit-protocol lines in, kit replies out, for the plugged chip."""

from __future__ import annotations

import pytest

from atcaprov.emulator import Atecc508a
from atcaprov.emulator.kit_firmware import KitFirmware


@pytest.fixture
def firmware() -> tuple[KitFirmware, Atecc508a]:
    chip = Atecc508a()
    return KitFirmware(lambda: chip), chip


def test_firmware_discovery_and_board_text(firmware: tuple[KitFirmware, Atecc508a]) -> None:
    fw, _ = firmware
    assert fw.handle_line(b"board:device(00)") == b"ECC508A TWI 00(C0)\n"  # "%s %s 00(%02X)"
    assert fw.handle_line(b"b:d(01)") == b"no device\n"
    assert fw.handle_line(b"b:device()") == b"E2()\n"
    version = fw.handle_line(b"b:version()")
    assert version.endswith(b"ECC508A TWI 00(C0)\n") and b"AT88CK101" in version
    assert fw.handle_line(b"b:firmware()").startswith(b"atcaprov virtual kit firmware")
    assert fw.handle_line(b"b:get_devices()") == b"ECC508A TWI 00(C0)\n"
    assert fw.handle_line(b'b:application({"method":"init"})') == b"04()\n"
    assert fw.handle_line(b"b:last_error()") == b"00(04)\n"


def test_firmware_device_commands(firmware: tuple[KitFirmware, Atecc508a]) -> None:
    fw, chip = firmware
    assert fw.handle_line(b"s:physical:select(C0)") == b"00()\n"
    assert fw.handle_line(b"E:physical:select(b0)") == b"E3()\n"
    assert fw.handle_line(b"s:t(0730000000035D)") == b"F0()\n"  # not woken: no answer
    assert fw.handle_line(b"d:w()") == b"00(04113343)\n"
    assert fw.handle_line(b"s:t(0730000000035D)") == b"00(07000050000391)\n"
    assert fw.handle_line(b"d:t(0730000000035E)") == b"00(04FF0142)\n"  # bad CRC: chip 0xFF
    assert fw.handle_line(b"d:se(0730000000035D)") == b"00()\n"
    assert fw.handle_line(b"d:r()") == b"00(07000050000391)\n"
    assert fw.handle_line(b"d:r()") == b"01()\n"
    assert fw.handle_line(b"d:t()") == b"E4()\n"
    assert fw.handle_line(b"d:t(07300)") == b"E2()\n"
    assert fw.handle_line(b"d:i()") == b"00()\n"
    assert fw.handle_line(b"d:s()") == b"00()\n"
    assert chip.power_state.value == "idle"  # an idle chip ignores the sleep token
    assert fw.handle_line(b"d:w()") == b"00(04113343)\n"
    assert fw.handle_line(b"d:s()") == b"00()\n"
    assert fw.handle_line(b"d:zap()") == b"03()\n"
    assert fw.handle_line(b"garbage") == b"03()\n"
    assert fw.handle_line(b"b:last_error()") == b"00(03)\n"
    assert chip.power_state.value == "asleep"


def test_firmware_without_chip() -> None:
    fw = KitFirmware(lambda: None)
    assert fw.handle_line(b"board:device(00)") == b"no device\n"
    assert fw.handle_line(b"s:physical:select(C0)") == b"E3()\n"
    assert fw.handle_line(b"d:w()") == b"F0()\n"
