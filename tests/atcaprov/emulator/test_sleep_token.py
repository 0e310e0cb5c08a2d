"""A sleep token to an idle chip is ignored (the chip listens only for a wake while idle or
asleep): TempKey loaded before the idle still signs after idle, sleep token, wake. Shown on
raw packets, through the kit codec (firmware lines) and through the virtual board with the
kit-cdc driver. A power loss (unplug) is a different event and clears it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from atcaprov import kit_protocol as kp
from atcaprov.device import Device
from atcaprov.emulator import PowerState
from atcaprov.emulator.kit_board import VirtualKitBoard
from atcaprov.emulator.kit_firmware import KitFirmware
from atcaprov.errors import ExecutionError
from atcaprov.hal import open_hal
from atcaprov.packet import build_command
from tests.support.chip import ChipDriver, FakeClock
from tests.support.keys import verify_raw

NONCE, SIGN, GENKEY, INFO = 0x16, 0x41, 0x40, 0x30
DIGEST = hashlib.sha256(b"sleep after idle").digest()
LOAD_TEMPKEY = build_command(NONCE, 0x03, 0x0000, DIGEST)  # pass-through: TempKey = DIGEST
SIGN_EXTERNAL = build_command(SIGN, 0x80, 0x0000)
TEMPKEY_VALID = 0x80  # Info(State) byte 1, bit 7


def _answer_status(rsp: bytes) -> int:
    assert len(rsp) == 4, rsp.hex(" ")
    return rsp[1]


# ---- raw packets on the chip ---------------------------------------------------------------
def test_sleep_token_to_idle_chip_keeps_tempkey(provisioned: ChipDriver) -> None:
    chip = provisioned.chip
    pub = provisioned.ok(GENKEY, 0x00, 0)
    chip.wake()
    assert _answer_status(chip.execute(LOAD_TEMPKEY)) == 0x00
    chip.idle()
    chip.sleep()  # ignored: the chip is idle
    assert chip.power_state is PowerState.IDLE
    chip.wake()
    state = chip.execute(build_command(INFO, 0x02, 0x0000))
    assert state[2] & TEMPKEY_VALID
    sig = chip.execute(SIGN_EXTERNAL)
    assert len(sig) == 67
    verify_raw(pub, DIGEST, sig[1:-2])


def test_sleep_token_to_sleeping_chip_is_ignored(provisioned: ChipDriver) -> None:
    chip = provisioned.chip
    chip.wake()
    chip.sleep()
    chip.sleep()
    assert chip.power_state is PowerState.ASLEEP
    assert chip.wake() == bytes.fromhex("04113343")


def test_sleep_token_to_awake_chip_clears_tempkey(provisioned: ChipDriver) -> None:
    chip = provisioned.chip
    chip.wake()
    chip.execute(LOAD_TEMPKEY)
    chip.idle()
    chip.wake()
    chip.sleep()  # awake: this one counts
    assert chip.power_state is PowerState.ASLEEP
    chip.wake()
    assert chip.execute(build_command(INFO, 0x02, 0x0000))[2] & TEMPKEY_VALID == 0
    assert _answer_status(chip.execute(SIGN_EXTERNAL)) == 0x0F


def test_power_off_clears_tempkey_even_when_idle(provisioned: ChipDriver) -> None:
    chip = provisioned.chip
    chip.wake()
    chip.execute(LOAD_TEMPKEY)
    chip.idle()
    chip.power_off()  # unplugged: not a sleep token
    assert chip.power_state is PowerState.ASLEEP
    chip.wake()
    assert _answer_status(chip.execute(SIGN_EXTERNAL)) == 0x0F


# ---- through the kit codec: the firmware's lines ---------------------------------------------
@pytest.mark.parametrize("prefix", [b"s", b"d", b"e"])
def test_kit_idle_then_sleep_keeps_tempkey(provisioned: ChipDriver, prefix: bytes) -> None:
    chip = provisioned.chip
    pub = provisioned.ok(GENKEY, 0x00, 0)
    chip.idle()
    fw = KitFirmware(lambda: chip)

    def talk(packet: bytes) -> bytes:
        return kp.check_reply(fw.handle_line(kp.format_talk(packet, kp.KitDialect.CURRENT)))

    assert fw.handle_line(b"%s:w()" % prefix) == b"00(04113343)\n"
    assert _answer_status(talk(LOAD_TEMPKEY)) == 0x00
    assert fw.handle_line(b"%s:i()" % prefix) == b"00()\n"
    assert fw.handle_line(b"%s:s()" % prefix) == b"00()\n"  # E:i() then E:s()
    assert fw.handle_line(b"%s:w()" % prefix) == b"00(04113343)\n"
    sig = talk(SIGN_EXTERNAL)
    verify_raw(pub, DIGEST, sig[1:-2])


# ---- through the virtual board and the kit-cdc driver -----------------------------------------
def test_board_idle_sleep_wake_then_sign(tmp_path: Path) -> None:
    with VirtualKitBoard(tmp_path, chips=1) as board:
        chip = board.current_chip
        assert chip is not None
        d = ChipDriver(chip, FakeClock())
        d.lock_config()
        pub = d.genkey(0)
        d.lock_data()
        chip.idle()
        with open_hal("kit-cdc", url=board.url, timeout=2.0) as hal:
            dev = Device(hal)
            with dev.session():
                dev.nonce_load(DIGEST)
            # the session ended with an idle; now the sleep token a 2017 host sends at the end
            dev.sleep()
            assert chip.power_state is PowerState.IDLE
            sig = dev.execute(SIGN, 0x80, 0)
            verify_raw(pub, DIGEST, sig)
            # an awake chip does sleep: the next Sign finds no TempKey
            with dev.session():
                dev.nonce_load(DIGEST)
            dev.wake()
            dev.sleep()
            with pytest.raises(ExecutionError):
                dev.execute(SIGN, 0x80, 0)


def test_board_unplug_is_a_power_loss(tmp_path: Path) -> None:
    with VirtualKitBoard(tmp_path, chips=1) as board:
        chip = board.current_chip
        assert chip is not None
        d = ChipDriver(chip, FakeClock())
        d.lock_config()
        d.nonce_load(DIGEST)
        chip.idle()
        board.unplug()
        assert chip.power_state is PowerState.ASLEEP
        chip.wake()
        assert chip.execute(build_command(INFO, 0x02, 0x0000))[2] & TEMPKEY_VALID == 0
