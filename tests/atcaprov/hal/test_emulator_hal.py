"""The in-process ``emulator`` HAL driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from atcaprov.emulator import Atecc508a
from atcaprov.hal import HalError, available_hals, open_hal
from atcaprov.hal.emulator import EmulatorHal
from atcaprov.packet import WAKE_RESPONSE, build_command, parse_response

INFO = build_command(0x30, 0, 0)


def test_registered_names() -> None:
    assert {"emulator", "kit-cdc", "kit-hid"} <= set(available_hals())


def test_blank_chip_answers_packets() -> None:
    hal = open_hal("emulator")
    assert isinstance(hal, EmulatorHal)
    assert hal.wake() == WAKE_RESPONSE
    assert parse_response(hal.transact(INFO, 2)) == b"\x00\x00\x50\x00"
    hal.idle()
    hal.sleep()
    hal.close()
    with pytest.raises(HalError, match="closed"):
        hal.wake()


def test_given_chip_object_is_used() -> None:
    chip = Atecc508a()
    with EmulatorHal(chip) as hal:
        assert hal.chip is chip


def test_chip_from_path_and_persist(tmp_path: Path) -> None:
    path = tmp_path / "part.json"
    chip = Atecc508a()
    chip.save(path)
    with open_hal("emulator", chip=str(path), persist=True) as hal:
        assert isinstance(hal, EmulatorHal)
        assert hal.chip.serial_number == chip.serial_number
        hal.wake()
        # write I2C address byte (config byte 16) and check it was saved on close
        word = bytes((0xB0, 0, 0x55, 0))
        write = build_command(0x12, 0x00, 0x0004, word)
        assert parse_response(hal.transact(write, 26)) == b"\x00"
    assert Atecc508a.load(path).config_zone[16] == 0xB0


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(HalError, match="no saved chip"):
        EmulatorHal(tmp_path / "missing.json")
    with pytest.raises(HalError, match="persist=True needs chip= given as a path"):
        EmulatorHal(persist=True)
    with pytest.raises(HalError, match="must be an Atecc508a or a path, got int"):
        EmulatorHal(42)  # type: ignore[arg-type]
    with pytest.raises(HalError, match="nothing to save to"):
        EmulatorHal().save()
