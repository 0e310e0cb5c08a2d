"""Device's retry rules: what it does when a command's answer is lost, corrupt or malformed,
or the chip says it did not run it (faults injected with the fault driver, chips emulated)."""

from __future__ import annotations

import pytest

from atcaprov.device import (
    GENKEY_MODE_PRIVATE,
    GENKEY_MODE_PUBLIC,
    LOCK_ZONE_CONFIG,
    ZONE_CONFIG,
    ZONE_DATA,
    ZONE_ENCRYPTED,
    ZONE_OTP,
    ZONE_READWRITE_32,
    Device,
    LockState,
    Retry,
    get_addr,
    lock_crc,
    retry_rule,
    zone_position,
)
from atcaprov.emulator import Atecc508a
from atcaprov.errors import (
    CommError,
    CommTimeoutError,
    ExecutionError,
    MalformedPacketError,
    ResponseCrcError,
    WakeFailedError,
)
from atcaprov.hal.emulator import EmulatorHal
from atcaprov.hal.faults import FaultHal
from atcaprov.packet import Opcode
from tests.support.config import TEST_CONFIG
from tests.support.keys import verify_raw

DIGEST = bytes(range(32))


def _device(chip: Atecc508a | None = None) -> tuple[Atecc508a, FaultHal, Device]:
    chip = chip or Atecc508a()
    hal = FaultHal(EmulatorHal(chip))
    return chip, hal, Device(hal)


def _configured(data_lock: bool = True) -> tuple[Atecc508a, FaultHal, Device]:
    """Test config written and locked, a key in slot 0, the data zone locked; stats zeroed."""
    chip, hal, dev = _device()
    dev.write_config_zone(TEST_CONFIG)
    dev.lock_config_zone(lock_crc(dev.read_config_zone()))
    dev.genkey(0)
    if data_lock:
        dev.lock_data_zone()
    dev.reset_stats()
    return chip, hal, dev


@pytest.mark.parametrize(
    ("opcode", "p1", "rule"),
    [
        (Opcode.READ, 0x80, Retry.REPEAT),
        (Opcode.INFO, 0, Retry.REPEAT),
        (Opcode.RANDOM, 0, Retry.REPEAT),
        (Opcode.NONCE, 0x03, Retry.REPEAT),
        (Opcode.WRITE, ZONE_DATA | ZONE_READWRITE_32, Retry.REPEAT),
        (Opcode.WRITE, ZONE_DATA | ZONE_READWRITE_32 | ZONE_ENCRYPTED, Retry.REPORT),
        (Opcode.GENKEY, GENKEY_MODE_PRIVATE, Retry.REPEAT),
        (Opcode.GENKEY, GENKEY_MODE_PUBLIC, Retry.REPEAT),
        (Opcode.GENKEY, 0x10, Retry.REPORT),
        (Opcode.COUNTER, 0, Retry.REPEAT),
        (Opcode.COUNTER, 1, Retry.REPORT),
        (Opcode.LOCK, 0x00, Retry.CHECK_LOCK),
        (Opcode.LOCK, 0x2A, Retry.CHECK_LOCK),
        (Opcode.SIGN, 0x80, Retry.REPORT),
        (Opcode.VERIFY, 0x02, Retry.REPORT),
        (Opcode.GENDIG, 2, Retry.REPORT),
        (Opcode.MAC, 0, Retry.REPORT),
        (Opcode.SHA, 0, Retry.REPORT),
        (Opcode.UPDATE_EXTRA, 0, Retry.REPORT),
        (Opcode.PRIVWRITE, 0x40, Retry.REPORT),
    ],
)
def test_retry_rule_table(opcode: int, p1: int, rule: Retry) -> None:
    assert retry_rule(opcode, p1) is rule


@pytest.mark.parametrize("fault", ["lost", "crc", "timeout", 0xFF, 0xEE, 0x11, 0x00])
def test_read_is_sent_again(fault: int | str) -> None:
    chip, hal, dev = _device()
    hal.arm(fault)
    assert dev.read_serial_number() == chip.serial_number
    assert dev.opcode_counts[Opcode.READ] == 2
    assert dev.retry_count == 1


def test_resends_are_bounded() -> None:
    _chip, hal, dev = _device()
    hal.arm("crc", times=dev.crc_retries + 1)
    with pytest.raises(ResponseCrcError):
        dev.info()
    assert dev.opcode_counts[Opcode.INFO] == 3
    hal.arm(0x00, times=3)  # a bare "success" where data was due: malformed, every time
    with pytest.raises(MalformedPacketError, match="expected 4 data bytes"):
        dev.info()


@pytest.mark.parametrize("fault", ["lost", "crc"])
def test_lock_that_happened_is_not_sent_again(fault: str) -> None:
    chip, hal, dev = _device()
    dev.write_config_zone(TEST_CONFIG)
    crc = lock_crc(dev.read_config_zone())
    hal.arm(fault)
    dev.lock_config_zone(crc)  # the answer was lost, the lock bytes say it is done
    assert chip.config_locked
    assert dev.opcode_counts[Opcode.LOCK] == 1
    assert dev.is_locked(LOCK_ZONE_CONFIG)


@pytest.mark.parametrize("fault", ["timeout", 0xFF, 0xEE, 0x05])
def test_lock_that_did_not_happen_is_sent_again(fault: int | str) -> None:
    chip, hal, dev = _device()
    hal.arm(fault)
    dev.lock_config_zone()
    assert chip.config_locked
    assert dev.opcode_counts[Opcode.LOCK] == 2


def test_lock_outcome_unreadable_raises_the_lost_answer() -> None:
    chip, hal, dev = _device()
    hal.arm("unplug_after")
    with pytest.raises(CommError, match="board removed"):
        dev.lock_config_zone()
    assert chip.config_locked  # it did lock; the caller is told it cannot know
    assert dev.opcode_counts[Opcode.LOCK] == 1


def test_refused_lock_is_not_sent_again() -> None:
    _chip, _hal, dev = _device()
    dev.lock_config_zone()
    with pytest.raises(ExecutionError):
        dev.lock_config_zone()
    assert dev.opcode_counts[Opcode.LOCK] == 2


@pytest.mark.parametrize("fault", ["lost", "crc", "timeout", 0x11, 0x05, 0x00])
def test_sign_is_redone_from_its_nonce(fault: int | str) -> None:
    _chip, hal, dev = _configured()
    pub = dev.get_pubkey(0)
    dev.reset_stats()
    hal.arm(fault, after=2)  # Random, Nonce, then the Sign
    signature = dev.sign(0, DIGEST)
    verify_raw(pub, DIGEST, signature)  # raises unless it signs the digest
    assert dev.opcode_counts[Opcode.SIGN] == 2
    assert dev.opcode_counts[Opcode.NONCE] == 2  # a fresh Nonce before the second Sign


def test_sign_redo_inside_a_callers_session_gets_a_new_wake() -> None:
    _chip, hal, dev = _configured()
    pub = dev.get_pubkey(0)
    with dev.session():
        dev.reset_stats()
        hal.arm("lost", after=2)  # Random, Nonce, then the Sign
        signature = dev.sign(0, DIGEST)
    verify_raw(pub, DIGEST, signature)
    assert dev.opcode_counts[Opcode.SIGN] == 2
    assert dev.wake_count == 1  # the redo woke the chip again (fresh wake), as outside one


def test_sign_redo_is_bounded() -> None:
    _chip, hal, dev = _configured()
    hal.arm("lost", times=100)
    with pytest.raises(CommTimeoutError):
        dev.sign(0, DIGEST)
    assert dev.opcode_counts[Opcode.SIGN] == 0  # each try failed at its Random already...
    assert dev.opcode_counts[Opcode.RANDOM] == 9  # ... 3 sends, 3 sequences


def test_verify_extern_is_redone() -> None:
    _chip, hal, dev = _configured()
    pub = dev.get_pubkey(0)
    signature = dev.sign(0, DIGEST)
    hal.arm("lost", after=1)  # Nonce, then the Verify
    assert dev.verify_extern(DIGEST, signature, pub)
    hal.arm("crc", after=1)
    assert not dev.verify_extern(bytes(32), signature, pub)


def test_genkey_answer_lost_makes_a_new_key_and_returns_it() -> None:
    _chip, hal, dev = _configured(data_lock=False)
    hal.arm("lost")
    pub = dev.genkey(0)
    assert dev.opcode_counts[Opcode.GENKEY] == 2
    assert dev.get_pubkey(0) == pub  # the key the slot holds is the one returned


def test_write_answer_lost_is_written_again() -> None:
    _chip, hal, dev = _configured()
    hal.arm("lost")
    dev.write_zone(ZONE_DATA, 14, 0, 0, bytes(range(32)))
    assert dev.opcode_counts[Opcode.WRITE] == 2


def test_encrypted_write_is_reported() -> None:
    _chip, hal, dev = _configured()
    hal.arm("lost")
    with pytest.raises(CommTimeoutError):
        dev.execute(
            Opcode.WRITE,
            ZONE_DATA | ZONE_READWRITE_32 | ZONE_ENCRYPTED,
            get_addr(ZONE_DATA, 14, 0, 0),
            bytes(64),
            response_size=1,
        )
    assert dev.opcode_counts[Opcode.WRITE] == 1


def test_board_removed_is_not_hammered() -> None:
    _chip, hal, dev = _device()
    hal.arm("unplug")
    with pytest.raises(WakeFailedError):  # the resend needs a wake, which fails
        dev.info()
    assert dev.opcode_counts[Opcode.INFO] == 1


def test_read_lock_state_on_a_fresh_wake() -> None:
    chip, hal, dev = _configured()
    dev.lock_data_slot(10)
    wakes = hal.wakes
    state = dev.read_lock_state()
    assert state == LockState(config_locked=True, data_locked=True, slot_locked_bits=0xFBFF)
    assert state.slot_locked(10) and not state.slot_locked(11)
    assert hal.wakes >= wakes + 2  # the session's wake, then the fresh one after an idle
    assert LockState.from_config(chip.config_zone) == state


def test_on_write_sees_every_acknowledged_write() -> None:
    _chip, hal, dev = _configured(data_lock=False)
    seen: list[tuple[int, int, bytes]] = []
    dev.on_write = lambda p1, p2, data: seen.append((p1, p2, data))
    dev.write_zone(ZONE_DATA, 14, 1, 0, bytes(range(32)))
    hal.arm(0x0F)
    with pytest.raises(ExecutionError):
        dev.write_zone(ZONE_OTP, 0, 0, 0, bytes(32))
    assert seen == [
        (ZONE_DATA | ZONE_READWRITE_32, get_addr(ZONE_DATA, 14, 1, 0), bytes(range(32)))
    ]


@pytest.mark.parametrize(
    ("zone", "slot", "block", "word", "length"),
    [
        (ZONE_DATA, 8, 12, 0, 32),
        (ZONE_DATA, 3, 1, 0, 4),
        (ZONE_DATA, 15, 2, 1, 4),
        (ZONE_OTP, 0, 1, 7, 4),
        (ZONE_CONFIG, 0, 2, 5, 4),
        (ZONE_CONFIG, 0, 3, 0, 32),
    ],
)
def test_zone_position_inverts_get_addr(
    zone: int, slot: int, block: int, word: int, length: int
) -> None:
    assert zone_position(zone, get_addr(zone, slot, block, word), length) == (
        slot if zone == ZONE_DATA else 0,
        block * 32 + word * 4,
    )
