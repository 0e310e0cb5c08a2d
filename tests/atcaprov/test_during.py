"""Host work done while the chip executes a command (``Device.during``), over the kit-cdc
driver and a virtual kit board (real components), and on a driver without a split send."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from atcaprov.device import ZONE_CONFIG, Device
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.kit_board import VirtualKitBoard
from atcaprov.errors import AtcaprovError
from atcaprov.hal import open_hal
from atcaprov.hal.emulator import EmulatorHal


def _executed(chip: Atecc508a, before: float, timeout: float = 5.0) -> bool:
    """Wait (bounded) until ``chip`` has executed a command since its chip time was ``before``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if chip.chip_time_ms > before:
            return True
        time.sleep(0.005)
    return False


def test_the_work_runs_once_the_packet_went_out(tmp_path: Path) -> None:
    with VirtualKitBoard(tmp_path / "chips", chips=1) as board:
        chip = board.current_chip
        assert chip is not None
        with open_hal("kit-cdc", url=board.url, timeout=5.0) as hal:
            device = Device(hal)
            with device.session():
                before = chip.chip_time_ms
                # the work waits for the chip to have run the Read: it can only see that if
                # the Read's packet was sent before the work started
                with device.during(lambda: _executed(chip, before)) as job:
                    block = device.read_zone(ZONE_CONFIG, 0, 0, 0, 32)
                assert job.ran
                assert job.result() is True
                # the answer was read after the work: the link is still in step
                assert device.read_zone(ZONE_CONFIG, 0, 0, 0, 32) == block
                assert block[:4] == chip.config_zone[:4]


def test_work_that_no_command_ran_is_done_by_result_and_never_by_a_later_command(
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    with (
        VirtualKitBoard(tmp_path / "chips", chips=1) as board,
        open_hal("kit-cdc", url=board.url, timeout=5.0) as hal,
    ):
        device = Device(hal)
        with device.during(lambda: calls.append("work")) as job:
            pass  # no command sent
        device.read_zone(ZONE_CONFIG, 0, 0, 0, 32)  # must not run the work
        assert calls == [] and not job.ran
        job.result()
        job.result()  # once only
        assert calls == ["work"]


def test_an_error_of_the_work_is_raised_by_result_not_by_the_command(tmp_path: Path) -> None:
    def work() -> None:
        raise AtcaprovError("check failed")

    with (
        VirtualKitBoard(tmp_path / "chips", chips=1) as board,
        open_hal("kit-cdc", url=board.url, timeout=5.0) as hal,
    ):
        device = Device(hal)
        with device.during(work) as job:
            block = device.read_zone(ZONE_CONFIG, 0, 0, 0, 32)  # the command succeeds
        assert len(block) == 32
        with pytest.raises(AtcaprovError, match="check failed"):
            job.result()
        assert device.read_zone(ZONE_CONFIG, 0, 0, 0, 32) == block


def test_a_driver_without_a_split_send_does_the_work_first() -> None:
    chip = Atecc508a()
    order: list[str] = []

    class Recording(EmulatorHal):
        def transact(self, packet: bytes, exec_time_ms: float) -> bytes:
            order.append("command")
            return super().transact(packet, exec_time_ms)

    device = Device(Recording(chip))
    with device.during(lambda: order.append("work")) as job:
        device.read_zone(ZONE_CONFIG, 0, 0, 0, 32)
    job.result()
    assert order == ["work", "command"]
