"""Power states, framing, watchdog, timing model, serial numbers and the facts-file packets."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from atcaprov.emulator import Atecc508a, DeviceAsleepError, InvalidSerialError, PowerState
from atcaprov.errors import CommError
from atcaprov.packet import build_command, exec_time_ms
from tests.support.chip import SERIAL, ChipDriver, FakeClock

INFO = bytes.fromhex("0730000000035D")


def test_wake_answer_and_info_vector(blank: ChipDriver) -> None:
    assert blank.chip.wake() == bytes.fromhex("04113343")
    assert blank.chip.execute(INFO) == bytes.fromhex("07000050000391")


def test_execute_before_wake_gives_no_answer(blank: ChipDriver) -> None:
    with pytest.raises(DeviceAsleepError) as info:
        blank.chip.execute(INFO)
    assert isinstance(info.value, CommError)
    assert "asleep" in str(info.value)


def test_execute_after_idle_or_sleep_gives_no_answer(blank: ChipDriver) -> None:
    blank.chip.wake()
    blank.chip.idle()
    with pytest.raises(DeviceAsleepError, match="idle"):
        blank.chip.execute(INFO)
    blank.chip.wake()
    blank.chip.sleep()
    with pytest.raises(DeviceAsleepError, match="asleep"):
        blank.chip.execute(INFO)


def test_facts_worked_packets(blank: ChipDriver) -> None:
    """Every worked packet of facts section 1.5, sent raw, in a provisioning order."""
    chip = blank.chip
    chip.wake()
    # Read config block 0 (32 B): SN[0:4] and RevNum.
    rsp = chip.execute(bytes.fromhex("070280000009AD"))
    assert len(rsp) == 35 and rsp[1:9] == SERIAL[0:4] + bytes.fromhex("00005000")
    # Read config word 0x15: UserExtra, Selector, LockValue, LockConfig.
    assert chip.execute(bytes.fromhex("0702001500175D"))[1:5] == bytes.fromhex("00005555")
    # Random before the config lock: fixed pattern.
    rsp = chip.execute(bytes.fromhex("071B00000024CD"))
    assert rsp[1:-2] == bytes.fromhex("FFFF0000") * 8
    # Lock config, no CRC check.
    assert chip.execute(bytes.fromhex("071780000039 8D")) == bytes.fromhex("04000340")
    # GenKey create slot 0, then public key of slot 0: same key.
    pub = chip.execute(bytes.fromhex("07400400008387"))
    assert len(pub) == 67
    assert chip.execute(bytes.fromhex("07400000000005")) == pub
    # Lock data+OTP, no CRC check.
    assert chip.execute(bytes.fromhex("0717810000 3A07")) == bytes.fromhex("04000340")
    # Lock slot 10.
    assert chip.execute(bytes.fromhex("07172A00003D89")) == bytes.fromhex("04000340")
    # Read slot 10 block 1 (32 B).
    assert len(chip.execute(bytes.fromhex("07028250010997"))) == 35
    # Sign external slot 0 after a pass-through Nonce.
    assert chip.execute(build_command(0x16, 0x03, 0, bytes(32))) == bytes.fromhex("04000340")
    assert len(chip.execute(bytes.fromhex("07418000002805"))) == 67


def test_bad_crc_and_bad_count_answer_0xff(blank: ChipDriver) -> None:
    blank.chip.wake()
    bad_crc = INFO[:-1] + bytes((INFO[-1] ^ 1,))
    assert blank.chip.execute(bad_crc) == bytes.fromhex("04FF0142")
    assert blank.chip.last_error is not None and "CRC" in blank.chip.last_error
    assert blank.chip.execute(INFO + b"\x00") == bytes.fromhex("04FF0142")
    assert blank.chip.execute(b"") == bytes.fromhex("04FF0142")
    assert blank.chip.execute(INFO) == bytes.fromhex("07000050000391")
    assert blank.chip.last_error is None


@pytest.mark.parametrize("opcode", [0x01, 0x00, 0x99])  # Pause and two unknowns
def test_unsupported_opcodes_answer_parse_error(blank: ChipDriver, opcode: int) -> None:
    assert blank.raw(opcode) == bytes.fromhex("04038342")


def test_idle_keeps_tempkey_sleep_clears_it(configured: ChipDriver) -> None:
    d = configured
    d.nonce_load(bytes(range(32)))
    d.chip.idle()
    state = d.ok(0x30, 0x02)
    assert state[1] & 0x80 and state[0] & 0x10  # TempKey valid, SourceFlag = input
    d.chip.sleep()
    assert d.ok(0x30, 0x02) == bytes(4)


def test_watchdog_puts_chip_to_sleep_and_clears_volatile(configured: ChipDriver) -> None:
    d = configured
    d.chip.wake()
    d.chip.execute(build_command(0x16, 0x03, 0, bytes(32)))
    d.clock.advance(1.31)
    assert d.chip.power_state is PowerState.ASLEEP
    with pytest.raises(DeviceAsleepError):
        d.chip.execute(INFO)
    assert d.ok(0x30, 0x02) == bytes(4)  # woken again: TempKey gone


def test_watchdog_status_ee_when_command_would_overrun(blank: ChipDriver) -> None:
    chip = blank.chip
    chip.wake()
    blank.clock.advance(1.3 - exec_time_ms(0x40) / 1000 + 0.001)
    assert chip.execute(build_command(0x40, 0x04, 0)) == bytes.fromhex("04EE3141")
    assert chip.execute(INFO) == bytes.fromhex("07000050000391")  # 2 ms still fits


def test_long_watchdog_with_chipmode_bit2(blank: ChipDriver) -> None:
    blank.write_config_bytes(16, bytes.fromhex("C000AA04"))
    assert blank.chip.watchdog_s == 13.0
    blank.chip.sleep()
    blank.chip.wake()
    blank.clock.advance(5.0)
    assert blank.chip.execute(INFO) == bytes.fromhex("07000050000391")
    blank.clock.advance(8.0)
    with pytest.raises(DeviceAsleepError):
        blank.chip.execute(INFO)


def test_watchdog_can_be_switched_off(clock: FakeClock) -> None:
    chip = Atecc508a(SERIAL, clock=clock, watchdog=False)
    chip.wake()
    clock.advance(3600.0)
    assert chip.execute(INFO) == bytes.fromhex("07000050000391")
    assert chip.power_state is PowerState.AWAKE


def test_idle_stops_the_watchdog(configured: ChipDriver) -> None:
    d = configured
    d.nonce_load(bytes(32))
    d.chip.idle()
    d.clock.advance(60.0)
    assert d.chip.power_state is PowerState.IDLE
    assert d.ok(0x30, 0x02)[1] & 0x80  # TempKey survived the idle


def test_wake_while_awake_keeps_the_watchdog_running(blank: ChipDriver) -> None:
    blank.chip.wake()
    blank.clock.advance(1.0)
    assert blank.chip.wake() == bytes.fromhex("04113343")
    blank.clock.advance(0.31)
    with pytest.raises(DeviceAsleepError):
        blank.chip.execute(INFO)


def test_timing_model(make_chip: Callable[..., ChipDriver]) -> None:
    d = make_chip(timing_scale=0.5)
    d.ok(0x30)
    d.ok(0x1B)
    assert d.sleeps == [exec_time_ms(0x30) * 0.5 / 1000, exec_time_ms(0x1B) * 0.5 / 1000]
    assert d.chip.chip_time_ms == exec_time_ms(0x30) + exec_time_ms(0x1B)


def test_the_emulators_own_work_is_inside_the_execution_time() -> None:
    # The answer comes the execution time after the packet arrived: what the emulator spends
    # computing it, and the board's work while the chip is busy (saving its file), is taken
    # from the wait, not added to it.
    clock = FakeClock()
    sleeps: list[float] = []
    chip = Atecc508a(SERIAL, timing_scale=1.0, clock=clock, sleeper=sleeps.append)
    chip.wake()
    busy: list[int] = []

    def saving(opcode: int) -> None:
        busy.append(opcode)
        clock.advance(0.0015)  # e.g. the chip file written

    chip.execute(build_command(0x1B, 0, 0), while_busy=saving)
    assert busy == [0x1B]
    assert sleeps == [pytest.approx(exec_time_ms(0x1B) / 1000 - 0.0015)]

    def slow(opcode: int) -> None:
        clock.advance(1.0)  # longer than the command: no wait at all

    chip.wake()
    chip.execute(build_command(0x30, 0, 0), while_busy=slow)
    assert len(sleeps) == 1


def test_no_sleep_by_default(blank: ChipDriver) -> None:
    blank.ok(0x30)
    assert blank.sleeps == []
    assert blank.chip.chip_time_ms == exec_time_ms(0x30)


def test_negative_timing_scale_rejected() -> None:
    with pytest.raises(ValueError, match="timing_scale"):
        Atecc508a(timing_scale=-1)


@pytest.mark.parametrize(
    "serial",
    [
        bytes(9),
        bytes.fromhex("0123000000000000"),
        bytes.fromhex("012300000000000000EE"),
        bytes.fromhex("012400000000000EEE"),
        bytes.fromhex("01230000000000EE00"),
    ],
)
def test_invalid_serials_rejected(serial: bytes) -> None:
    with pytest.raises(InvalidSerialError):
        Atecc508a(serial)


def test_serial_number_in_config(blank: ChipDriver) -> None:
    cfg = blank.read_config()
    assert cfg[0:4] + cfg[8:13] == SERIAL
    assert blank.chip.serial_number == SERIAL


def test_random_serials_are_valid_and_differ() -> None:
    a, b = Atecc508a(), Atecc508a()
    for chip in (a, b):
        sn = chip.serial_number
        assert sn[0:2] == b"\x01\x23" and sn[8] == 0xEE
    assert a.serial_number != b.serial_number


def test_threads_share_one_chip(blank: ChipDriver, clock: FakeClock) -> None:
    chip = blank.chip
    answers: list[bytes] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            chip.wake()
            rsp = chip.execute(INFO)
            with lock:
                answers.append(rsp)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert answers == [bytes.fromhex("07000050000391")] * 200
